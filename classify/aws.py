"""The one seam to AWS, for the cloud backends, exports and retraining: lazily created clients,
error translation, pacing, S3 locations.

- ``client(service, region)``: one boto3 client per (service, region, endpoint) per process, with
  explicit connect/read timeouts and botocore's retry mode (``standard`` by default, ``adaptive``
  via ``LOUPE_AWS_RETRY_MODE``). Credentials and region come the boto3 way: environment, profile,
  instance role. Nothing connects at import time.
- ``backend_error(exc, service)``: a ``BackendError`` whose ``retryable`` flag and message follow
  the error code: throttling, 5xx and timeouts are retried by the task; the rest fail fast with a
  message a project admin can act on.
- ``pace(name, per_second)``: a per-backend rate limit shared by every worker process through
  Django's cache (Redis's atomic INCR when the broker is Redis; the file cache under a file lock
  otherwise), so a burst of uploads does not trip the service's TPS quota.
- ``parse_s3_uri(uri)``: the one parser of ``s3://bucket/key`` locations (exports, training runs).
- ``confine_s3(uri, project=..., what=...)``: the same, refusing any location outside the
  project's own ``<root>/<slug>/`` under ``LOUPE_S3_ROOTS``. Every S3 location that comes from a
  person (a form, a stored row, a command) goes through it before Loupe's credentials touch it:
  Loupe acts with its own identity, so it decides what each project may reach (docs/security.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import re
import time

from django.conf import settings
from django.core.cache import cache

from .backends.base import BackendError

S3_URI = re.compile(r"^s3://(?P<bucket>[^/]+)(/(?P<key>.*))?$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException",
    "ServiceUnavailable", "ServiceUnavailableException", "InternalServerError", "InternalServerException",
    "InternalFailure", "InternalDependencyException", "ModelNotReadyException", "ModelTimeoutException",
    "RequestTimeout", "RequestTimeoutException", "TooManyRequestsException", "SlowDown", "Throttling",
})

ADVICE = {
    "AccessDeniedException": "the AWS credentials lack permission for this call (see docs/backends.md for the IAM policy)",
    "UnrecognizedClientException": "the AWS credentials are not valid",
    "InvalidSignatureException": "the AWS credentials are not valid",
    "ExpiredTokenException": "the AWS credentials have expired",
    "ResourceNotFoundException": "the model, endpoint or project version named in the backend settings does not exist in this region",
    "ResourceNotReadyException": "the model is not running: start the model version (StartProjectVersion) and try again",
    "ValidationException": "the request was refused as invalid: check the backend settings",
    "ValidationError": "the request was refused as invalid: check the backend settings (endpoint name, content type)",
    "InvalidParameterException": "a parameter was refused: check the backend settings",
    "ImageTooLargeException": "the image is too large for this API",
    "InvalidImageFormatException": "the service could not read the image",
    "InvalidS3ObjectException": "the service could not read the image from S3 (bucket, key or permissions)",
    "ModelError": "the endpoint's model raised an error on this image",
    "ModelErrorException": "the model raised an error on this request",
}


def _config():
    from botocore.config import Config  # boto3/botocore load on first use: no cost at import

    return Config(
        connect_timeout=settings.LOUPE_AWS_CONNECT_TIMEOUT,
        read_timeout=settings.LOUPE_AWS_READ_TIMEOUT,
        retries={"mode": settings.LOUPE_AWS_RETRY_MODE, "max_attempts": settings.LOUPE_AWS_MAX_ATTEMPTS},
        max_pool_connections=20,
        user_agent_extra="loupe",
    )


@functools.lru_cache(maxsize=32)
def client(service: str, region: str | None = None, endpoint_url: str | None = None):
    """A boto3 client, created on first use in this process and reused (clients are thread-safe)."""
    import boto3  # loaded on first use: no cost at import

    return boto3.session.Session().client(service, region_name=region or None, endpoint_url=endpoint_url or None,
                                          config=_config())


def lazy_client(service: str, region: str | None = None):
    """``client`` for a backend: a client that cannot be made (no region configured anywhere, say)
    is a ``BackendError`` like a failed call."""
    return call(service, lambda: client(service, region))


def backend_error(exc: Exception, service: str) -> BackendError:
    """Translate a botocore exception into a ``BackendError`` with the right retry flag."""
    from botocore.exceptions import (  # botocore loads on first use
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message", "") or str(exc)
        retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
        advice = f" ({ADVICE[code]})" if code in ADVICE and not retryable else ""
        # AWS's message may name roles, accounts and ARNs: it goes to admins and logs, the code
        # and the advice to everyone.
        return BackendError(f"{service} {code}: {message}{advice}", retryable=retryable,
                            summary=f"{service} {code}{advice}")
    if isinstance(exc, NoRegionError):
        return BackendError(f'{service}: no AWS region: set "region" in the backend settings or AWS_DEFAULT_REGION',
                            retryable=False)
    if isinstance(exc, NoCredentialsError):
        return BackendError(f"{service}: no AWS credentials found (environment, profile or instance role)",
                            retryable=False)
    summary = f"{service}: {exc.__class__.__name__}"  # the text names endpoints and URLs
    if isinstance(exc, (ReadTimeoutError, ConnectionError, HTTPClientError)):
        return BackendError(f"{summary}: {exc}", retryable=True, summary=summary)
    return BackendError(f"{summary}: {exc}", retryable=False, summary=summary)


def call(service: str, operation, **kwargs):
    """Run one client call, translating any botocore failure into a ``BackendError``."""
    from botocore.exceptions import BotoCoreError, ClientError  # botocore loads on first use

    try:
        return operation(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise backend_error(exc, service) from exc


def pace(name: str, per_second: float | None, *, wait_limit: float = 5.0) -> None:
    """Block until this call fits under ``per_second`` calls a second across all workers.

    A fixed one-second window counted in the cache (``_counting``: Redis in production). If no
    slot frees up within ``wait_limit`` seconds the call is refused as retryable. ``name`` says
    what the quota belongs to (a service in a region, an endpoint, a model): calls under the same
    name share one count, whichever project or process makes them.
    """
    if not per_second or per_second <= 0:
        return
    deadline = time.monotonic() + wait_limit
    while True:
        window = int(time.time())
        key = f"loupe:pace:{name}:{window}"
        try:
            with _counting():
                cache.add(key, 0, timeout=5)
                count = cache.incr(key)
        except ValueError:  # the key expired between add and incr
            continue
        if count <= per_second:
            return
        if time.monotonic() >= deadline:
            raise BackendError(f"{name}: local rate limit of {per_second:g} calls/s reached", retryable=True)
        time.sleep(max(0.0, window + 1 - time.time()) + 0.001)


@contextlib.contextmanager
def _counting():
    """Redis counts atomically (INCR) for every process that shares it. Django's other caches
    increment by a read and a write, so two worker processes could both read 4 and both write 5:
    there the count is taken under an exclusive lock on a file in ``LOUPE_VAR_DIR``, which every
    worker process of the installation (one machine, the embedded default) shares."""
    if settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        yield
        return
    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(settings.VAR_DIR / "pace.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def parse_s3_uri(uri: str, *, what: str = "S3 location", key_required: bool = False,
                 bucket_rules: bool = False) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``, with a key if ``key_required`` (else the key is a
    prefix and may be empty). With ``bucket_rules`` the bucket must be a valid S3 bucket name (a
    location AWS is about to use); without, any name (an export's source-refs may name the bucket
    a zip will be uploaded to, even a placeholder). Anything else is a ValueError saying what it
    must look like."""
    match = S3_URI.match(uri.strip())
    if (match is None or (key_required and not match["key"])
            or (bucket_rules and not BUCKET_NAME.match(match["bucket"]))):
        shape = "s3://bucket/key" if key_required else "s3://bucket/prefix"
        raise ValueError(f"The {what} must look like {shape}, not {uri!r}.")
    return match["bucket"], match["key"] or ""


