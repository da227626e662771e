"""Scoring a claimed item with its project's backend, routing it, and recording both; sending
items through classification again."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from classify import events, pipeline
from classify.backends import BackendError, Scores, classify_batch, runs_locally
from classify.enqueue import enqueue
from classify.models import Item, Prediction, Project, Spend

from . import budgets, hosting, learning
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
    sent again: its scores are reused. Raises ``BackendError`` for the task to retry or route,
    and ``hosting.ModelStarting`` while a stopped Custom Labels model Loupe tracks is started.
    """
    context = RoutingContext.of(item.project)
    labels, rules, unknown = context.labels, context.rules, context.unknown
    pin_backend(item)
    backend = build_backend(item.project, labels, name=item.backend, config=item.backend_config)
    earlier = reusable_prediction(item, backend_name=backend.name, model_version=backend.model_version)
    if earlier is not None:
        answer = Answer(Scores(earlier.scores, earlier.model_version, raw=earlier.raw), 0.0, backend.name)
    else:
        answer = cheap_answer(item, labels, backend, rules, unknown) or paid_answer(item, labels, backend)
    routing = pipeline.route(answer.scores.scores, rules=rules, unknown=unknown)
    if answer.note:
        routing = dataclasses.replace(routing, reason=f"{routing.reason} ({answer.note})")
    outcome = Outcome(item, answer.scores, routing, answer.latency, earlier, answer.saved)
    with transaction.atomic():
        prediction = record_prediction(outcome, answer.backend, context)
        if prediction is not None:
            prediction.save(force_insert=True)
            count_spend(item.project, answer.backend, [prediction])
            if prediction.item.status == Status.AUTO_ACCEPTED:  # settled by the machine: the event commits with it
                events.item_settled(item.pk)
    return prediction


@dataclasses.dataclass
class RoutingContext:
    """What routing and recording read once per call, however many items it scores: the
    project's classes and their rules, and, only when an item needs it, the active model's
    provenance (a query per item of a batch before)."""

    project: Project
    labels: list
    rules: dict[str, pipeline.Rule]
    unknown: str
    _provenance: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, project: Project) -> RoutingContext:
        labels = list(project.labels.all())
        rules = {label.name: pipeline.Rule(label.accept_threshold, label.margin, label.hold) for label in labels}
        return cls(project, labels, rules, next(label.name for label in labels if label.is_unknown))

    def provenance(self, backend_name: str) -> str:
        if backend_name not in self._provenance:
            self._provenance[backend_name] = learning.active_provenance(self.project, backend_name)
        return self._provenance[backend_name]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """An item's scores and routing, ready to record; ``earlier`` is the prediction whose scores
    were reused, ``saved`` what answering without the paid call saved."""

    item: Item
    scores: Scores
    routing: pipeline.Routing
    latency: float
    earlier: Prediction | None = None
    saved: Decimal = Decimal(0)


@dataclasses.dataclass(frozen=True)
class Answer:
    """Scores for an item, who gave them, why not the project's backend (``note``), and what
    answering without the paid call saved (its estimated price)."""

    scores: Scores
    latency: float
    backend: str
    note: str = ""
    saved: Decimal = Decimal(0)


def paid_answer(item: Item, labels, backend) -> Answer:
    """The project's backend (or the local model when a budget is used up and the project falls back)."""
    backend, fallback = within_budget(item.project, labels, backend)
    if backend.name == "custom_labels":
        hosting.ensure_running(item.project, backend.arn)
    try:
        scores, latency = pipeline.classify(load_image(item, min_side=getattr(backend, "input_side", None)), backend)
    except BackendError as exc:  # billed all the same (Bedrock's two bad replies): the budgets count it
        budgets.record_spend(project=item.project, backend=backend.name, cost_usd=exc.cost_usd,
                             kind=Spend.Kind.FAILED_CALL)
        raise
    return Answer(scores, latency, backend.name, f"local model: {fallback}" if fallback else "")


