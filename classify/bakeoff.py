"""The backend bake-off: run several backends over a project's human-labelled items and compare.

Plain functions: ``evaluate`` scores one backend on (image, true label) pairs; ``metrics`` turns
predictions into accuracy, macro F1, per-class precision/recall, the share auto-accepted at the
project's current thresholds and its precision, latency percentiles and cost per 1,000 images.
``score_backends`` runs them over a project's items; ``start_bakeoff`` and ``execute_bakeoff_run``
queue a stored run and carry it out in the worker.

Every paid call of a bake-off counts against the project's budgets (``budgets.record_spend``), and
none is made that would cross one: the run stops with what it has scored kept on the row
(``BakeoffRun.progress``), waits with the reason until the budget's day or month ends, and the
sweeper queues it again then (``resume_waiting_bakeoffs``); it goes on where it stopped. A
bake-off never falls back to the local model: it is there to compare the backends.
"""

from __future__ import annotations

import logging
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import pipeline
from .backends import BackendError, runs_locally
from .backends import choices as backend_choices
from .enqueue import enqueue
from .models import BakeoffRun, Item, Label, Project, Spend
from .services import budgets, lifecycle
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


@dataclass
class Tally:
    """What one backend has scored so far in a bake-off (kept on the run while it waits)."""

    outcomes: list[Outcome] = field(default_factory=list)
    first_error: str = ""
    done: int = 0  # how far along the run's item list (an item deleted meanwhile is passed over)

    def as_dict(self) -> dict:
        return {"outcomes": [asdict(o) for o in self.outcomes], "first_error": self.first_error, "done": self.done}

    @classmethod
    def from_dict(cls, data: dict) -> Tally:
        return cls([Outcome(**o) for o in data.get("outcomes", [])], data.get("first_error", ""), data.get("done", 0))


class BakeoffWaits(Exception):
    """A call would cross a budget: the run waits until ``resume_at`` with what it has scored."""

    def __init__(self, reason: str, resume_at, progress: dict) -> None:
        super().__init__(reason)
        self.reason, self.resume_at, self.progress = reason, resume_at, progress


def evaluate(backend, images: Iterable[tuple], labels: Sequence[Label], *, tally: Tally | None = None,
             charge=None) -> tuple[list[Outcome], str]:
    """Score every (image, true label name) pair; returns the outcomes and the first error seen.

    Outcomes go into ``tally`` as they come, so a caller keeps them when ``images`` raises to stop
    (a budget used up); ``charge(cost)`` runs after each billed call, one that failed after being
    billed (``BackendError.cost_usd``) included."""
    rules = {label.name: pipeline.Rule(label.accept_threshold, label.margin) for label in labels}
    unknown = next(label.name for label in labels if label.is_unknown)
    tally = tally if tally is not None else Tally()
    for image, truth in images:
        try:
            scores, latency = pipeline.classify(image, backend)
        except BackendError as exc:
            if charge is not None and exc.cost_usd:
                charge(exc.cost_usd)
            tally.outcomes.append(Outcome(truth, None))
            tally.first_error = tally.first_error or str(exc)
            continue
        if charge is not None and scores.cost_usd:
            charge(scores.cost_usd)
        routing = pipeline.route(scores.scores, rules=rules, unknown=unknown)
        tally.outcomes.append(Outcome(truth, routing.top_label, routing.decision == "auto_accepted", latency,
                                      scores.cost_usd))
    return tally.outcomes, tally.first_error


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
                   sample: int | None = None, seed: int = 0, progress: dict | None = None) -> list[Report]:
    """Score each backend on the project's human-labelled items; a backend that cannot even be
    built (bad settings) gets a report with its error instead of stopping the others.

    ``progress`` (the run's, updated in place) holds the items chosen and, per backend, what was
    scored before the run last waited: those items are not sent again. A paid backend's calls are
    charged to the budgets and checked against them first; ``BakeoffWaits`` when one is used up."""
    configs, progress = configs or {}, progress if progress is not None else {}
    if "items" not in progress:
        progress["items"] = [item.pk for item in labelled_items(project, sample=sample, seed=seed)]
    ids = progress["items"]
    chosen = Item.objects.filter(pk__in=ids, label__isnull=False).select_related("label").in_bulk()
    items = [chosen[pk] for pk in ids if pk in chosen]
    labels = list(project.labels.all())
    reports = []
    for name in backends:
        config = configs.get(name, project.backend_config if name == project.backend else {})
        try:
            backend = build_backend(project, labels, name=name, config=config)
        except BackendError as exc:
            reports.append(Report(backend=name, images=len(items), errors=len(items), first_error=str(exc)))
            continue
        tally = Tally.from_dict(progress.get(name, {}))
        allowance = None if runs_locally(name) else budgets.Allowance(project, backend, kind=Spend.Kind.BAKEOFF)
        try:
            evaluate(backend, _pending(ids, chosen, tally, allowance), labels, tally=tally,
                     charge=allowance.charge if allowance else None)
        except BakeoffWaits as wait:
            progress[name] = tally.as_dict()
            scored = "; ".join(f"{n}: {len(progress[n]['outcomes'])} of {len(items)}" for n in backends if n in progress)
            raise BakeoffWaits(f"{wait.reason} Scored so far: {scored}.", wait.resume_at, progress) from None
        progress[name] = tally.as_dict()
        reports.append(metrics(name, tally.outcomes, model_version=backend.model_version,
                               first_error=tally.first_error))
    return reports


