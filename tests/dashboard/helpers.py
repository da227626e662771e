"""Items, predictions and decisions made directly at chosen times (no pipeline, no image files):
the rollups only read these rows."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from classify.models import Item, Label, Prediction, Project
from reviewer.models import Decision


def seed_item(project: Project, *, at: datetime, top_label: str, top_score: float = 0.9,
              decision: str = Prediction.Decision.NEEDS_REVIEW, status: str | None = None, label: str | None = None,
              labelled_after: timedelta | None = None, latency_ms: float = 20.0, cost: float = 0.0,
              reused: bool = False, backend: str = "colour", duplicate_of: Item | None = None, audit: bool = False,
              reviews_needed: int = 1) -> Item:
    """An item uploaded at ``at`` and scored a second later; with ``label`` (and ``labelled_after``)
    a person labelled it, else auto-accepted items carry their top class."""
    status = status or (Item.Status.REVIEWED if label else decision)
    final = label or (top_label if status == Item.Status.AUTO_ACCEPTED else None)
    label_row = Label.objects.get(project=project, name=final) if final else None
    item = Item.objects.create(
        project=project, image="items/none.jpg", sha256=uuid.uuid4().hex * 2, width=10, height=10,
        status=status, top_label=top_label, top_score=top_score, margin=0.1, label=label_row, backend=backend,
        duplicate_of=duplicate_of, audit=audit, reviews_needed=reviews_needed,
    )
    labelled_at = at + labelled_after if label and labelled_after is not None else (at + timedelta(minutes=5) if label else None)
    Item.objects.filter(pk=item.pk).update(created_at=at, labelled_at=labelled_at)
    earlier = Prediction.objects.filter(item__project=project).first() if reused else None
    prediction = Prediction.objects.create(
        item=item, backend=backend, model_version="v1", scores={top_label: top_score}, top_label=top_label,
        top_score=top_score, margin=0.1, latency_ms=0.0 if reused else latency_ms, thresholds={}, decision=decision,
        reason="test", cost_usd=0 if reused else cost, saved_usd=cost if reused else 0, reused_from=earlier,
    )
    Prediction.objects.filter(pk=prediction.pk).update(created_at=at + timedelta(seconds=1))
    item.refresh_from_db()
    return item


def seed_decision(item: Item, reviewer, *, at: datetime, label: str | None = None, kind: str = Decision.Kind.LABEL,
                  seconds: float | None = 4.0, agrees: bool | None = None, undone: bool = False) -> Decision:
    label_row = Label.objects.get(project=item.project, name=label) if label else None
    decision = Decision.objects.create(item=item, reviewer=reviewer, kind=kind, label=label_row, seconds_spent=seconds,
                                       audit=item.audit, agrees=agrees, undone=undone)
    Decision.objects.filter(pk=decision.pk).update(created_at=at)
    return decision