def cheap_answer(item: Item, labels, backend, rules, unknown) -> Answer | None:
    """The cascade (``Project.cascade``), before a paid backend is called: a settled near-duplicate
    gives its label; else the first-stage model (``LOUPE_CASCADE_BACKEND``, the local model with its
    trained head) answers if it would auto-accept at the project's thresholds. None: ask the paid one."""
    project = item.project
    if not project.cascade or backend.name == settings.LOUPE_CASCADE_BACKEND:
        return None
    saved = budgets.estimate_call(project, backend)
    twin = settled_near_duplicate(item)
    if twin is not None:
        scores = {label.name: 1.0 if label.name == twin.label.name else 0.0 for label in labels}
        raw = {"cascade": "near_duplicate", "instead_of": backend.name, "near_duplicate_of": twin.pk}
        return Answer(Scores(scores, f"near-duplicate:{twin.pk}", raw=raw), 0.0, "near_duplicate",
                      f"near-duplicate of item #{twin.pk}, settled as {twin.label.name}: {backend.name} not called",
                      saved)
    first = build_backend(project, labels, name=settings.LOUPE_CASCADE_BACKEND, config={})
    scores, latency = pipeline.classify(load_image(item, min_side=getattr(first, "input_side", None)), first)
    if pipeline.route(scores.scores, rules=rules, unknown=unknown).decision != Prediction.Decision.AUTO_ACCEPTED:
        return None
    scores = dataclasses.replace(scores, raw={**(scores.raw or {}), "cascade": "first_stage",
                                              "instead_of": backend.name})
    return Answer(scores, latency, first.name, f"first stage, confident: {backend.name} not called", saved)


def settled_near_duplicate(item: Item) -> Item | None:
    """The item intake found nearly identical (perceptual hash), if a person or the machine has
    settled it with a class."""
    if not item.near_duplicate_of_id:
        return None
    return (Item.objects.select_related("label")
            .filter(pk=item.near_duplicate_of_id, status__in=[Status.REVIEWED, Status.AUTO_ACCEPTED],
                    label__isnull=False, label__is_unknown=False).first())


def within_budget(project: Project, labels, backend):
    """The backend to call and why it is not the paid one: the paid backend while its budgets
    allow the call; the local model when one would be crossed and the project falls back;
    otherwise ``budgets.OverBudget`` (the item waits until the period ends)."""
    if backend.name == "local":
        return backend, ""
    blocked = budgets.check(project, backend)
    if blocked is None:
        return backend, ""
    if project.over_budget == Project.OverBudget.LOCAL:
        return build_backend(project, labels, name="local", config={}), f"{blocked.describe()} is used up"
    raise budgets.wait_for(blocked)


def _priority(context: RoutingContext, routing: pipeline.Routing, *, audit: bool) -> float | None:
    """The review order ``learning``'s key for an item going to review (None for other orders)."""
    project = context.project
    if project.review_order != project.ReviewOrder.LEARNING:
        return None
    rule = context.rules.get(routing.top_label)
    return learning.learning_priority(top_score=routing.top_score, threshold=rule.threshold if rule else 1.0,
                                      class_share=learning.class_shares(project).get(routing.top_label, 0.0),
                                      audit=audit)


def reusable_prediction(item: Item, *, backend_name: str, model_version: str) -> Prediction | None:
    return reusable_predictions([item], backend_name=backend_name, model_version=model_version).get(item.pk)


def reusable_predictions(items: list[Item], *, backend_name: str, model_version: str) -> dict[int, Prediction]:
    """Per item, the latest prediction of the same backend and model version for another item of
    its project with the same pixels (its scores are reused). One query, through the project's
    content-hash index: twins first, then their predictions (filtering predictions by backend
    and version first read every prediction of a million-item project)."""
    project_id = items[0].project_id
    ids = [item.pk for item in items]
    twins = Item.objects.filter(project_id=project_id, sha256__in={item.sha256 for item in items}).exclude(pk__in=ids)
    found: dict[str, Prediction] = {}
    for prediction in (Prediction.objects.filter(item_id__in=twins.values("pk"), backend=backend_name,
                                                 model_version=model_version)
                       .select_related("item").order_by("-created_at", "-pk")):
        found.setdefault(prediction.item.sha256, prediction)
    return {item.pk: found[item.sha256] for item in items if item.sha256 in found}


def batchable(item: Item) -> bool:
    """Whether items like this one may be scored in a batch (``score_items``): a backend computing
    on the worker, and no cascade in front of it (the cascade decides item by item)."""
    return runs_locally(item.backend) and (not item.project.cascade or item.backend == settings.LOUPE_CASCADE_BACKEND)


