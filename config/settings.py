"""Loupe settings: one file, every value from an environment variable.

Defaults run with zero setup (SQLite file, an embedded filesystem broker, local media and the
local model, all under ``var/``). Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL`` and
optionally ``AWS_STORAGE_BUCKET_NAME``; see README.md for the full table.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from config.broker import transport_for

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: str) -> list[str]:
    return [part.strip() for part in env_str(name, default).split(",") if part.strip()]


def env_mapping(name: str, default: str) -> dict[str, str]:
    """``a=x,b=y`` → {"a": "x", "b": "y"}; a part without a name or a value is refused."""
    pairs = {}
    for part in env_list(name, default):
        key, sep, value = (piece.strip() for piece in part.partition("="))
        if not sep or not key or not value:
            raise ImproperlyConfigured(f"{name} must be name=value pairs separated by commas, got {part!r}")
        pairs[key] = value
    return pairs


# --- Paths -----------------------------------------------------------------------------------
# Everything the zero-setup default writes lives under one folder, so "delete var/" resets it.
VAR_DIR = Path(env_str("LOUPE_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


# --- Core ------------------------------------------------------------------------------------
SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "classify",
    "reviewer",
    "integrations",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "classify.middleware.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "axes.middleware.AxesMiddleware",
    "classify.middleware.DatabaseTroubleMiddleware",  # last: its process_exception sees the view's errors first
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "classify.context_processors.service_notices",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'loupe.sqlite3'}")
# Connections are kept (per gunicorn thread, per worker process) for DB_CONN_MAX_AGE seconds and
# checked before reuse: opening a PostgreSQL connection per request cost more than a whole claim.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
                                              conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A worker and the web process write at once: IMMEDIATE transactions and WAL stop
    # "database is locked" (measured in shared/docs/embedded-broker.md).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests share the test database with a worker subprocess, so it must be a file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_loupe.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth ------------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "classify:home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from
# one address, that pair is locked out for AXES_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
AXES_IPWARE_PROXY_COUNT = env_int("AXES_PROXY_COUNT", 0) or None
AXES_VERBOSE = False

# --- Security headers ------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
# Behind HTTPS (.env.example): plain-HTTP requests are redirected, and browsers told to use HTTPS
# only (HSTS) for this many seconds. Off by default so the embedded default works on plain HTTP.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# --- Internationalisation --------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media ------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "")

if AWS_STORAGE_BUCKET_NAME:
    # Private bucket: images are only ever handed out as short-lived presigned URLs.
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": AWS_STORAGE_BUCKET_NAME,
            "location": env_str("AWS_LOCATION", "loupe"),
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": env_int("AWS_QUERYSTRING_EXPIRE", 300),
            "signature_version": "s3v4",  # SigV4 presigned URLs (required in newer regions)
            "file_overwrite": False,
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL", "") or None,
            "region_name": env_str("AWS_S3_REGION_NAME", "") or None,
        },
    }
else:
    _media_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "file_permissions_mode": 0o640},
    }
STORAGES = {
    "default": _media_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Uploads ---------------------------------------------------------------------------------
LOUPE_MAX_UPLOAD_BYTES = env_int("LOUPE_MAX_UPLOAD_BYTES", 25 * 1024 * 1024)
LOUPE_MAX_IMAGE_PIXELS = env_int("LOUPE_MAX_IMAGE_PIXELS", 50_000_000)
# A whole request (every file and field) above this is refused from its Content-Length, before
# any of it is read (413). Default: one largest file plus room for the form around it.
LOUPE_MAX_REQUEST_BYTES = env_int("LOUPE_MAX_REQUEST_BYTES", LOUPE_MAX_UPLOAD_BYTES + 8 * 1024 * 1024)
if LOUPE_MAX_REQUEST_BYTES < LOUPE_MAX_UPLOAD_BYTES:
    raise ImproperlyConfigured("LOUPE_MAX_REQUEST_BYTES must be at least LOUPE_MAX_UPLOAD_BYTES")
# The memory one image decode may take, judged from its header before any pixel is decoded
# (images.decode_bytes): a JPEG over it is decoded at a smaller scale, anything else refused. A web
# process decodes at most one image per gunicorn thread at once (docs/security.md).
LOUPE_DECODE_MAX_BYTES = env_int("LOUPE_DECODE_MAX_MB", 256) * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 10)
FILE_UPLOAD_HANDLERS = [
    "classify.uploads.SizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- Celery ----------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost//")
# Loupe's own subclasses of kombu's filesystem and Redis transports (config/broker.py): atomic
# publish and quarantine instead of a worker exit; reconnect instead of exit on a Redis outage.
CELERY_BROKER_TRANSPORT = transport_for(CELERY_BROKER_URL)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Embedded broker, no server: every folder on one filesystem, so renames are atomic.
    for _sub in ("queue", "claimed", "quarantine"):
        (BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "queue"),
        "claim_folder": str(BROKER_DIR / "claimed"),
        "quarantine_folder": str(BROKER_DIR / "quarantine"),
        "fsync": env_bool("LOUPE_BROKER_FSYNC", False),
        "polling_interval": env_float("LOUPE_BROKER_POLL_SECONDS", 0.1),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Redis: a message not acknowledged within this window is redelivered (a killed worker).
        "visibility_timeout": env_int("LOUPE_VISIBILITY_TIMEOUT", 600),
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must not hang a web request when the broker is down: the item stays "received"
# in the database and the sweeper hands it over once the broker is back.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("LOUPE_BROKER_CONNECT_TIMEOUT", 3.0)
# How long the pool waits for a dead child's result before failing (and requeueing) its job.
CELERY_WORKER_LOST_WAIT = env_float("LOUPE_WORKER_LOST_WAIT", 10.0)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Workload queues, so a long export or training run never delays a classification: each kind of
# work has its own queue, docker-compose.yml runs a worker per queue (scaled separately), and a
# worker started without -Q (bin/up, the tests) consumes all of them. Classification goes to
# classify_local or classify_cloud by the item's backend (classify.backends.runs_locally); the
# sweeper and housekeeping stay on Celery's default queue.
LOUPE_QUEUES = ("classify_local", "classify_cloud", "training", "export", "bakeoff", "celery")
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_CREATE_MISSING_QUEUES = False
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in LOUPE_QUEUES]
CELERY_TASK_ROUTES = {
    "classify.classify_item": {"queue": "classify_local"},
    "classify.advance_training_run": {"queue": "training"},
    "classify.check_refit": {"queue": "training"},
    "reviewer.run_export": {"queue": "export"},
    "classify.run_bakeoff": {"queue": "bakeoff"},
}
# Every worker's main process writes a heartbeat row this often; a worker not seen for
# LOUPE_WORKER_SEEN_WITHIN seconds counts as gone (health, and the sweeper frees its claims).
LOUPE_WORKER_HEARTBEAT_SECONDS = env_float("LOUPE_WORKER_HEARTBEAT_SECONDS", 10.0)
LOUPE_WORKER_SEEN_WITHIN = env_int("LOUPE_WORKER_SEEN_WITHIN", 60)
# A worker whose pool has left a task waiting beside a free pool process this long is wedged
# (classify/pool_watch.py): it restarts itself. 0 turns the watch off.
LOUPE_WORKER_STALLED_AFTER = env_float("LOUPE_WORKER_STALLED_AFTER", 60.0)
# Health and the project page call classification stalled when items wait and no worker has
# claimed anything for this long.
LOUPE_STALL_AFTER = env_int("LOUPE_STALL_AFTER", 180)
# /healthz opens a broker connection at most once per this many seconds per process (the answer
# is shared meanwhile), so a load balancer polling it cannot hammer the broker.
LOUPE_HEALTH_BROKER_CACHE_SECONDS = env_float("LOUPE_HEALTH_BROKER_CACHE_SECONDS", 5.0)
LOUPE_SWEEP_EVERY_SECONDS = env_int("LOUPE_SWEEP_EVERY_SECONDS", 30)

# --- Classification --------------------------------------------------------------------------
LOUPE_DEFAULT_BACKEND = env_str("LOUPE_DEFAULT_BACKEND", "local")
# Backends beyond the built-in ones, as name=dotted.path pairs (the test suite adds its "colour" backend).
LOUPE_EXTRA_BACKENDS = env_mapping("LOUPE_EXTRA_BACKENDS", "")
LOUPE_MAX_ATTEMPTS = env_int("LOUPE_MAX_ATTEMPTS", 5)
LOUPE_BACKEND_RETRIES = env_int("LOUPE_BACKEND_RETRIES", 3)
LOUPE_RETRY_BACKOFF_SECONDS = env_float("LOUPE_RETRY_BACKOFF_SECONDS", 2.0)
LOUPE_RETRY_BACKOFF_MAX_SECONDS = env_float("LOUPE_RETRY_BACKOFF_MAX_SECONDS", 120.0)
if LOUPE_BACKEND_RETRIES >= LOUPE_MAX_ATTEMPTS:
    # Each retry is an attempt: an outage would end items "failed" instead of "needs review".
    raise ImproperlyConfigured("LOUPE_MAX_ATTEMPTS must be greater than LOUPE_BACKEND_RETRIES")
# A SageMaker container may take 60 s and Bedrock may need two calls: room for both.
LOUPE_TASK_SOFT_TIME_LIMIT = env_int("LOUPE_TASK_SOFT_TIME_LIMIT", 150)
LOUPE_TASK_TIME_LIMIT = env_int("LOUPE_TASK_TIME_LIMIT", 180)
# The sweeper's idea of "stuck", in seconds. Short, so a lost message or a dead worker costs at
# most about two minutes (docs/operations.md has the measurements): re-publishing is harmless
# (one claim wins), and queued items are re-published only when the broker holds fewer
# messages than there are stale queued items.
LOUPE_STUCK_RECEIVED_AFTER = env_int("LOUPE_STUCK_RECEIVED_AFTER", 30)
LOUPE_STUCK_QUEUED_AFTER = env_int("LOUPE_STUCK_QUEUED_AFTER", 60)
LOUPE_STUCK_CLASSIFYING_AFTER = env_int("LOUPE_STUCK_CLASSIFYING_AFTER", 240)
if LOUPE_STUCK_CLASSIFYING_AFTER and LOUPE_STUCK_CLASSIFYING_AFTER <= LOUPE_TASK_TIME_LIMIT:
    # A claim younger than the task's time limit may belong to a worker that is still busy.
    warnings.warn("LOUPE_STUCK_CLASSIFYING_AFTER should exceed LOUPE_TASK_TIME_LIMIT", stacklevel=1)
LOUPE_TORCH_THREADS = env_int("LOUPE_TORCH_THREADS", 1)
LOUPE_TORCH_DEVICE = env_str("LOUPE_TORCH_DEVICE", "auto")  # auto (CUDA when present), cpu, cuda, cuda:N
# A worker of the local model classifies up to this many ready items of a project in one forward
# pass (bench/pipeline.py compares batch sizes; see docs/benchmarks.md for what is measured so far).
LOUPE_BATCH_SIZE = env_int("LOUPE_BATCH_SIZE", 32)  # measured: docs/benchmarks.md
if LOUPE_BATCH_SIZE < 1:
    raise ImproperlyConfigured("LOUPE_BATCH_SIZE must be at least 1")

# --- Dashboard, rollups, drift alarms, /metrics ------------------------------------------------
# The periodic task recomputes the last LOOKBACK hours of rollups every EVERY seconds.
LOUPE_ROLLUP_EVERY_SECONDS = env_int("LOUPE_ROLLUP_EVERY_SECONDS", 300)
LOUPE_ROLLUP_LOOKBACK_HOURS = env_int("LOUPE_ROLLUP_LOOKBACK_HOURS", 3)
# Drift: a class whose share of the predictions in the last RECENT hours is more than BAND (0-1,
# absolute) away from its share in the BASELINE hours before raises an alarm; windows with fewer
# than MIN_PREDICTIONS predictions are not judged.
LOUPE_DRIFT_RECENT_HOURS = env_int("LOUPE_DRIFT_RECENT_HOURS", 24)
LOUPE_DRIFT_BASELINE_HOURS = env_int("LOUPE_DRIFT_BASELINE_HOURS", 168)
LOUPE_DRIFT_BAND = env_float("LOUPE_DRIFT_BAND", 0.10)
LOUPE_DRIFT_MIN_PREDICTIONS = env_int("LOUPE_DRIFT_MIN_PREDICTIONS", 50)
if not 0 < LOUPE_DRIFT_BAND < 1:
    raise ImproperlyConfigured("LOUPE_DRIFT_BAND must be between 0 and 1 (a share, e.g. 0.1 = 10 points)")
# /metrics answers a request that carries "Authorization: Bearer <LOUPE_METRICS_TOKEN>" (when
# set) or comes from an address in LOUPE_METRICS_ALLOW (addresses or networks); anything else 404s.
LOUPE_METRICS_TOKEN = env_str("LOUPE_METRICS_TOKEN", "")
LOUPE_METRICS_ALLOW = env_list("LOUPE_METRICS_ALLOW", "127.0.0.1/32,::1/128")

# --- Cloud backends (AWS) ----------------------------------------------------------------------
# The S3 locations Loupe may write to (exports, manifests, training output) and read manifests
# from, comma-separated ``s3://bucket/prefix``. A project only ever gets ``<root>/<slug>/`` under
# one of them, whatever its admins type. Empty: no S3 destination is allowed.
LOUPE_S3_ROOTS = env_list("LOUPE_S3_ROOTS", "")
LOUPE_AWS_CONNECT_TIMEOUT = env_float("LOUPE_AWS_CONNECT_TIMEOUT", 5.0)
LOUPE_AWS_READ_TIMEOUT = env_float("LOUPE_AWS_READ_TIMEOUT", 65.0)  # SageMaker containers get 60 s
LOUPE_AWS_RETRY_MODE = env_str("LOUPE_AWS_RETRY_MODE", "standard")  # or "adaptive" (client-side rate limiting)
LOUPE_AWS_MAX_ATTEMPTS = env_int("LOUPE_AWS_MAX_ATTEMPTS", 3)
# Custom Labels models Loupe started are stopped after this many minutes without work (0: never),
# and started again when work arrives; starting takes about LOUPE_MODEL_START_MINUTES (the estimate
# shown on waiting items).
LOUPE_MODEL_IDLE_MINUTES = env_int("LOUPE_MODEL_IDLE_MINUTES", 60)
LOUPE_MODEL_START_MINUTES = env_int("LOUPE_MODEL_START_MINUTES", 10)
# The first stage of a project's cascade ("cheap path first"): a free backend, by registry name.
LOUPE_CASCADE_BACKEND = env_str("LOUPE_CASCADE_BACKEND", "local")

# --- Integrations (docs/integrations.md) -----------------------------------------------------------
# Who hears about events (the outbox in classify/events.py): dotted paths, called after commit.
LOUPE_EVENT_CONSUMERS = ["integrations.tasks.handle_event"]
# Webhooks go to public HTTPS addresses only; these networks (CIDR) are allowed anyway.
LOUPE_WEBHOOK_ALLOWED_NETWORKS = env_list("LOUPE_WEBHOOK_ALLOWED_NETWORKS", "")
for _network in LOUPE_WEBHOOK_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"LOUPE_WEBHOOK_ALLOWED_NETWORKS: {_network!r} is not a network (CIDR)") from None
LOUPE_WEBHOOK_ALLOW_HTTP = env_bool("LOUPE_WEBHOOK_ALLOW_HTTP", False)  # plain http:// (development only)
LOUPE_WEBHOOK_CA_BUNDLE = env_str("LOUPE_WEBHOOK_CA_BUNDLE", "")  # else certifi's CA bundle
LOUPE_WEBHOOK_TIMEOUT = env_float("LOUPE_WEBHOOK_TIMEOUT", 10.0)
LOUPE_WEBHOOK_MAX_ATTEMPTS = env_int("LOUPE_WEBHOOK_MAX_ATTEMPTS", 8)
LOUPE_WEBHOOK_BACKOFF_SECONDS = env_float("LOUPE_WEBHOOK_BACKOFF_SECONDS", 30.0)
LOUPE_WEBHOOK_BACKOFF_MAX_SECONDS = env_float("LOUPE_WEBHOOK_BACKOFF_MAX_SECONDS", 3600.0)
LOUPE_EVENT_RETENTION_DAYS = env_int("LOUPE_EVENT_RETENTION_DAYS", 30)  # then events and their delivery logs go

# --- Cache (rate limits shared by workers) ----------------------------------------------------
CACHE_URL = env_str("CACHE_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "")
if CACHE_URL.startswith("redis"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}

# --- Logging ---------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
