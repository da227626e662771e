from __future__ import annotations

import threading
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from django.db import DatabaseError
from django.db.backends.signals import connection_created
from django.dispatch import receiver
from moto import mock_aws

from classify import aws
from config.celery import app as celery_app
from tests.base import MEDIA_BUCKET
from tests.worker_process import TEST_BACKENDS, WorkerForTest, WorkerService


@receiver(connection_created)
def _lose_no_deadlock_to_the_worker(sender, connection, **kwargs):
    """A test database is emptied (one TRUNCATE of every table) while the shared test worker
    may still be writing (a late task, its heartbeat; item updates fire the count triggers):
    the two can deadlock. PostgreSQL aborts the session whose deadlock check runs first; this
    process waits 10 s before checking (the worker, 1 s), so the worker's write is the one
    aborted and retried, never the suite's teardown. Test process only, and its main thread only:
    the live server's request threads keep 1 s, so a request a page sent just before its test
    ended (a review page renews its leases every few seconds) is the one aborted (a 503 nobody
    reads), not the TRUNCATE (seen once: the teardown of a browser test failed with a deadlock)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if connection.vendor == "postgresql":
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET deadlock_timeout = '10s'")
        except DatabaseError:  # not a superuser: keep the server's setting
            pass


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """The test backend registered, media in a temporary folder, Celery tasks run in-process.

    Tests that need a real worker (tests/test_worker.py) switch eager mode off again.
    """
    settings.LOUPE_EXTRA_BACKENDS = TEST_BACKENDS
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


# --- AWS offline (botocore Stubber, moto) --------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch, settings):
    """Fake credentials (signing works offline), no shared config, one attempt per client call (so
    each stubbed response is one task attempt), and fresh clients."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    settings.LOUPE_AWS_MAX_ATTEMPTS = 1
    aws.client.cache_clear()
    yield
    aws.client.cache_clear()


@pytest.fixture
def moto_s3(aws_env):
    """An S3 client on moto's in-process S3, with no bucket yet: each test module's own fixture
    creates its bucket (and sets the S3 roots it may use), e.g. ``moto_s3.create_bucket(Bucket=BUCKET)``.
    Every S3 client made meanwhile, ``classify.aws.client("s3")`` included, talks to the same moto."""
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def s3_media(moto_s3, settings):
    """Media on S3 (moto), as config/settings.py sets them up with AWS_STORAGE_BUCKET_NAME: the
    private bucket ``MEDIA_BUCKET``, keys under ``loupe/``, presigned URLs valid 300 s."""
    moto_s3.create_bucket(Bucket=MEDIA_BUCKET)
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": MEDIA_BUCKET, "location": "loupe", "default_acl": None, "querystring_auth": True,
                    "querystring_expire": 300, "file_overwrite": False, "region_name": "us-east-1",
                    "signature_version": "s3v4"},
    }}
    return moto_s3


@pytest.fixture
def rekognition_stub(aws_env):
    """A botocore Stubber on the Rekognition client Loupe uses (us-east-1); a test that leaves a
    response it queued unconsumed fails."""
    with Stubber(aws.client("rekognition", "us-east-1")) as stub:
        yield stub
        stub.assert_no_pending_responses()


# --- A real Celery worker (tests/test_worker.py, tests/test_browser.py) ------------------------

#: Loupe settings of the real worker, set in the test process too: few attempts and retries so
#: failure paths end in seconds; claims stale after the production default, far longer than
#: any redelivery takes. Tests that want the same settings share one worker process.
WORKER_SETTINGS = {
    "LOUPE_MAX_ATTEMPTS": 2,
    "LOUPE_BACKEND_RETRIES": 1,
    "LOUPE_RETRY_BACKOFF_SECONDS": 0,
    "LOUPE_STUCK_CLASSIFYING_AFTER": 240,
    "LOUPE_WORKER_LOST_WAIT": 1,
    "LOUPE_WORKER_HEARTBEAT_SECONDS": 0.5,
}
_worker_key = pytest.StashKey[WorkerForTest]()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "worker_settings(**values): Loupe settings for celery_worker_process (e.g. LOUPE_MAX_ATTEMPTS=3), "
        "on top of WORKER_SETTINGS: the worker gets them as environment variables (and is restarted "
        "for them), the test process as Django settings.",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used a real worker shows what the worker logged meanwhile."""
    report = yield
    if report.failed and _worker_key in item.stash:
        report.sections.append(("celery worker log", item.stash[_worker_key].log() or "(nothing)"))
    return report


@pytest.fixture(scope="session")
def _celery_worker_service(django_db_setup, tmp_path_factory):
    """Started on first use; stopped (TERM, then KILL) before the test database is dropped."""
    service = WorkerService(tmp_path_factory.mktemp("celery-worker"))
    yield service
    service.stop()


@pytest.fixture
def celery_worker_process(request, transactional_db, settings, _celery_worker_service):
    """A real ``celery -A config worker`` (prefork, 2 children) working for this test.

    It shares with this process the committed rows of the test database (hence
    ``transactional_db``), the broker (the same ``CELERY_BROKER_URL``; for the filesystem broker
    the same ``LOUPE_VAR_DIR``) and the media folder (this test's storage is pointed at the
    worker's). Eager mode is off meanwhile, so ``.delay()`` really publishes; the broker queue is
    emptied first. Settings: ``WORKER_SETTINGS`` plus ``@pytest.mark.worker_settings(...)``.
    The process is shared by consecutive tests that want the same settings.
    """
    values = dict(WORKER_SETTINGS)
    for marker in reversed(list(request.node.iter_markers("worker_settings"))):
        values.update(marker.kwargs)
    worker = request.node.stash[_worker_key] = WorkerForTest(_celery_worker_service.ready(values))
    for name, value in values.items():
        setattr(settings, name, value)
    media = str(_celery_worker_service.media_root)
    settings.MEDIA_ROOT = media
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": media}}}
    celery_app.conf.task_always_eager = False
    try:
        yield worker
    finally:
        celery_app.conf.task_always_eager = True


# --- Browser tests (headless Debian Chromium driven by Playwright) -------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module; the tests are reported as skipped (with why) without it."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: install Debian's 'chromium' package to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser):
    """Pages in separate browser contexts (separate sessions): ``new_page()`` makes one."""
    contexts = []

    def make():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()