def score_items(items: list[Item]) -> list[Prediction | None]:
    """``score_item`` for several claimed items of one project, pinned to a backend that runs on
    the worker (no cascade, no budget: the worker checks ``batchable``): their images go through
    the backend together (the local model: one forward pass) and the outcomes are recorded in one
    transaction, a constant number of statements apart from one status UPDATE per item (the
    predictions and the settled events inserted together). Raises ``BackendError`` for the whole
    batch."""
    first = items[0]
    context = RoutingContext.of(first.project)
    pin_backend(first)
    backend = build_backend(first.project, context.labels, name=first.backend, config=first.backend_config)
    reused = reusable_predictions(items, backend_name=backend.name, model_version=backend.model_version)
    fresh = [item for item in items if item.pk not in reused]
    side = getattr(backend, "input_side", None)
    started = time.perf_counter()
    results = dict(zip([item.pk for item in fresh],
                       classify_batch(backend, [load_image(item, min_side=side) for item in fresh]) if fresh else [],
                       strict=True))
    latency = (time.perf_counter() - started) * 1000.0 / max(1, len(fresh))
    outcomes = []
    for item in items:
        earlier = reused.get(item.pk)
        scores = results[item.pk] if earlier is None else Scores(earlier.scores, earlier.model_version, raw=earlier.raw)
        routing = pipeline.route(scores.scores, rules=context.rules, unknown=context.unknown)
        outcomes.append(Outcome(item, scores, routing, 0.0 if earlier else latency, earlier))
    with transaction.atomic():
        predictions = [record_prediction(outcome, backend.name, context) for outcome in outcomes]
        recorded = Prediction.objects.bulk_create([prediction for prediction in predictions if prediction is not None])
        count_spend(first.project, backend.name, recorded)
        events.items_settled_by_the_machine([prediction.item_id for prediction in predictions
                                             if prediction is not None and prediction.item.status == Status.AUTO_ACCEPTED])
    return predictions


def count_spend(project: Project, backend_name: str, predictions: list[Prediction]) -> None:
    """Paid predictions just saved go into their day's sums (what the budgets read), then the
    budgets' alerts are checked, in the transaction that saved them."""
    paid = [prediction for prediction in predictions if prediction.cost_usd]
    for prediction in paid:
        budgets.add_to_day(project_id=project.pk, backend=backend_name, cost_usd=prediction.cost_usd,
                           at=prediction.created_at)
    if paid:
        budgets.after_spend(project, backend_name)


def record_prediction(outcome: Outcome, backend_name: str, context: RoutingContext) -> Prediction | None:
    """Move the item to its routed status if this worker still holds the claim, and return its
    prediction, not yet saved (the caller saves it in the same transaction: alone, or with its
    batch mates in one INSERT); None when the claim was lost.

    A share of each class's auto-accepted items (``Label.audit_rate``) goes to review as well,
    unannounced to the reviewer, so the error rate of auto-accept can be measured. Items scored
    below the project's consensus score need ``consensus_reviews`` independent reviews.
    """
    item, scores, routing, earlier = outcome.item, outcome.scores, outcome.routing, outcome.earlier
    project = context.project
    top = next((label for label in context.labels if label.name == routing.top_label), None)
    status, reason = routing.decision, routing.reason
    audit = status == Status.AUTO_ACCEPTED and top is not None and random.random() < top.audit_rate
    if audit:
        status, reason = Status.NEEDS_REVIEW, f"Sampled for a check of auto-accept ({routing.reason})"
    needs = project.consensus_reviews if routing.top_score < project.consensus_below else 1
    fields = {
        "label": top if status == Status.AUTO_ACCEPTED else None, "top_label": routing.top_label,
        "top_score": routing.top_score, "margin": routing.margin, "audit": audit, "reviews_needed": needs,
        "escalated": False,
        "learning_priority": _priority(context, routing, audit=audit) if status == Status.NEEDS_REVIEW else None,
    }
    if scores.embedding is not None:
        fields["embedding"] = scores.embedding
    if not transition(item.pk, to=status, reason=reason, only_from=[Status.CLASSIFYING],
                      where={"claim": item.claim}, **fields):
        return None
    item.status = status
    return Prediction(
        item=item, backend=backend_name, model_version=scores.model_version, scores=scores.scores,
        top_label=routing.top_label, top_score=routing.top_score, margin=routing.margin,
        latency_ms=round(outcome.latency, 3), decision=routing.decision, reason=routing.reason,
        thresholds={name: {"threshold": r.threshold, "margin": r.margin, **({"hold": r.hold} if r.hold else {})}
                    for name, r in context.rules.items()},
        raw=scores.raw, reused_from=earlier,
        provenance=context.provenance(backend_name) if "/head:" in scores.model_version else "",
        cost_usd=0 if earlier else round(scores.cost_usd, 6),
        saved_usd=earlier.cost_usd if earlier else outcome.saved,
    )


def reclassify(*, items: Iterable[Item], reason: str = "Re-queued by an admin.") -> int:
    """Send items (failed, rejected, or already decided) through classification again."""
    count = 0
    for item in items:
        if transition(item.pk, to=Status.QUEUED, reason=reason, attempts=0,
                      enqueued_at=timezone.now(), backend="", backend_config=None):
            schedule_classification(item.pk)
            count += 1
    return count


