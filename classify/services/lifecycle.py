"""The item state machine: conditional updates checked against ``ALLOWED_TRANSITIONS``, claims,
and the sweeper.

Every status change is a conditional UPDATE, so two workers (or a worker and the sweeper) can
never both move the same item.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from classify import events
from classify.backends import BackendError
from classify.models import ALLOWED_TRANSITIONS, Item, WorkerHeartbeat

from .queueing import broker_backlog, hand_to_queue

Status = Item.Status
log = logging.getLogger(__name__)


def transition(item_id: int, *, to: str, reason: str = "", detail: str = "", only_from: Iterable[str] | None = None,
               **fields) -> bool:
    """Move an item to ``to`` if the state machine allows it from where it stands now.

    Returns False (and changes nothing) when the item is not in an allowed state: someone else
    moved it first. Extra ``fields`` are written in the same UPDATE. ``detail`` is the full error
    behind a short ``reason`` (for project admins and logs; cleared by any transition without one).
    ``updated_at`` defaults to now; a caller that reports the moment elsewhere (the settlement
    event) passes its own.
    """
    updated_at = fields.pop("updated_at", None) or timezone.now()
    sources = [state for state, targets in ALLOWED_TRANSITIONS.items() if to in targets]
    if only_from is not None:
        sources = [state for state in sources if state in set(only_from)]
    updated = Item.objects.filter(pk=item_id, status__in=sources, **fields.pop("where", {})).update(
        status=to, status_reason=reason[:500], error_detail=detail[:2000], updated_at=updated_at, **fields
    )
    return updated == 1


def start_classification(*, item_id: int, claimed_by: str = "") -> Item | None:
    """Claim an item for one worker: a conditional UPDATE that also counts the attempt.

    ``claimed_by`` ("<worker name>/<task id>") lets the claim be released early when that
    worker's process dies (``release_lost_claim``) or the worker stops beating (the sweeper).

    Returns None when there is nothing to do (already claimed, finished, or deleted). An item
    whose earlier attempts never finished (the worker died, as a poison image can make it) ends
    ``failed`` once it has used ``LOUPE_MAX_ATTEMPTS``, instead of looping forever.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.LOUPE_STUCK_CLASSIFYING_AFTER)
    claim = uuid.uuid4()
    claimed = Item.objects.filter(
        Q(status__in=[Status.RECEIVED, Status.QUEUED]) | Q(status=Status.CLASSIFYING, claimed_at__lt=stale),
        pk=item_id,
    ).update(status=Status.CLASSIFYING, claim=claim, claimed_at=now, claimed_by=claimed_by[:255], updated_at=now,
             attempts=F("attempts") + 1)
    if not claimed:
        return None
    item = Item.objects.select_related("project").get(pk=item_id)
    if item.attempts > settings.LOUPE_MAX_ATTEMPTS:
        last = item.status_reason or "the worker stopped before finishing"
        mark_failed(item, reason=gave_up(item.attempts - 1, last), detail=item.error_detail)
        return None
    return item


