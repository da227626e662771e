from __future__ import annotations

import pytest

from config.celery import app as celery_app
from tests.worker_process import CeleryWorkerProcess, purge_broker


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


# --- A real Celery worker (tests/test_worker.py, tests/test_browser.py) ------------------------

#: Loupe settings every real worker gets, in its environment and in the test process alike.
WORKER_SETTINGS = {"LOUPE_RETRY_BACKOFF_SECONDS": 0}
_worker_log_key = pytest.StashKey[CeleryWorkerProcess]()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "worker_settings(**values): Loupe settings (e.g. LOUPE_MAX_ATTEMPTS=2) for the celery_worker_process "
        "fixture: passed to the worker as environment variables and set in the test process too.",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that ran a real worker shows the worker's log."""
    report = yield
    worker = item.stash.get(_worker_log_key, None)
    if worker is not None and report.failed:
        report.sections.append(("celery worker log", worker.log() or "(empty)"))
    return report


@pytest.fixture
def celery_worker_process(request, transactional_db, settings, tmp_path):
    """A real ``celery -A config worker`` (prefork, 2 children) for this test.

    It shares the committed rows of the test database (hence ``transactional_db``), the broker
    (the same ``CELERY_BROKER_URL``; for the filesystem broker the same ``LOUPE_VAR_DIR``) and
    this test's media folder. Eager mode is off while it runs, so ``.delay()`` really publishes.
    Extra settings: ``@pytest.mark.worker_settings(LOUPE_MAX_ATTEMPTS=2, ...)``. Starting one
    takes about 1.5 s; it is stopped (TERM, then KILL) before the database is flushed.
    """
    values = dict(WORKER_SETTINGS)
    for marker in reversed(list(request.node.iter_markers("worker_settings"))):
        values.update(marker.kwargs)
    for name, value in values.items():
        setattr(settings, name, value)
    celery_app.conf.task_always_eager = False
    purge_broker()
    worker = CeleryWorkerProcess.for_test_process(
        log_path=tmp_path / "celery-worker.log", extra_env={name: str(value) for name, value in values.items()}
    )
    request.node.stash[_worker_log_key] = worker
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()
        celery_app.conf.task_always_eager = True