def _pending(ids: list[int], chosen: dict, tally: Tally, allowance: budgets.Allowance | None):
    """The (image, truth) pairs the backend has still to score. Before each paid call, the
    budgets (``allowance``): ``BakeoffWaits`` when the call would cross one. ``tally.done`` moves
    past an item once it is scored (the generator resumes only then) or found deleted."""
    for pk in ids[tally.done:]:
        item = chosen.get(pk)
        if item is not None:
            blocked = allowance.blocked() if allowance else None
            if blocked is not None:
                raise BakeoffWaits(budgets.waiting_reason(blocked), blocked.end, {})
            yield load_image(item), item.label.name
        tally.done += 1


def execute_bakeoff_run(run: BakeoffRun) -> BakeoffRun:
    """Run a stored bake-off and keep its results (or why it failed, or why it waits) on the row."""
    BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.RUNNING, waiting_reason="", resume_at=None)
    progress = dict(run.progress or {})
    try:
        reports = score_backends(project=run.project, backends=run.backends, configs=run.configs, sample=run.sample,
                                 progress=progress)
    except BakeoffWaits as wait:
        log.info("bake-off %s waits: %s", run.pk, wait.reason)
        BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.WAITING, waiting_reason=wait.reason[:500],
                                                    resume_at=wait.resume_at, progress=wait.progress)
    except Exception as exc:
        log.exception("bake-off %s failed", run.pk)
        BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.FAILED, error=str(exc)[:500],
                                                    finished_at=timezone.now())
    else:
        BakeoffRun.objects.filter(pk=run.pk).update(state=BakeoffRun.State.DONE, finished_at=timezone.now(),
                                                    results=[report.as_dict() for report in reports], progress={})
    run.refresh_from_db()
    return run


def claim_bakeoff_run(run_id: int, *, claimed_by: str) -> BakeoffRun | None:
    """Take a queued bake-off for this task: a conditional UPDATE, so of two deliveries of its
    message (the sweeper republishes lost ones) only one runs it. None when it is not queued."""
    now = timezone.now()
    taken = BakeoffRun.objects.filter(pk=run_id, state=BakeoffRun.State.QUEUED).update(
        state=BakeoffRun.State.RUNNING, claimed_by=claimed_by[:255], claimed_at=now, waiting_reason="", resume_at=None)
    return BakeoffRun.objects.select_related("project").get(pk=run_id) if taken else None


