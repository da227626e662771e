"""Celery signal receivers: the worker counts classification retries and backend failures as
they happen.

A retry leaves no row behind (the item only goes back to ``queued``), and an item sent to review
because its backend failed says so only until a person reviews it, so both are counted here, in
the worker, into the ``retries`` and ``backend_errors`` rollups that /metrics exports as counters;
nothing else listens to signals.
"""

from __future__ import annotations

import logging

from celery.signals import task_postrun, task_retry

from classify.tasks import SENT_TO_REVIEW_AFTER_BACKEND_ERROR

from .services.rollups import record_backend_error, record_retry

log = logging.getLogger(__name__)


@task_retry.connect
def count_classification_retry(sender=None, request=None, reason=None, **_kwargs) -> None:
    if sender is None or sender.name != "classify.classify_item" or not request or not request.args:
        return
    error = getattr(reason, "exc", None) or reason  # Retry(exc=...) carries the cause
    # In a worker the cause may arrive wrapped (UnpickleableExceptionWrapper) with its class name.
    name = getattr(error, "exc_cls_name", None) or type(error).__name__
    try:
        record_retry(item_id=int(request.args[0]), error=name)
    except Exception:  # counting must never break the retry itself
        log.exception("could not count a retry of item %s", request.args[0])


@task_postrun.connect
def count_backend_failure(sender=None, args=None, retval=None, **_kwargs) -> None:
    if sender is None or sender.name != "classify.classify_item" or retval != SENT_TO_REVIEW_AFTER_BACKEND_ERROR:
        return
    try:
        record_backend_error(item_id=int(args[0]))
    except Exception:  # counting must never break the task
        log.exception("could not count the backend failure of item %s", args[0])