class S3LocationRefused(ValueError):
    """An S3 location a project may not use; the message says where it may go instead."""


def project_s3_prefixes(project) -> list[str]:
    """``<root>/<slug>/`` under each of the installation's ``LOUPE_S3_ROOTS``: the only S3
    locations the project's exports, manifests and training output may use."""
    return [f"{root.rstrip('/')}/{project.slug}/" for root in settings.LOUPE_S3_ROOTS]


def confine_s3(uri: str, *, project, what: str, key_required: bool = False) -> tuple[str, str]:
    """(bucket, key) of ``uri`` when it is one of the project's prefixes or lies below one; else
    ``S3LocationRefused``. A key with an empty, ``.`` or ``..`` segment is refused too: S3 keeps
    them literally, but people (and other tools) read them as paths."""
    return confine_to(uri, project_s3_prefixes(project), what=what, key_required=key_required)


def confine_to(uri: str, prefixes, *, what: str, key_required: bool = False) -> tuple[str, str]:
    """``confine_s3`` with the project's prefixes given (``project_s3_prefixes``): for backends,
    which are handed them in their config and never read the database."""
    if not prefixes:
        raise S3LocationRefused(f"No S3 location is allowed on this installation (LOUPE_S3_ROOTS is empty), "
                                f"so the {what} cannot be {uri!r}.")
    allowed = " or ".join(prefixes)
    try:
        bucket, key = parse_s3_uri(uri, what=what, key_required=key_required, bucket_rules=True)
    except ValueError as exc:
        raise S3LocationRefused(f"{exc} It must be under {allowed}.") from None
    location = f"s3://{bucket}/{key}"
    inner = key[:-1] if key.endswith("/") else key
    if any(part in ("", ".", "..") for part in inner.split("/")) or not any(
            location == prefix.rstrip("/") or location.startswith(prefix) for prefix in prefixes):
        raise S3LocationRefused(f"The {what} must be under {allowed} (this project's place in the "
                                f"installation's S3 roots), not {uri!r}.")
    return bucket, key


def default_s3_prefix(project) -> str:
    """Where the project's exports go unless told otherwise: its prefix under the first root (a
    placeholder to replace when no root is configured)."""
    prefixes = project_s3_prefixes(project)
    return prefixes[0].rstrip("/") if prefixes else f"s3://YOUR-BUCKET/loupe/{project.slug}"