def recover_bakeoffs(*, now=None) -> int:
    """For the sweeper: a bake-off nobody works on goes back to work. Returns how many.

    - ``queued`` since longer than LOUPE_STUCK_QUEUED_AFTER: its message was lost (the broker
      was down when it started, or flushed); it is published again (a duplicate is harmless:
      ``claim_bakeoff_run`` lets one delivery run it).
    - ``running`` under a claim no live worker holds (``lifecycle.claim_abandoned``: the worker
      died, restarted, or its pool process was killed): queued and published again. It scores
      from the start (or from where it last waited for a budget), so the calls of the lost
      attempt are paid again; they were counted against the budgets when made.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.LOUPE_STUCK_QUEUED_AFTER)
    lost = list(BakeoffRun.objects.filter(state=BakeoffRun.State.QUEUED).filter(
        Q(queued_at__lt=stale) | Q(queued_at__isnull=True, created_at__lt=stale)).values_list("pk", flat=True))
    beats = lifecycle.live_beats(now=now)
    grace = now - timedelta(seconds=settings.LOUPE_WORKER_SEEN_WITHIN)
    running = BakeoffRun.objects.filter(state=BakeoffRun.State.RUNNING, claimed_at__lt=grace).exclude(claimed_by="")
    dead = [run.pk for run in running.only("pk", "claimed_by", "claimed_at")
            if lifecycle.claim_abandoned(run.claimed_by, run.claimed_at, beats)]
    for run_id in dead:
        if BakeoffRun.objects.filter(pk=run_id, state=BakeoffRun.State.RUNNING).update(
                state=BakeoffRun.State.QUEUED, claimed_by="", claimed_at=None):
            lost.append(run_id)
    BakeoffRun.objects.filter(pk__in=lost).update(queued_at=now)
    for run_id in lost:
        transaction.on_commit(lambda run_id=run_id: _publish_again(run_id))
    return len(lost)


def _publish_again(run_id: int) -> None:
    try:
        enqueue("classify.run_bakeoff", run_id)
    except Exception as exc:  # kombu raises various connection errors: the next sweep tries again
        log.warning("could not queue bake-off %s again: %s", run_id, exc)


def resume_waiting_bakeoffs() -> int:
    """For the sweeper: queue again each bake-off whose budget period has ended. Returns how many.
    With the broker down the run stays waiting (its time has come) and the next sweep tries again."""
    resumed = 0
    for run_id in BakeoffRun.objects.filter(state=BakeoffRun.State.WAITING, resume_at__lte=timezone.now()).values_list(
            "pk", flat=True):
        if BakeoffRun.objects.filter(pk=run_id, state=BakeoffRun.State.WAITING).update(
                state=BakeoffRun.State.QUEUED, queued_at=timezone.now()):
            transaction.on_commit(lambda run_id=run_id: _publish_resumed(run_id))
            resumed += 1
    return resumed


def _publish_resumed(run_id: int) -> None:
    try:
        enqueue("classify.run_bakeoff", run_id)
    except Exception as exc:  # kombu raises various connection errors; all mean "not queued"
        log.warning("could not queue bake-off %s again: %s", run_id, exc)
        BakeoffRun.objects.filter(pk=run_id, state=BakeoffRun.State.QUEUED).update(state=BakeoffRun.State.WAITING)


def start_bakeoff(*, project: Project, backends: Sequence[str], configs: dict, sample: int | None, user) -> BakeoffRun:
    """Store a bake-off and queue it for a worker once the transaction commits."""
    run = BakeoffRun.objects.create(project=project, backends=list(backends), configs=configs, sample=sample,
                                    created_by=user, queued_at=timezone.now())
    transaction.on_commit(lambda: enqueue("classify.run_bakeoff", run.pk))
    return run


def estimate(project: Project, *, sample: int | None = None, backends: Sequence[str] | None = None,
             configs: dict | None = None) -> dict:
    """What a bake-off would cost before it starts: per paid backend (all of them, or ``backends``),
    the estimated price of one call (``budgets.estimate_call``, the price the spend records) times
    the items it would score, and the budget it would cross (``budgets.forecast``). A backend that
    cannot be built with the project's settings, or has no known price per call, is listed
    without a figure."""
    items = Item.objects.filter(project=project, status=Item.Status.REVIEWED, label__isnull=False).count()
    items = min(items, sample) if sample else items
    labels = list(project.labels.all())
    rows = []
    for name in backends if backends is not None else [name for name, _ in backend_choices()]:
        if runs_locally(name):
            continue
        config = (configs or {}).get(name, project.backend_config if name == project.backend else {})
        try:
            backend = build_backend(project, labels, name=name, config=config)
        except BackendError as exc:
            rows.append({"backend": name, "per_call": None, "total": None, "note": str(exc)[:200]})
            continue
        per_call = budgets.estimate_call(project, backend)
        note = (budgets.forecast(project, name, per_call=per_call, calls=items, waits=True) if per_call else
                "no price per call known (billed by the hour, or never used here)")
        rows.append({"backend": name, "per_call": per_call, "total": per_call * items, "note": note})
    return {"items": items, "rows": rows}
