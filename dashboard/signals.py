"""Celery signal receivers: the worker counts classification retries as they happen.

A retry leaves no row behind (the item only goes back to ``queued``), so it is counted here, in
the worker, into the ``retries`` rollup that /metrics exports; nothing else listens to signals.
"""

from __future__ import annotations

import logging

from celery.signals import task_retry

from .services.rollups import record_retry

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
