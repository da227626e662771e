"""Writes for people's decisions."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from classify import services as classify_services
from classify.models import Item, Label

from .models import Decision


class DecisionRefused(Exception):
    """The decision cannot be stored (wrong project, or the item is not waiting for one)."""


def record_decision(*, item: Item, label: Label, reviewer) -> Decision:
    """Label an item as a person: the item becomes ``reviewed`` and the decision is kept.

    Auto-accepted items may be corrected too. The local model's head is refitted in the
    background once enough new human labels have come in.
    """
    if label.project_id != item.project_id:
        raise DecisionRefused("That class belongs to another project.")
    with transaction.atomic():
        moved = classify_services.transition(
            item.pk, to=Item.Status.REVIEWED, reason=f"Labelled {label.name} by {reviewer}.",
            label=label, labelled_by=reviewer, labelled_at=timezone.now(),
        )
        if not moved:
            raise DecisionRefused("This item is not waiting for a decision.")
        decision = Decision.objects.create(
            item=item, label=label, reviewer=reviewer, prediction=item.predictions.order_by("-created_at").first()
        )
        classify_services.maybe_schedule_refit(item.project)
    return decision
