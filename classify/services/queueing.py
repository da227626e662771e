"""Handing items to the task queue. The database, not the broker, says where an item stands:
with the broker down an item keeps its state and a reason, and the sweeper publishes it later."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from classify.enqueue import enqueue
from classify.models import Item

log = logging.getLogger(__name__)
Status = Item.Status
BROKER_DOWN_REASON = "Waiting for the task queue (broker unreachable); it will be retried automatically."
CLASSIFY_TASK = "classify.classify_item"


def schedule_classification(item_id: int) -> None:
    """Hand the item to the task queue once the surrounding transaction commits."""
    transaction.on_commit(lambda: hand_to_queue(item_id))


def hand_to_queue(item_id: int) -> bool:
    """Publish the classification task. With the broker down, the item keeps its state and a
    reason saying so, and the sweeper publishes it later: the database is the source of truth.
    """
    try:
        enqueue(CLASSIFY_TASK, item_id)
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
