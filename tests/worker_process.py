"""A real ``celery -A config worker`` subprocess sharing the test database, broker and media.

Used by the ``celery_worker_process`` fixture (tests/conftest.py). Everything the worker needs
to see what the test process sees is passed as environment variables, because that is the only
way the settings module reads it (config/settings.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from config.celery import app as celery_app

#: Backends the test suite registers through LOUPE_EXTRA_BACKENDS, in this process and in a worker.
TEST_BACKENDS = {"colour": "tests.colour_backend.ColourBackend"}
READY = re.compile(r"\S+@\S+ ready\.")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def celery_command(*, queues: str = "", concurrency: int = 2) -> list[str]:
    """The worker command line, with the ``celery`` script of the virtualenv running the tests:
    every queue (as bin/up runs it), or only ``queues`` (as docker-compose.yml's workers do)."""
    script = Path(sys.executable).with_name("celery")
    return [
        str(script), "-A", "config", "worker", "--pool", "prefork", "--concurrency", str(concurrency),
        *(["-Q", queues, "-n", f"{queues.split(',')[0]}@%h"] if queues else []),
        "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]


def database_url_for_worker() -> str:
    """A DATABASE_URL for the test database the test process is connected to right now."""
    db = connection.settings_dict
    engine = db["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        if not name or name == ":memory:" or "mode=memory" in name:
            raise RuntimeError("a worker subprocess cannot share an in-memory SQLite test database")
        return "sqlite:///" + str(Path(name).resolve())  # sqlite:////absolute/path
    if engine in {"django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"}:
        auth = quote(db.get("USER") or "", safe="")
        if db.get("PASSWORD"):
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db.get("HOST") or ""
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgres://{auth}@{host}{port}/{quote(db['NAME'], safe='')}"
    raise RuntimeError(f"no DATABASE_URL for a worker on {engine}")


def purge_broker(*, unacked: bool = False) -> int:
    """Drop the messages waiting in the broker. Returns how many.

    ``unacked``: also forget, on Redis, the messages a worker took but never acknowledged (kombu
    would put them back after the visibility timeout, perhaps into a later run whose ids start
    at 1 again). Only with no worker running.
    """
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        removed = 0
        for folder in {options["data_folder_in"], options["data_folder_out"]}:
            for path in Path(folder).glob("*.msg"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed
    removed = celery_app.control.purge() or 0
    if unacked:
        with celery_app.connection_for_write() as conn:
            channel = conn.default_channel
            if conn.transport.driver_type == "redis":
                channel.client.delete(channel.unacked_key, channel.unacked_index_key, channel.unacked_mutex_key)
    return removed


def worker_environment(*, media_root: Path, loupe_settings: Mapping[str, object]) -> dict[str, str]:
    """The environment of a worker that sees what this test process sees: the test database,
    the broker (for the filesystem broker: the same LOUPE_VAR_DIR), the media folder, and the
    given Loupe settings (``{"LOUPE_MAX_ATTEMPTS": 2}`` → ``LOUPE_MAX_ATTEMPTS=2``)."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"CELERY_TASK_ALWAYS_EAGER", "AWS_STORAGE_BUCKET_NAME", "PYTEST_CURRENT_TEST"}}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url_for_worker(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "LOUPE_VAR_DIR": str(settings.VAR_DIR),
        "MEDIA_ROOT": str(media_root),
        "LOUPE_EXTRA_BACKENDS": ",".join(f"{name}={path}" for name, path in TEST_BACKENDS.items()),
        "PYTHONUNBUFFERED": "1",
    })
    env.update({name: str(value) for name, value in loupe_settings.items()})
    return env


class CeleryWorkerProcess:
    """One worker subprocess in its own process group, logging to a file."""

    def __init__(self, *, env: Mapping[str, str], log_path: Path, command: list[str] | None = None) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.command = command or celery_command()
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=settings.BASE_DIR, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not READY.search(self.log()):
            if self.process.poll() is not None:
                raise RuntimeError(f"the celery worker exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the celery worker was not ready after {timeout:.0f} s:\n{self.log()}")
            time.sleep(0.05)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log(self, since: int = 0) -> str:
        """The worker's output (from byte ``since`` on)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(since)
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Warm shutdown (TERM), then KILL the whole process group if anything is left."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # The pool children share the worker's process group (its own session): none may outlive it.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        self.process = None


class WorkerForTest:
    """What a test sees of the shared worker: its log since the test began."""

    def __init__(self, worker: CeleryWorkerProcess) -> None:
        self.worker = worker
        self.since = worker.log_size()

    def log(self) -> str:
        return self.worker.log(self.since)


class WorkerService:
    """At most one worker for the whole test session, restarted only when a test asks for
    different settings (or it died): starting is cheap (~1.5 s) but a warm shutdown takes
    2-5 s, which adds up over many tests."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.media_root = folder / "media"
        self.media_root.mkdir(parents=True, exist_ok=True)
        self.worker: CeleryWorkerProcess | None = None
        self.starts = 0

    def ready(self, loupe_settings: Mapping[str, object]) -> CeleryWorkerProcess:
        """A running worker with these settings and an empty broker queue."""
        env = worker_environment(media_root=self.media_root, loupe_settings=loupe_settings)
        if self.worker is not None and self.worker.running and self.worker.env == env:
            purge_broker()
            return self.worker
        self.stop()
        purge_broker(unacked=True)
        self.starts += 1
        self.worker = CeleryWorkerProcess(env=env, log_path=self.folder / f"celery-worker-{self.starts}.log")
        self.worker.start()
        return self.worker

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
