from __future__ import annotations

import pytest

from config.celery import app as celery_app


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """Test backends on, media in a temporary folder, Celery tasks run in-process.

    Tests that need a real worker (tests/test_worker.py) switch eager mode off again.
    """
    settings.LOUPE_ENABLE_TEST_BACKENDS = True
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                    "OPTIONS": {"location": str(tmp_path / "media")}},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.LOUPE_RETRY_BACKOFF_SECONDS = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed, tests only
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous
