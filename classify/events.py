"""The outbox: events for outside systems, recorded inside the transaction that caused them.

``record_event`` writes an :class:`~classify.models.Event` row and, once the transaction commits,
hands its id to each consumer named in ``settings.LOUPE_EVENT_CONSUMERS`` (dotted paths, like the
backend registry: this app names no consumer in code, so dependencies keep pointing one way). A
consumer that cannot run now (the broker is down) loses nothing: the event stays undispatched and
the sweeper hands it over again.

Payloads are snapshots taken when the event happened; a receiver that wants today's state asks
``GET /api/v1/items/<id>/``.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from .models import Event, Item, Prediction, Project, TrainingRun

log = logging.getLogger(__name__)
SETTLED_STATUSES = frozenset({Item.Status.AUTO_ACCEPTED, Item.Status.REVIEWED, Item.Status.REJECTED,
                              Item.Status.FAILED})


def record_event(*, project_id: int, type: str, data: dict) -> Event:
    """Store one event and publish it after commit (call it inside the settling transaction)."""
    event = Event.objects.create(project_id=project_id, type=type, data=data)
    transaction.on_commit(lambda: publish(str(event.pk)))
    return event


def publish(event_id: str) -> None:
    """Hand the event to every consumer; one failing consumer does not stop the others."""
    for path in settings.LOUPE_EVENT_CONSUMERS:
        try:
            import_string(path)(event_id)
        except Exception:  # the sweeper republishes what stayed undispatched
            log.exception("event consumer %s failed for event %s", path, event_id)


def item_settled(item_id: int, *, by=None, answers: list[dict] | None = None) -> Event | None:
    """Record ``item.settled`` for an item that just reached a settled status (else nothing).

    ``by`` is the person whose decision settled it (None for the machine); ``answers`` are the
    human decisions it rests on, oldest first: ``{"reviewer", "labels", "at", "seconds_spent"}``.
    Reads the item and its latest prediction; a caller holding both uses ``settled_event``.
    """
    item = Item.objects.select_related("project", "label").filter(pk=item_id).first()
    if item is None or item.status not in SETTLED_STATUSES:
        return None
    prediction = item.predictions.order_by("-created_at", "-pk").first()
    return settled_event(item, prediction=prediction, by=by, answers=answers or [])


def settled_event(item: Item, *, prediction: Prediction | None, by=None, answers: list[dict]) -> Event:
    """Record ``item.settled`` from what the caller has in hand, no read: ``item`` as the settling
    UPDATE left it (status, reason, label, ``updated_at``, with its project) and its latest
    ``prediction`` (only the fields the snapshot names are used). One INSERT."""
    return record_event(project_id=item.project_id, type=Event.Type.ITEM_SETTLED,
                        data={"item": item_snapshot(item, prediction=prediction, by=by, answers=answers)})


def items_settled_by_the_machine(item_ids: list[int]) -> list[Event]:
    """``item_settled`` for many items a worker settled in one transaction (a batch of the local
    model): the items, their latest predictions and the events in three statements, whatever
    their number, instead of three per item."""
    items = list(Item.objects.select_related("project", "label").filter(pk__in=item_ids, status__in=SETTLED_STATUSES))
    latest: dict[int, Prediction] = {}
    for prediction in Prediction.objects.filter(item_id__in=[item.pk for item in items]).order_by(
            "item_id", "-created_at", "-pk"):
        latest.setdefault(prediction.item_id, prediction)
    created = Event.objects.bulk_create([
        Event(project_id=item.project_id, type=Event.Type.ITEM_SETTLED,
              data={"item": item_snapshot(item, prediction=latest.get(item.pk), answers=[])}) for item in items])
    ids = [str(event.pk) for event in created]
    transaction.on_commit(lambda: publish_all(ids))
    return created


def publish_all(event_ids: list[str]) -> None:
    for event_id in event_ids:
        publish(event_id)


def item_snapshot(item: Item, *, prediction: Prediction | None, by=None, answers: list[dict]) -> dict:
    """The settled item as events and result files describe it, with its latest prediction."""
    labels = answers[-1]["labels"] if answers else ([item.label.name] if item.label else [])
    return {
        "id": item.pk, "project": item.project.slug, "status": item.status, "status_reason": item.status_reason,
        "label": item.label.name if item.label else None,
        "labels": labels, "human_answers": answers,
        "filename": item.original_filename, "sha256": item.sha256, "width": item.width, "height": item.height,
        "scores": prediction.scores if prediction else None,
        "model": {"backend": prediction.backend, "version": prediction.model_version,
                  "decision": prediction.decision, "reason": prediction.reason} if prediction else None,
        "settled_by": by.get_username() if by is not None else None,
        "settled_at": item.updated_at.isoformat(),
        "created_at": item.created_at.isoformat(),
        "api_url": f"/api/v1/items/{item.pk}/",
    }


def training_run_event(run: TrainingRun, type: str) -> Event:
    """``training_run.awaiting_decision`` or ``training_run.promoted`` for a run."""
    return record_event(project_id=run.project_id, type=type, data={"training_run": {
        "id": run.pk, "project": Project.objects.values_list("slug", flat=True).get(pk=run.project_id),
        "kind": run.kind, "state": run.state, "reason": run.reason, "metrics": run.metrics,
        "candidate_version": run.candidate.version if run.candidate_id else None,
        "decided_by": run.decided_by.get_username() if run.decided_by_id else None,
        "page_url": f"/projects/{run.project.slug}/models/",
    }})
