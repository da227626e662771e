"""Worker heartbeats: each Celery worker writes its own row every LOUPE_HEARTBEAT_SECONDS.

A bootstep on the worker's timer (the main process, not a pool child), so a worker whose main
loop is stuck stops beating even while its children still run. /metrics shows the age of each.
config/celery.py names it by its dotted path: Celery loads it when the worker starts, after
Django is set up.
"""

from __future__ import annotations

import logging

from celery import bootsteps
from django.conf import settings
from django.db import connection

from .services.heartbeats import beat, started

log = logging.getLogger(__name__)


class HeartbeatStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.timer_ref = None

    def start(self, worker) -> None:
        started(name=worker.hostname)
        connection.close()  # the pool forks from this process: no shared database socket
        self.timer_ref = worker.timer.call_repeatedly(settings.LOUPE_HEARTBEAT_SECONDS, self._beat, (worker,),
                                                      priority=10)

    def stop(self, worker) -> None:
        if self.timer_ref is not None:
            self.timer_ref.cancel()
            self.timer_ref = None

    def _beat(self, worker) -> None:
        try:
            beat(name=worker.hostname)
        except Exception:  # a database hiccup must not stop the worker; the age just grows
            log.warning("heartbeat of %s not written", worker.hostname, exc_info=True)
        finally:
            connection.close()