# --- Re-classifying a project's items (a backfill) ------------------------------------------------

RECLASSIFY_SCOPES = {
    "other_backend": "Items the model decided (auto-accepted, waiting for review, failed) with another backend",
    "machine": "Every item the model decided (auto-accepted, waiting for review, failed)",
}
RECLASSIFY_CHUNK = 500


def reclassify_candidates(project: Project, scope: str):
    """The items a re-classification of ``scope`` (``RECLASSIFY_SCOPES``) sends again. Never an item
    a person settled (its human label stays) nor one intake rejected."""
    items = Item.objects.filter(project=project, status__in=[Status.AUTO_ACCEPTED, Status.NEEDS_REVIEW, Status.FAILED])
    return items.exclude(backend=project.backend) if scope == "other_backend" else items


def estimate_reclassify(project: Project, scope: str) -> dict:
    """Before a re-classification starts: how many items, what they will likely cost on the
    project's backend (``budgets.estimate_call``, the price the spend records), and the budget it
    would cross (``budgets.forecast``)."""
    count = reclassify_candidates(project, scope).count()
    if project.backend == "local":
        return {"items": count, "sentence": f"{count:,} item(s), classified by the local model at no cost."}
    try:
        backend = build_backend(project, list(project.labels.all()))
    except BackendError as exc:
        return {"items": count, "sentence": f"{count:,} item(s) for {project.backend}, whose settings are "
                                            f"incomplete: {exc}"}
    per_call = budgets.estimate_call(project, backend)
    if not per_call:
        return {"items": count, "sentence": f"{count:,} item(s) for {backend.name}, at a cost per call Loupe does "
                                            "not know (billed by the hour, or never used here)."}
    forecast = budgets.forecast(project, backend.name, per_call=per_call, calls=count)
    return {"items": count, "sentence": (
        f"{count:,} item(s) for {backend.name} at about ${per_call:.4f} each: about ${per_call * count:.2f} "
        "(identical pictures cost nothing)." + (f" Budgets: {forecast}" if forecast else " No budget limits it."))}


def start_reclassify(*, project: Project, scope: str) -> int:
    """Queue a re-classification of ``scope`` for a worker (after commit): the items there are now,
    not those that arrive later. Returns how many. Each item then goes through classification
    as usual, its budgets checked before each paid call (it waits or falls back, as the project chose)."""
    candidates = reclassify_candidates(project, scope)
    count, through = candidates.count(), candidates.order_by("-pk").values_list("pk", flat=True).first()
    if through is not None:
        transaction.on_commit(lambda: enqueue("classify.reclassify_items", project.pk, scope, through))
    return count


def reclassify_scope(*, project_id: int, scope: str, through_pk: int) -> int:
    """The worker's half of ``start_reclassify``: re-queue the scope's items up to ``through_pk``,
    a chunk at a time. Returns how many were re-queued."""
    project = Project.objects.get(pk=project_id)
    reason = f"Re-classifying with {project.backend} (asked by a project admin)."
    count, after = 0, 0
    while True:
        chunk = list(reclassify_candidates(project, scope).filter(pk__gt=after, pk__lte=through_pk)
                     .order_by("pk")[:RECLASSIFY_CHUNK])
        if not chunk:
            return count
        count += reclassify(items=chunk, reason=reason)
        after = chunk[-1].pk


def estimate_per_item(project: Project, *, count: int | None = None) -> str:
    """One sentence for a page or a command before an import (of ``count`` images, when known):
    what each new image will likely cost on the project's backend (``budgets.estimate_call``),
    and which budget the import would cross (``budgets.forecast``)."""
    if project.backend == "local":
        return "Imported images are classified by the local model, at no cost per image."
    try:
        backend = build_backend(project, list(project.labels.all()))
    except BackendError as exc:
        return f"Imported images go to {project.backend}, whose settings are incomplete: {exc}"
    per_call = budgets.estimate_call(project, backend)
    price = (f"about ${per_call:.4f} per new image (${per_call * 1000:.2f} per 1,000)" if per_call else
             "a cost per image Loupe does not know (billed by the hour, or never used here)")
    total = f" {count:,} image(s): about ${per_call * count:.2f} at most." if per_call and count is not None else ""
    forecast = budgets.forecast(project, backend.name, per_call=per_call, calls=count) if per_call else ""
    limits = budgets.covering(project).filter(backend=backend.name).count()
    budget = (f" Budgets: {forecast}" if forecast else f" {limits} budget(s) apply." if limits
              else " No budget limits it.")
    return f"Imported images are classified by {backend.name}: {price}; identical pictures cost nothing.{total}{budget}"
