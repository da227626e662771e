"""The backend bake-off: run several backends over a project's human-labelled items and compare.

Plain functions: ``evaluate`` scores one backend on (image, true label) pairs; ``metrics`` turns
predictions into accuracy, macro F1, per-class precision/recall, the share auto-accepted at the
project's current thresholds and its precision, latency percentiles and cost per 1,000 images.
``score_backends`` runs them over a project's items; ``start_bakeoff`` and ``execute_bakeoff_run``
queue a stored run and carry it out in the worker.
"""

from __future__ import annotations

import logging
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from django.db import transaction
from django.utils import timezone

from . import pipeline
from .backends import BackendError
from .backends import choices as backend_choices
from .enqueue import enqueue
from .models import BakeoffRun, Item, Label, Project
from .services import budgets
from .services.scoring import build_backend, load_image

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    truth: str
    predicted: str | None  # None: the backend failed on this image
    auto_accepted: bool = False
    latency_ms: float = 0.0
    cost_usd: float = 0.0


@dataclass
class Report:
    backend: str
    model_version: str = ""
    images: int = 0
    errors: int = 0
    first_error: str = ""
    accuracy: float | None = None
    macro_f1: float | None = None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    auto_accept_share: float | None = None
    auto_accept_precision: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    cost_per_1000_usd: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def labelled_items(project: Project, *, sample: int | None = None, seed: int = 0) -> list[Item]:
    """Human-labelled items (the ground truth), optionally a seeded random sample of them."""
    items = list(Item.objects.filter(project=project, status=Item.Status.REVIEWED, label__isnull=False)
                 .select_related("label").order_by("pk"))
    if sample and sample < len(items):
        items = random.Random(seed).sample(items, sample)
    return items


def evaluate(backend, images: Iterable[tuple], labels: Sequence[Label]) -> tuple[list[Outcome], str]:
    """Score every (image, true label name) pair; returns the outcomes and the first error seen."""
    rules = {label.name: pipeline.Rule(label.accept_threshold, label.margin) for label in labels}
    unknown = next(label.name for label in labels if label.is_unknown)
    outcomes, first_error = [], ""
    for image, truth in images:
        try:
            scores, latency = pipeline.classify(image, backend)
        except BackendError as exc:
            outcomes.append(Outcome(truth, None))
            first_error = first_error or str(exc)
            continue
        routing = pipeline.route(scores.scores, rules=rules, unknown=unknown)
        outcomes.append(Outcome(truth, routing.top_label, routing.decision == "auto_accepted", latency,
                                scores.cost_usd))
    return outcomes, first_error


def percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def metrics(name: str, outcomes: Sequence[Outcome], *, model_version: str = "", first_error: str = "") -> Report:
    scored = [o for o in outcomes if o.predicted is not None]
    report = Report(backend=name, model_version=model_version, images=len(outcomes),
                    errors=len(outcomes) - len(scored), first_error=first_error)
    if not scored:
        return report
    report.accuracy = sum(o.predicted == o.truth for o in scored) / len(scored)
    classes = sorted({o.truth for o in scored} | {o.predicted for o in scored})
    for name_ in classes:
        tp = sum(o.predicted == name_ and o.truth == name_ for o in scored)
        predicted = sum(o.predicted == name_ for o in scored)
        actual = sum(o.truth == name_ for o in scored)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report.per_class[name_] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    truths = {o.truth for o in scored}
    report.macro_f1 = statistics.fmean(report.per_class[c]["f1"] for c in sorted(truths))
    accepted = [o for o in scored if o.auto_accepted]
    report.auto_accept_share = len(accepted) / len(scored)
    report.auto_accept_precision = (sum(o.predicted == o.truth for o in accepted) / len(accepted)) if accepted else None
    latencies = [o.latency_ms for o in scored]
    report.latency_p50_ms, report.latency_p95_ms = percentile(latencies, 0.5), percentile(latencies, 0.95)
    report.cost_per_1000_usd = 1000 * statistics.fmean(o.cost_usd for o in scored)
    return report


# --- Running a bake-off ------------------------------------------------------------------------


def score_backends(*, project: Project, backends: Sequence[str], configs: dict | None = None,
                   sample: int | None = None, seed: int = 0) -> list[Report]:
    """Score each backend on the project's human-labelled items; a backend that cannot even be
    built (bad settings) gets a report with its error instead of stopping the others."""
    configs = configs or {}
    items = labelled_items(project, sample=sample, seed=seed)
    labels = list(project.labels.all())
    reports = []
    for name in backends:
        config = configs.get(name, project.backend_config if name == project.backend else {})
        try:
            backend = build_backend(project, labels, name=name, config=config)
        except BackendError as exc:
            reports.append(Report(backend=name, images=len(items), errors=len(items), first_error=str(exc)))
            continue
        images = ((load_image(item), item.label.name) for item in items)
        outcomes, first_error = evaluate(backend, images, labels)
        reports.append(metrics(name, outcomes, model_version=backend.model_version, first_error=first_error))
    return reports


def execute_bakeoff_run(run: BakeoffRun) -> BakeoffRun:
    """Run a stored bake-off and keep its results (or why it failed) on the row."""
    BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.RUNNING)
    try:
        reports = score_backends(project=run.project, backends=run.backends, configs=run.configs, sample=run.sample)
    except Exception as exc:
        log.exception("bake-off %s failed", run.pk)
        BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.FAILED, error=str(exc)[:500],
                                                    finished_at=timezone.now())
    else:
        BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.DONE, finished_at=timezone.now(),
                                                    results=[report.as_dict() for report in reports])
    run.refresh_from_db()
    return run


def start_bakeoff(*, project: Project, backends: Sequence[str], configs: dict, sample: int | None, user) -> BakeoffRun:
    """Store a bake-off and queue it for a worker once the transaction commits."""
    run = BakeoffRun.objects.create(project=project, backends=list(backends), configs=configs, sample=sample,
                                    created_by=user)
    transaction.on_commit(lambda: enqueue("classify.run_bakeoff", run.pk))
    return run


def estimate(project: Project, *, sample: int | None = None) -> dict:
    """What a bake-off would cost before it starts: per paid backend, the estimated price of one
    call (``budgets.estimate_call``) times the items it would score. A backend that cannot be built
    with the project's settings, or has no known price per call, is listed without a figure."""
    items = Item.objects.filter(project=project, status=Item.Status.REVIEWED, label__isnull=False).count()
    items = min(items, sample) if sample else items
    labels = list(project.labels.all())
    rows = []
    for name, _ in backend_choices():
        if name == "local":
            continue
        config = project.backend_config if name == project.backend else {}
        try:
            backend = build_backend(project, labels, name=name, config=config)
        except BackendError as exc:
            rows.append({"backend": name, "per_call": None, "total": None, "note": str(exc)[:200]})
            continue
        per_call = budgets.estimate_call(project, backend)
        rows.append({"backend": name, "per_call": per_call, "total": per_call * items,
                     "note": "" if per_call else "no price per call known (billed by the hour, or never used here)"})
    return {"items": items, "rows": rows}