def claim_batch_mates(item: Item, *, limit: int, claimed_by: str = "") -> list[Item]:
    """Claim up to ``limit`` more ready items of ``item``'s project for the same forward pass (a
    worker of the local model classifies them together, ``LOUPE_BATCH_SIZE``).

    Ready means queued for a first attempt (no backend pinned yet, no retry waiting out its
    backoff) while ``item`` runs on the project's current backend; they are pinned to it in the
    same conditional UPDATE that claims them, so a colleague worker can never take them too.
    Their own messages then find them claimed and do nothing. Two queries.
    """
    project = item.project
    if limit < 1 or item.backend != project.backend or item.backend_config != project.backend_config:
        return []
    ready = Item.objects.filter(project=project, status=Status.QUEUED, backend="", status_reason="")
    ids = list(ready.exclude(pk=item.pk).order_by("pk").values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    now, claim = timezone.now(), uuid.uuid4()
    ready.filter(pk__in=ids).update(status=Status.CLASSIFYING, claim=claim, claimed_at=now, updated_at=now,
                                    claimed_by=claimed_by[:255], attempts=F("attempts") + 1, backend=project.backend,
                                    backend_config=project.backend_config)
    mates = list(Item.objects.filter(pk__in=ids, claim=claim))
    for mate in mates:
        mate.project = project
    return mates


def release_batch_mates(mates: Iterable[Item], *, reason: str) -> None:
    """Batch mates a failed forward pass did not finish: back to the queue, published again, so
    each is retried on its own (a poison image then fails alone)."""
    for mate in mates:
        if requeue_after_error(mate, reason=reason):
            hand_to_queue(mate.pk)


def gave_up(attempts: int, last_problem: str) -> str:
    """The one wording of "this item used up its attempts"."""
    return f"Gave up after {attempts} attempt{'s' if attempts != 1 else ''}. Last problem: {last_problem}"


def mark_failed(item: Item, *, reason: str, detail: str = "") -> bool:
    """Fail a claimed item for good (an ``item.settled`` event in the same transaction)."""
    with transaction.atomic():
        failed = transition(item.pk, to=Status.FAILED, reason=reason, detail=detail, where={"claim": item.claim})
        if failed:
            events.item_settled(item.pk)
    return failed


def requeue_after_error(item: Item, *, reason: str, detail: str = "") -> bool:
    """Put a claimed item back in the queue state before a retry is scheduled."""
    return transition(
        item.pk, to=Status.QUEUED, reason=reason, detail=detail, only_from=[Status.CLASSIFYING],
        where={"claim": item.claim}, enqueued_at=timezone.now(),
    )


def wait_for_model(item: Item, *, reason: str) -> bool:
    """Put a claimed item back in the queue while its model starts or its budget is used up. The
    wait is not an attempt: the attempt counted by the claim is given back, so a long wait never
    fails an item."""
    return transition(
        item.pk, to=Status.QUEUED, reason=reason, only_from=[Status.CLASSIFYING],
        where={"claim": item.claim}, enqueued_at=timezone.now(), attempts=F("attempts") - 1,
    )


def route_to_review_after_backend_error(item: Item, error: BackendError) -> bool:
    """The backend could not score it (retries exhausted, or an error retrying cannot fix):
    a person decides instead. Nothing is dropped."""
    prefix = "Backend unavailable" if error.retryable else "Backend error"
    log.warning("item %s goes to review after a backend error: %s", item.pk, error)
    return transition(
        item.pk, to=Status.NEEDS_REVIEW, reason=f"{prefix}: {error.summary}", detail=f"{prefix}: {error}",
        only_from=[Status.CLASSIFYING], where={"claim": item.claim},
    )


LOST_CLAIM_REASON = "The worker process stopped mid-task (killed, or out of memory)."


def release_lost_claim(*, item_id: int, claimed_by: str) -> bool:
    """The pool process running this claim died: the worker's main process gives the item back
    at once (``queued``), so the message Celery delivers again can claim it instead of waiting
    for the claim to go stale. Only that claim is released, never another worker's.

    Items the dead task had claimed as batch mates (same ``claimed_by``) go back too and are
    published again: their own messages were already delivered and found them claimed, so
    nothing else would pick them up before the claim went stale."""
    if not claimed_by:
        return False
    released = transition(item_id, to=Status.QUEUED, reason=LOST_CLAIM_REASON, only_from=[Status.CLASSIFYING],
                          where={"claimed_by": claimed_by}, enqueued_at=timezone.now())
    mates = list(Item.objects.filter(status=Status.CLASSIFYING, claimed_by=claimed_by).exclude(pk=item_id)
                 .values_list("pk", flat=True))
    for mate in mates:
        if transition(mate, to=Status.QUEUED, reason=LOST_CLAIM_REASON, only_from=[Status.CLASSIFYING],
                      where={"claimed_by": claimed_by}, enqueued_at=timezone.now()):
            hand_to_queue(mate)
    return released


# --- The sweeper ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    requeued: int
    failed: int


def sweep_stuck_items(*, limit: int = 1000) -> SweepResult:
    """Re-publish items the broker may have lost; free claims nobody is working on; fail the
    items that used up their attempts.

    - ``received`` for longer than LOUPE_STUCK_RECEIVED_AFTER: never reached the broker.
    - ``queued`` since longer than LOUPE_STUCK_QUEUED_AFTER, while the broker holds fewer
      messages than there are such items: some messages are gone (a flushed or lost broker).
    - ``classifying`` under a claim of a worker that has not beaten for LOUPE_WORKER_SEEN_WITHIN
      seconds (or was restarted since the claim, or beats without the claiming task among those
      it runs), or for longer than LOUPE_STUCK_CLASSIFYING_AFTER.
    A duplicate message is harmless: ``start_classification`` lets only one worker claim.
    """
    now = timezone.now()
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    received = Item.objects.filter(status=Status.RECEIVED, updated_at__lt=ago(settings.LOUPE_STUCK_RECEIVED_AFTER))
    requeued = sum(hand_to_queue(item_id) for item_id in received.values_list("pk", flat=True)[:limit])
    requeued += sum(hand_to_queue(item_id) for item_id in lost_messages(now=now, limit=limit))
    failed = 0
    for item in abandoned_claims(now=now, limit=limit):
        if item.attempts >= settings.LOUPE_MAX_ATTEMPTS:
            failed += mark_failed(item, reason=gave_up(item.attempts, "the worker stopped mid-task."))
        elif requeue_after_error(item, reason="Re-queued: the worker stopped mid-task."):
            requeued += hand_to_queue(item.pk)
    return SweepResult(requeued=requeued, failed=failed)


def lost_messages(*, now, limit: int) -> list[int]:
    """Queued items whose message may be gone: queued for LOUPE_STUCK_QUEUED_AFTER, when the
    broker's queue is shorter than their number (or cannot be measured)."""
    stale = Item.objects.filter(status=Status.QUEUED).filter(
        Q(enqueued_at__lt=now - timedelta(seconds=settings.LOUPE_STUCK_QUEUED_AFTER)) | Q(enqueued_at__isnull=True)
    ).order_by("enqueued_at")
    ids = list(stale.values_list("pk", flat=True)[:limit])
    if not ids:
        return []
    backlog = broker_backlog()
    if backlog is not None and backlog >= stale.count():
        return []  # the broker still holds that many messages: workers are draining a backlog
    return ids


def abandoned_claims(*, now, limit: int) -> list[Item]:
    """Claims no live worker holds: their worker has not beaten within LOUPE_WORKER_SEEN_WITHIN
    seconds or started after the claim (a restart), or the claim is older than
    LOUPE_STUCK_CLASSIFYING_AFTER whoever holds it."""
    grace = now - timedelta(seconds=settings.LOUPE_WORKER_SEEN_WITHIN)
    beats = live_beats(now=now)
    too_old = now - timedelta(seconds=settings.LOUPE_STUCK_CLASSIFYING_AFTER)
    candidates = Item.objects.filter(status=Status.CLASSIFYING).filter(
        Q(claimed_at__lt=too_old) | (Q(claimed_at__lt=grace) & ~Q(claimed_by=""))
    ).order_by("claimed_at")[:limit]
    return [item for item in candidates
            if item.claimed_at < too_old or claim_abandoned(item.claimed_by, item.claimed_at, beats)]


def live_beats(*, now) -> dict[str, WorkerHeartbeat]:
    """The heartbeats of workers seen within LOUPE_WORKER_SEEN_WITHIN seconds, by worker name."""
    grace = now - timedelta(seconds=settings.LOUPE_WORKER_SEEN_WITHIN)
    return {beat.name: beat for beat in WorkerHeartbeat.objects.filter(seen_at__gte=grace)}


def claim_abandoned(claimed_by: str, claimed_at, beats: dict[str, WorkerHeartbeat]) -> bool:
    """No live worker holds the claim "<worker>/<task id>" made at ``claimed_at``: its worker has
    not beaten lately (absent from ``beats``), started after the claim (a restart), or beats
    without that task among those it runs (``task_ended``). Used for items and bake-offs alike."""
    worker, _, task_id = claimed_by.rpartition("/")
    beat = beats.get(worker)
    return (beat is None or beat.started_at > claimed_at
            or task_ended(beat, task_id=task_id, claimed_at=claimed_at))


def task_ended(beat: WorkerHeartbeat, *, task_id: str, claimed_at) -> bool:
    """The worker is alive but no longer runs the task that made this claim (its pool process
    died and the release on ``WorkerLostError`` did not happen). Judged only from a beat taken
    a whole beat interval after the claim, so a task that has just started is never mistaken
    for a dead one; a worker that does not report its tasks (``None``) is never judged."""
    margin = timedelta(seconds=max(2.0, settings.LOUPE_WORKER_HEARTBEAT_SECONDS))
    return (beat.active_tasks is not None and bool(task_id) and beat.seen_at >= claimed_at + margin
            and task_id not in beat.active_tasks)
