# Loupe: one image for web, worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LOUPE_VAR_DIR=/app/var
WORKDIR /app

COPY requirements.txt .
# torch's CPU wheels live on PyTorch's own index; PyPI's default build is the multi-GB CUDA one.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt

COPY . .
RUN SECRET_KEY=build-only python manage.py collectstatic --noinput -v0 \
 && useradd --create-home --uid 1000 loupe && mkdir -p /app/var && chown -R loupe /app/var
USER loupe
EXPOSE 8000
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--access-logfile", "-"]
