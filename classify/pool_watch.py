"""A worker whose pool no longer takes work restarts itself.

Celery's prefork pool can lose a task when its pool processes are killed (out of memory, an
operator's SIGKILL) at the moment a task was handed to one of them but not yet taken: the main
process keeps that task as "sent, not started" forever, its message stays unacknowledged, and
with the prefetch window full the worker stops taking anything else while it looks alive (it
still beats). Seen in bench/faults.py: after the pool processes were killed, some runs took no
task for minutes.

``PoolWatch`` runs in the heartbeat thread of the worker's main process. A task that has waited
to start while a pool process was free, at every look for longer than
``LOUPE_WORKER_STALLED_AFTER`` seconds, means the worker is wedged: it logs why and stops the
worker at once (a cold shutdown, then a hard exit). Its supervisor (bin/up, systemd,
docker-compose's restart policy) starts it again; unacknowledged messages go back to the broker
and the sweeper republishes anything lost, as after any killed worker.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from celery.worker import state as worker_state

log = logging.getLogger(__name__)


def snapshot(requests) -> list | None:
    """A copy of one of Celery's request sets, which the event loop changes while we read."""
    for _ in range(5):
        try:
            return list(requests)
        except RuntimeError:  # the set changed size during the copy
            continue
    return None


class PoolWatch:
    """Tracks, per task waiting to start, since when it has been seen waiting beside a free pool
    process. ``stalled_for`` is how long the oldest of them has waited so."""

    def __init__(self, *, concurrency: int) -> None:
        self.concurrency = concurrency
        self.idle_waiting_since: dict[str, float] = {}

    def look(self, *, reserved: list, active: list, now: float) -> float:
        """One look at the worker's requests; returns the seconds the oldest waiting task has
        been seen waiting while a pool process was free (0 when none)."""
        started = {id(request) for request in active}
        waiting = [request.id for request in reserved
                   if id(request) not in started and getattr(request, "time_start", None) is None]
        if len(active) >= self.concurrency:
            self.idle_waiting_since = {}  # every process is busy: waiting is normal
            return 0.0
        self.idle_waiting_since = {task_id: self.idle_waiting_since.get(task_id, now) for task_id in waiting}
        return now - min(self.idle_waiting_since.values(), default=now)

    def check(self, *, after: float) -> float:
        """Look at this worker's own requests; returns the stall in seconds if past ``after``."""
        reserved, active = snapshot(worker_state.reserved_requests), snapshot(worker_state.active_requests)
        if reserved is None or active is None:
            return 0.0
        stalled = self.look(reserved=reserved, active=active, now=time.monotonic())
        return stalled if stalled > after else 0.0


def restart_wedged_worker(stalled: float, *, grace: float = 15.0) -> None:
    """Stop this worker so its supervisor starts a fresh one: Celery's cold shutdown (SIGQUIT),
    and a hard exit if that has not ended the process within ``grace`` seconds."""
    log.critical("The worker's pool has taken no task for %.0f s while a task waits and a pool process is free "
                 "(a pool process was killed while a task was being handed to it). Restarting the worker.", stalled)
    threading.Timer(grace, os._exit, args=(70,)).start()
    os.kill(os.getpid(), signal.SIGQUIT)
