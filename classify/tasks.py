"""Celery tasks: thin wrappers that take ids, call one service, and own the retry policy.

Broker-level safety comes from settings (acks_late, reject_on_worker_lost, prefetch 1): a message
whose worker died is delivered again rather than lost. Its item is still "classifying" under a
fresh claim then, so the redelivered task leaves it alone (it cannot tell a dead worker from a
slow one); the sweeper re-queues it once the claim is older than LOUPE_STUCK_CLASSIFYING_AFTER,
and the attempt counter ends a poison image as "failed". The database is the source of truth.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from .backends import BackendError
from .bakeoff import execute_bakeoff_run
from .models import BakeoffRun
from .retrain import runs
from .services import classification, lifecycle

log = logging.getLogger(__name__)


def _backoff(retries: int) -> int:
    """Exponential backoff with full jitter, so a throttled burst does not retry in lockstep."""
    return get_exponential_backoff_interval(
        factor=settings.LOUPE_RETRY_BACKOFF_SECONDS, retries=retries,
        maximum=settings.LOUPE_RETRY_BACKOFF_MAX_SECONDS, full_jitter=True,
    )


@shared_task(
    bind=True, name="classify.classify_item", max_retries=None,
    soft_time_limit=settings.LOUPE_TASK_SOFT_TIME_LIMIT, time_limit=settings.LOUPE_TASK_TIME_LIMIT,
)
def classify_item(self, item_id: int) -> None:
    item = lifecycle.start_classification(item_id=item_id)
    if item is None:
        return
    try:
        classification.score_item(item)
    except (BackendError, SoftTimeLimitExceeded) as exc:
        error = exc if isinstance(exc, BackendError) else BackendError("timed out", retryable=True)
        if error.retryable and self.request.retries < settings.LOUPE_BACKEND_RETRIES:
            lifecycle.requeue_after_error(item, reason=f"Retrying after a backend problem: {error.summary}",
                                          detail=str(error))
            raise self.retry(countdown=_backoff(self.request.retries), exc=exc) from None
        lifecycle.route_to_review_after_backend_error(item, error)
    except Exception as exc:
        # Not the backend's fault (a bug, a storage hiccup): retry until the attempt limit.
        log.exception("classifying item %s failed", item_id)
        reason, detail = f"an internal error ({exc.__class__.__name__}).", f"{exc.__class__.__name__}: {exc}"
        if item.attempts >= settings.LOUPE_MAX_ATTEMPTS:
            lifecycle.mark_failed(item, reason=lifecycle.gave_up(item.attempts, reason), detail=detail)
            return
        lifecycle.requeue_after_error(item, reason=f"Retrying after {reason}", detail=detail)
        raise self.retry(countdown=_backoff(self.request.retries), exc=exc) from None


@shared_task(name="classify.sweep")
def sweep() -> None:
    result = lifecycle.sweep_stuck_items()
    if result.requeued or result.failed:
        log.info("sweeper: %s re-queued, %s failed", result.requeued, result.failed)
    resumed = runs.resume_overdue_runs()
    if resumed:
        log.info("sweeper: %s training run(s) resumed", resumed)


@shared_task(name="classify.prune_broker")
def prune_broker(max_age_seconds: int = 24 * 3600) -> int:
    """The embedded broker keeps consumed messages (safer, see docs/architecture.md): drop old ones."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    folder = options.get("processed_folder")
    if not folder:
        return 0
    cutoff = time.time() - max_age_seconds
    removed = 0
    for path in Path(folder).iterdir():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@shared_task(name="classify.run_bakeoff", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def run_bakeoff(run_id: int) -> None:
    run = BakeoffRun.objects.select_related("project").filter(pk=run_id).first()
    if run is not None and run.state == BakeoffRun.State.QUEUED:
        execute_bakeoff_run(run)


@shared_task(name="classify.advance_training_run", soft_time_limit=3600, time_limit=3660)
def advance_training_run(run_id: int, token: str) -> None:
    """One step of a training run, then the next one is scheduled (after a backoff when waiting).
    The run's state is in the database; a stale or duplicate message finds nothing to claim."""
    run = runs.claim(run_id, token)
    if run is None:
        return
    countdown = runs.run_step(run)
    if countdown is not None:
        runs.send(run.pk, run.token, countdown)
