"""Scoring a claimed item with its project's backend, routing it, and recording both; sending
items through classification again."""

from __future__ import annotations

import random
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from classify import events, pipeline
from classify.backends import Scores
from classify.models import Item, Prediction

from . import learning
from .lifecycle import transition
from .queueing import schedule_classification
from .scoring import build_backend, load_image

Status = Item.Status


def pin_backend(item: Item) -> None:
    """The first claim of an item records the project's backend and settings; retries (even after
    an admin switches the project's backend) finish with them."""
    if not item.backend:
        item.backend, item.backend_config = item.project.backend, item.project.backend_config
        Item.objects.filter(pk=item.pk, backend="").update(backend=item.backend, backend_config=item.backend_config)


def score_item(item: Item) -> Prediction | None:
    """Score a claimed item with its project's backend, route it, and record both.

    An identical image (same pixels) already scored by the same backend and model version is not
    sent again: its scores are reused. Raises ``BackendError`` for the task to retry or route.
    """
    labels = list(item.project.labels.all())
    pin_backend(item)
    backend = build_backend(item.project, labels, name=item.backend, config=item.backend_config)
    earlier = reusable_prediction(item, backend_name=backend.name, model_version=backend.model_version)
    if earlier is not None:
        scores, latency = Scores(earlier.scores, earlier.model_version, raw=earlier.raw), 0.0
    else:
        scores, latency = pipeline.classify(load_image(item, min_side=getattr(backend, "input_side", None)), backend)
    rules = {label.name: pipeline.Rule(label.accept_threshold, label.margin, label.hold) for label in labels}
    unknown = next(label.name for label in labels if label.is_unknown)
    routing = pipeline.route(scores.scores, rules=rules, unknown=unknown)
    return record_prediction(item, backend.name, scores, routing, latency, rules, earlier, labels=labels)


def _priority(project, routing: pipeline.Routing, rules: dict, *, audit: bool) -> float | None:
    """The review order ``learning``'s key for an item going to review (None for other orders)."""
    if project.review_order != project.ReviewOrder.LEARNING:
        return None
    rule = rules.get(routing.top_label)
    return learning.learning_priority(top_score=routing.top_score, threshold=rule.threshold if rule else 1.0,
                                      class_share=learning.class_shares(project).get(routing.top_label, 0.0),
                                      audit=audit)


def reusable_prediction(item: Item, *, backend_name: str, model_version: str) -> Prediction | None:
    return (
        Prediction.objects.filter(
            item__project_id=item.project_id, item__sha256=item.sha256, backend=backend_name,
            model_version=model_version,
        )
        .exclude(item_id=item.pk)
        .order_by("-created_at")
        .first()
    )


def record_prediction(item, backend_name, scores, routing, latency, rules, reused_from, *, labels) -> Prediction | None:
    """Store the prediction and the routed status together, if this worker still holds the claim.

    A share of each class's auto-accepted items (``Label.audit_rate``) goes to review as well,
    unannounced to the reviewer, so the error rate of auto-accept can be measured. Items scored
    below the project's consensus score need ``consensus_reviews`` independent reviews.
    """
    project = item.project
    labels_by_name = {label.name: label for label in labels}
    top = labels_by_name.get(routing.top_label)
    status, reason = routing.decision, routing.reason
    audit = status == Status.AUTO_ACCEPTED and top is not None and random.random() < top.audit_rate
    if audit:
        status, reason = Status.NEEDS_REVIEW, f"Sampled for a check of auto-accept ({routing.reason})"
    needs = project.consensus_reviews if routing.top_score < project.consensus_below else 1
    fields = {
        "label": top if status == Status.AUTO_ACCEPTED else None, "top_label": routing.top_label,
        "top_score": routing.top_score, "margin": routing.margin, "audit": audit, "reviews_needed": needs,
        "escalated": False,
        "learning_priority": _priority(project, routing, rules, audit=audit) if status == Status.NEEDS_REVIEW else None,
    }
    if scores.embedding is not None:
        fields["embedding"] = scores.embedding
    with transaction.atomic():
        if not transition(item.pk, to=status, reason=reason, only_from=[Status.CLASSIFYING],
                          where={"claim": item.claim}, **fields):
            return None
        prediction = Prediction.objects.create(
            item=item, backend=backend_name, model_version=scores.model_version, scores=scores.scores,
            top_label=routing.top_label, top_score=routing.top_score, margin=routing.margin,
            latency_ms=round(latency, 3), decision=routing.decision, reason=routing.reason,
            thresholds={name: {"threshold": r.threshold, "margin": r.margin, **({"hold": r.hold} if r.hold else {})}
                        for name, r in rules.items()},
            raw=scores.raw, reused_from=reused_from,
            provenance=learning.active_provenance(project, backend_name) if "/head:" in scores.model_version else "",
            cost_usd=0 if reused_from else round(scores.cost_usd, 6),
            saved_usd=reused_from.cost_usd if reused_from else 0,
        )
        if status == Status.AUTO_ACCEPTED:  # settled by the machine: the event commits with it
            events.item_settled(item.pk)
        return prediction


def reclassify(*, items: Iterable[Item]) -> int:
    """Send items (failed, rejected, or already decided) through classification again."""
    count = 0
    for item in items:
        if transition(item.pk, to=Status.QUEUED, reason="Re-queued by an admin.", attempts=0,
                      enqueued_at=timezone.now(), backend="", backend_config=None):
            schedule_classification(item.pk)
            count += 1
    return count
