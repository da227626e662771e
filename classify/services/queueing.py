"""Handing items to the task queue. The database, not the broker, says where an item stands:
with the broker down an item keeps its state and a reason, and the sweeper publishes it later."""

from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from classify.backends import runs_locally
from classify.enqueue import enqueue
from classify.models import Item

log = logging.getLogger(__name__)
Status = Item.Status
BROKER_DOWN_REASON = "Waiting for the task queue (broker unreachable); it will be retried automatically."
CLASSIFY_TASK = "classify.classify_item"


def schedule_classification(item_id: int) -> None:
    """Hand the item to the task queue once the surrounding transaction commits. A failure then
    (the database dropped the connection right after the commit) is logged, never raised into
    the caller, whose row is stored: the item waits as ``received`` and the sweeper hands it on."""
    transaction.on_commit(lambda: hand_to_queue(item_id), robust=True)


def hand_to_queue_later(item_id: int, countdown: float) -> None:
    """Publish the classification task after ``countdown`` seconds (an item waiting for its model).
    With the broker down the item stays queued and the sweeper publishes it later."""
    try:
        enqueue(CLASSIFY_TASK, item_id, countdown=countdown)
    except Exception as exc:  # kombu raises various connection errors; the sweeper resends
        log.warning("could not queue item %s: %s", item_id, exc)


def classification_queue(item_id: int) -> str:
    """The local model's queue for a backend that computes on the worker, else the cloud queue
    (config/settings.py LOUPE_QUEUES): by the backend the item is pinned to, else its project's."""
    row = Item.objects.filter(pk=item_id).values_list("backend", "project__backend").first()
    backend = (row[0] or row[1]) if row else ""
    return "classify_local" if runs_locally(backend) else "classify_cloud"


def hand_to_queue(item_id: int) -> bool:
    """Publish the classification task. With the broker down, the item keeps its state and a
    reason saying so, and the sweeper publishes it later: the database is the source of truth.
    """
    try:
        queue = classification_queue(item_id)
        enqueue(CLASSIFY_TASK, item_id, queue=None if queue == "classify_local" else queue)  # local: the task's route
    except Exception as exc:  # kombu raises various connection errors; all mean "not queued"
        log.warning("could not queue item %s: %s", item_id, exc)
        Item.objects.filter(pk=item_id, status__in=[Status.RECEIVED, Status.QUEUED]).update(
            status_reason=BROKER_DOWN_REASON,
            updated_at=timezone.now(),
        )
        return False
    now = timezone.now()
    if not Item.objects.filter(pk=item_id, status=Status.RECEIVED).update(
        status=Status.QUEUED, status_reason="", enqueued_at=now, updated_at=now
    ):  # re-published by the sweeper: refresh the clock; keep the reason unless it was the broker's
        Item.objects.filter(pk=item_id, status=Status.QUEUED).update(
            enqueued_at=now, updated_at=now,
            status_reason=Case(When(status_reason=BROKER_DOWN_REASON, then=Value("")), default=F("status_reason")),
        )
    return True


def broker_backlog() -> int | None:
    """How many messages wait in the broker's task queue, or None when the broker cannot say.

    The sweeper compares it with the items the database holds as queued: while the broker still
    holds at least as many messages, they are on their way and re-publishing them would only
    add duplicates to a backlog."""
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            return sum(_waiting(conn, queue) for queue in CLASSIFY_QUEUES)
    except Exception as exc:  # an unreachable broker: unknown
        log.info("broker backlog unknown: %s", exc)
        return None


CLASSIFY_QUEUES = ("classify_local", "classify_cloud")


def _waiting(conn, queue: str) -> int:
    """Messages in one queue; a queue never declared yet holds none."""
    try:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except conn.channel_errors:
        return 0
