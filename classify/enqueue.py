"""Publishing a Celery task by its registered name.

Services enqueue work and tasks call services; if services imported the task modules, the two
would import each other. So a service names the task instead: the name is what the broker message
carries anyway. Both apps import their task modules when Django starts (``AppConfig.ready``), so
the task is registered in every process and keeps its own options (eager mode, time limits).
"""

from __future__ import annotations

from celery import current_app


def enqueue(name: str, *args, countdown: float | None = None, queue: str | None = None) -> None:
    """Publish task ``name`` with ``args`` (after ``countdown`` seconds, if given; to ``queue``
    instead of the task's route, if given). Raises what the broker raises when it is unreachable:
    the caller decides what "not queued" means for it."""
    task = current_app.tasks[name]
    options = {key: value for key, value in (("countdown", countdown), ("queue", queue)) if value is not None}
    if options:
        task.apply_async(args, **options)
    else:
        task.delay(*args)
