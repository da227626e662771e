"""Celery tasks: thin wrappers that take ids, call one service, and own the retry policy.

Broker-level safety comes from settings (acks_late, reject_on_worker_lost, prefetch 1): a message
whose pool process died is delivered again rather than lost. Before Celery hands it back, the
worker's main process releases the dead process's claim (``ClassifyRequest``), so the second
delivery claims the item at once; the attempt counter ends a poison image as "failed". A worker
that dies whole (SIGKILL, a lost machine) stops beating, and the sweeper frees its claims. The
database is the source of truth.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from billiard.exceptions import WorkerLostError
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from celery.worker.request import Request
from django.conf import settings
from django.db import DatabaseError, connection

from .backends import BackendError
from .bakeoff import claim_bakeoff_run, execute_bakeoff_run, recover_bakeoffs, resume_waiting_bakeoffs
from .retrain import runs
from .services import budgets, classification, counts, hosting, lifecycle, queueing

log = logging.getLogger(__name__)
# What classify_item returns when its run sent the item to review because the backend failed.
SENT_TO_REVIEW_AFTER_BACKEND_ERROR = "sent_to_review_after_backend_error"


def _backoff(retries: int) -> int:
    """Exponential backoff with full jitter, so a throttled burst does not retry in lockstep."""
    return get_exponential_backoff_interval(
        factor=settings.LOUPE_RETRY_BACKOFF_SECONDS, retries=retries,
        maximum=settings.LOUPE_RETRY_BACKOFF_MAX_SECONDS, full_jitter=True,
    )


class ClassifyRequest(Request):
    """The worker's side of a classify_item message, in the worker's main process."""

    def on_failure(self, exc_info, send_failed_event=True, return_ok=False):
        exc = getattr(exc_info.exception, "exc", exc_info.exception)
        if isinstance(exc, WorkerLostError) and self.args:
            try:  # before Celery requeues the message, so its next delivery can claim the item
                lifecycle.release_lost_claim(item_id=self.args[0], claimed_by=claim_name(self.hostname, self.id))
            except Exception:
                log.exception("could not release the claim of item %s", self.args[0])
            finally:
                connection.close()  # the main process forks pool processes: hold no connection
        return super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


def claim_name(hostname: str | None, task_id: str | None) -> str:
    return f"{hostname or ''}/{task_id or ''}"


@shared_task(
    bind=True, name="classify.classify_item", max_retries=None, Request=ClassifyRequest,
    soft_time_limit=settings.LOUPE_TASK_SOFT_TIME_LIMIT, time_limit=settings.LOUPE_TASK_TIME_LIMIT,
)
def classify_item(self, item_id: int) -> str | None:
    """Classify the item, and with the local model up to ``LOUPE_BATCH_SIZE - 1`` other ready
    items of its project in the same forward pass. Should the batch fail, the others go back to
    the queue and this item takes the usual single-item path with its retry policy.

    Returns SENT_TO_REVIEW_AFTER_BACKEND_ERROR when this run sent the item to review because its
    backend failed (the dashboard counts those from Celery's task_postrun), None otherwise."""
    claimed_by = claim_name(self.request.hostname, self.request.id)
    item = lifecycle.start_classification(item_id=item_id, claimed_by=claimed_by)
    if item is None:
        return
    if _classified_in_a_batch(item, claimed_by):
        return
    try:
        classification.score_item(item)
    except (hosting.ModelStarting, budgets.OverBudget) as wait:
        if lifecycle.wait_for_model(item, reason=wait.reason):
            queueing.hand_to_queue_later(item.pk, wait.countdown)
    except (BackendError, SoftTimeLimitExceeded) as exc:
        error = exc if isinstance(exc, BackendError) else BackendError("timed out", retryable=True)
        if error.retryable and self.request.retries < settings.LOUPE_BACKEND_RETRIES:
            _reconnecting(lambda: lifecycle.requeue_after_error(
                item, reason=f"Retrying after a backend problem: {error.summary}", detail=str(error)))
            raise self.retry(countdown=_backoff(self.request.retries), exc=exc) from None
        if _reconnecting(lambda: lifecycle.route_to_review_after_backend_error(item, error)):
            return SENT_TO_REVIEW_AFTER_BACKEND_ERROR
    except Exception as exc:
        # Not the backend's fault (a bug, a storage hiccup): retry until the attempt limit.
        log.exception("classifying item %s failed", item_id)
        reason, detail = f"an internal error ({exc.__class__.__name__}).", f"{exc.__class__.__name__}: {exc}"
        if item.attempts >= settings.LOUPE_MAX_ATTEMPTS:
            _reconnecting(lambda: lifecycle.mark_failed(item, reason=lifecycle.gave_up(item.attempts, reason),
                                                        detail=detail))
            return
        _reconnecting(lambda: lifecycle.requeue_after_error(item, reason=f"Retrying after {reason}", detail=detail))
        raise self.retry(countdown=_backoff(self.request.retries), exc=exc) from None


def _reconnecting(write):
    """Run an error path's write, once more on a new connection if the database dropped the
    current one (the error being handled may be just that): otherwise the item would stay
    "classifying" under this live worker's claim until the claim went stale."""
    try:
        return write()
    except DatabaseError:
        connection.close()
        return write()


def _classified_in_a_batch(item, claimed_by: str) -> bool:
    classification.pin_backend(item)
    if settings.LOUPE_BATCH_SIZE < 2 or not classification.batchable(item):
        return False
    mates = lifecycle.claim_batch_mates(item, limit=settings.LOUPE_BATCH_SIZE - 1, claimed_by=claimed_by)
    if not mates:
        return False
    try:
        classification.score_items([item, *mates])
    except Exception as exc:
        log.warning("a batch of %s items failed (%s); classifying item %s alone", 1 + len(mates), exc, item.pk)
        lifecycle.release_batch_mates(mates, reason=f"Retrying alone after its batch failed: {exc}"[:300])
        return False
    return True


@shared_task(name="classify.sweep")
def sweep() -> None:
    result = lifecycle.sweep_stuck_items()
    if result.requeued or result.failed:
        log.info("sweeper: %s re-queued, %s failed", result.requeued, result.failed)
    counts.compact_status_counts()
    stopped = hosting.stop_idle_models()
    if stopped:
        log.info("sweeper: %s idle Custom Labels model(s) stopped", stopped)
    resumed = runs.resume_overdue_runs()
    if resumed:
        log.info("sweeper: %s training run(s) resumed", resumed)
    bakeoffs = resume_waiting_bakeoffs()
    if bakeoffs:
        log.info("sweeper: %s bake-off(s) resumed after their budget period ended", bakeoffs)
    recovered = recover_bakeoffs()
    if recovered:
        log.info("sweeper: %s bake-off(s) nobody was running queued again", recovered)


@shared_task(name="classify.prune_broker")
def prune_broker(max_age_seconds: int = 3600, quarantine_days: int = 7) -> int:
    """The embedded broker's leftovers (config/broker.py), each older than ``max_age_seconds``:
    a message claimed by a consumer that died before reading it goes back into the queue; the
    hidden half-written file of a publisher that died is removed; quarantined files are kept
    ``quarantine_days`` for inspection. Returns how many files it handled."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if "claim_folder" not in options:
        return 0
    queue, claimed = Path(options["data_folder_in"]), Path(options["claim_folder"])
    handled = 0
    for path in _older_than(claimed.glob("*.msg"), max_age_seconds):
        path.replace(queue / path.name)
        handled += 1
    leftovers = [*_older_than(queue.glob(".*.partial"), max_age_seconds),
                 *_older_than(Path(options["quarantine_folder"]).iterdir(), quarantine_days * 86400)]
    for path in leftovers:
        path.unlink(missing_ok=True)
        handled += 1
    return handled


def _older_than(paths, seconds: float) -> list[Path]:
    cutoff = time.time() - seconds
    return [path for path in paths if path.is_file() and path.stat().st_mtime < cutoff]


@shared_task(bind=True, name="classify.run_bakeoff", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def run_bakeoff(self, run_id: int) -> None:
    run = claim_bakeoff_run(run_id, claimed_by=claim_name(self.request.hostname, self.request.id))
    if run is not None:
        execute_bakeoff_run(run)


@shared_task(name="classify.reclassify_items", soft_time_limit=3600, time_limit=3660)
def reclassify_items(project_id: int, scope: str, through_pk: int) -> None:
    """A project admin's re-classification: its items re-queued a chunk at a time."""
    count = classification.reclassify_scope(project_id=project_id, scope=scope, through_pk=through_pk)
    log.info("re-classification of project %s (%s): %s item(s) re-queued", project_id, scope, count)


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


@shared_task(name="classify.check_refit")
def check_refit(project_id: int) -> None:
    """Whether enough new human labels arrived for a refit (queued after a decision commits)."""
    runs.check_refit(project_id)
