"""Worker heartbeats: each Celery worker's main process records that it is alive.

A thread of the main process (not the pool children, not the event loop: a slow database must
not stall task delivery) upserts the worker's ``WorkerHeartbeat`` row every
``LOUPE_WORKER_HEARTBEAT_SECONDS``; a warm shutdown deletes it. Health reports live workers from
these rows, and the sweeper frees the claims of a worker that stopped beating (killed with
SIGKILL, its machine gone) without waiting for the task time limit.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import bootsteps
from celery.worker import state as worker_state
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from .models import WorkerHeartbeat
from .pool_watch import PoolWatch, restart_wedged_worker, snapshot

log = logging.getLogger(__name__)


def record_heartbeat(*, name: str, pid: int, started_at, active_tasks: list[str] | None = None) -> None:
    """Upsert the worker's row with the current time and the tasks it is running."""
    WorkerHeartbeat.objects.update_or_create(
        name=name, defaults={"pid": pid, "started_at": started_at, "seen_at": timezone.now(),
                             "active_tasks": active_tasks}
    )


def running_task_ids() -> list[str] | None:
    """Ids of the requests this worker's pool processes have accepted and not finished.

    Read in the main process, where Celery keeps them (``celery.worker.state.active_requests``,
    copied with ``pool_watch.snapshot``). A task that died with its pool process leaves this set,
    so the sweeper can free its claims even if the release on ``WorkerLostError`` did not happen.
    None when no copy could be taken: the sweeper then waits for the next beat."""
    active = snapshot(worker_state.active_requests)
    return None if active is None else sorted(request.id for request in active if request.id)


def forget_worker(*, name: str) -> None:
    WorkerHeartbeat.objects.filter(name=name).delete()


class Heartbeat(bootsteps.StartStopStep):
    """The worker blueprint step (registered in classify/apps.py). It starts after the pool, so
    the pool's first children are not forked while the thread holds a database connection."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, parent) -> None:
        self.name, self.pid, self.started_at = parent.hostname, os.getpid(), timezone.now()
        self.watch = PoolWatch(concurrency=getattr(parent, "concurrency", None) or 1)
        self.thread = threading.Thread(target=self.run, name="loupe-heartbeat", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.beat(lambda: record_heartbeat(name=self.name, pid=self.pid, started_at=self.started_at,
                                               active_tasks=running_task_ids()))
            stalled = self.watch.check(after=settings.LOUPE_WORKER_STALLED_AFTER)
            if settings.LOUPE_WORKER_STALLED_AFTER and stalled:
                restart_wedged_worker(stalled)
                return
            self.stopping.wait(settings.LOUPE_WORKER_HEARTBEAT_SECONDS)

    def stop(self, parent) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.beat(lambda: forget_worker(name=self.name))

    @staticmethod
    def beat(write) -> None:
        """One write; a database outage is logged and retried at the next beat, never raised."""
        try:
            close_old_connections()
            write()
        except Exception as exc:
            log.warning("worker heartbeat not recorded: %s", exc)
        finally:
            connection.close()
