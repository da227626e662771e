"""Writes: recomputing the hourly rollups from the item, prediction and decision tables.

``refresh_rollups`` deletes the computed metrics of a range of hours and recomputes them with a
handful of grouped queries (one per source and time field, every hour of the range at once),
so a refresh is idempotent and can be re-run for any past range (``manage.py refresh_rollups``).
The periodic task recomputes the last ``LOUPE_ROLLUP_LOOKBACK_HOURS`` every
``LOUPE_ROLLUP_EVERY_SECONDS``; a change to an older hour (an undo long after the decision) shows
after the next full refresh of that range.

Metrics (``HourlyRollup.metric``), key and time field:

- uploads, rejected, duplicates (key ""): items by ``created_at``;
- predictions, auto_accepted, score_sum (key: top class), score (bins, key: top class): predictions
  by ``created_at``;
- calls, reused, cost_usd, saved_usd, latency_sum_ms (key: backend), latency (bins, key: backend,
  backend calls only): predictions by ``created_at``;
- final_auto (key: class), wait (bins, key "auto"): auto-accepted items, at their prediction;
- final_human (key: class), wait (bins, key "human"), reviewed and correct (bins of the model's
  top score, key: the model's top class): reviewed items by ``labelled_at``;
- labels, skips, undos, seconds_sum, seconds_n (key: reviewer id), seconds (bins): decisions
  by ``created_at``; audit_checked, audit_confirmed (key: the item's top class): audit decisions;
- consensus, agreed (key: reviewer id): decisions on consensus items, by the item's ``labelled_at``;
- retries (key "backend:error"), backend_errors (key: backend, items sent to review because their
  backend failed): counted by the worker as they happen, never recomputed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Case, Count, DurationField, ExpressionWrapper, F, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Cast, Floor, Least, TruncHour
from django.utils import timezone

from classify.models import Item, Prediction, Project
from classify.selectors import status_counts_of
from dashboard import bins
from dashboard.bins import HOUR, floor_hour
from dashboard.models import HourlyRollup, RefreshLog, StatusSnapshot
from reviewer.models import Decision

log = logging.getLogger(__name__)
EVENT_METRICS = frozenset({"retries", "backend_errors"})
# How classify words the reason of an item sent to review because its backend failed
# ("Backend unavailable: ..." or "Backend error: ...").
BACKEND_FAILED = "Backend "
Key = tuple[int, datetime, str, str, int]  # project, hour, metric, key, bin (-1: not a histogram)


@dataclass(frozen=True)
class RefreshResult:
    since: datetime
    until: datetime
    rows: int
    seconds: float


def refresh_rollups(*, since: datetime, until: datetime | None = None) -> RefreshResult:
    """Recompute every computed metric for the hours from ``since`` up to ``until`` (default now).

    One transaction: a plot never sees an hour half-refreshed.
    """
    started = time.perf_counter()
    now = timezone.now()
    start, end = floor_hour(since), floor_hour(until or now) + HOUR
    totals: dict[Key, float] = defaultdict(float)
    for compute in (_items, _predictions, _auto_accepted, _reviewed, _decisions, _consensus):
        for key, value in compute(start, end):
            totals[key] += value
    rows = list(_rows(totals))
    with transaction.atomic():
        HourlyRollup.objects.filter(hour__gte=start, hour__lt=end).exclude(metric__in=EVENT_METRICS).delete()
        HourlyRollup.objects.bulk_create(rows, batch_size=5000)
    seconds = time.perf_counter() - started
    RefreshLog.objects.create(started_at=now, since=start, until=end, seconds=seconds, rows=len(rows))
    RefreshLog.objects.filter(started_at__lt=now - timedelta(days=7)).delete()  # a week of history is plenty
    return RefreshResult(since=start, until=end, rows=len(rows), seconds=seconds)


def _rows(totals: dict[Key, float]) -> Iterable[HourlyRollup]:
    """Plain values as they are; the bins of a histogram gathered into one row."""
    histograms: dict[tuple, list[float]] = {}
    for (p, h, m, k, b), v in totals.items():
        if b < 0:
            if v:
                yield HourlyRollup(project_id=p, hour=h, metric=m, key=k, value=v)
        elif v:
            histograms.setdefault((p, h, m, k), [0] * bins.BINNED[m])[b] += v
    for (p, h, m, k), counts in histograms.items():
        yield HourlyRollup(project_id=p, hour=h, metric=m, key=k, value=sum(counts), counts=counts)


def _hour(field: str) -> TruncHour:
    return TruncHour(field, tzinfo=UTC)


def _binned(field, edges) -> Case:
    """The bin index of ``field`` for ``edges`` as a SQL CASE (see ``dashboard.bins``)."""
    return Case(*(When(**{f"{field}__lt": edge, "then": Value(index)}) for index, edge in enumerate(edges)),
                default=Value(len(edges)))


def _score_bin(field: str):
    return Cast(Least(Floor(F(field) * bins.SCORE_BINS), Value(float(bins.SCORE_BINS - 1))), IntegerField())


def _items(start, end) -> Iterable[tuple[Key, float]]:
    rows = (Item.objects.filter(created_at__gte=start, created_at__lt=end)
            .annotate(h=_hour("created_at")).values("project_id", "h")
            .annotate(n=Count("pk"), rejected=Count("pk", filter=Q(status=Item.Status.REJECTED)),
                      duplicates=Count("pk", filter=Q(duplicate_of__isnull=False))))
    for row in rows:
        for metric, field in (("uploads", "n"), ("rejected", "rejected"), ("duplicates", "duplicates")):
            yield (row["project_id"], row["h"], metric, "", -1), row[field]


def _predictions(start, end) -> Iterable[tuple[Key, float]]:
    window = Prediction.objects.filter(created_at__gte=start, created_at__lt=end).annotate(
        h=_hour("created_at"), p=F("item__project_id"))
    by_class = window.annotate(b=_score_bin("top_score")).values("p", "h", "top_label", "b").annotate(
        n=Count("pk"), auto=Count("pk", filter=Q(decision=Prediction.Decision.AUTO_ACCEPTED)), s=Sum("top_score"))
    for row in by_class:
        base = (row["p"], row["h"])
        yield (*base, "predictions", row["top_label"], -1), row["n"]
        yield (*base, "auto_accepted", row["top_label"], -1), row["auto"]
        yield (*base, "score_sum", row["top_label"], -1), row["s"] or 0.0
        yield (*base, "score", row["top_label"], row["b"]), row["n"]
    by_backend = window.annotate(b=_binned("latency_ms", bins.LATENCY_MS)).values("p", "h", "backend", "b").annotate(
        calls=Count("pk", filter=Q(reused_from__isnull=True)), reused=Count("pk", filter=Q(reused_from__isnull=False)),
        cost=Sum("cost_usd"), saved=Sum("saved_usd"), latency=Sum("latency_ms", filter=Q(reused_from__isnull=True)))
    for row in by_backend:
        base = (row["p"], row["h"])
        yield (*base, "calls", row["backend"], -1), row["calls"]
        yield (*base, "reused", row["backend"], -1), row["reused"]
        yield (*base, "cost_usd", row["backend"], -1), float(row["cost"] or 0)
        yield (*base, "saved_usd", row["backend"], -1), float(row["saved"] or 0)
        yield (*base, "latency_sum_ms", row["backend"], -1), row["latency"] or 0.0
        yield (*base, "latency", row["backend"], row["b"]), row["calls"]


def _wait_bin(later: str, earlier: str) -> Case:
    wait = ExpressionWrapper(F(later) - F(earlier), output_field=DurationField())
    return Case(*(When(Q(**{"w__lt": timedelta(seconds=edge)}), then=Value(index))
                  for index, edge in enumerate(bins.WAIT_SECONDS)), default=Value(len(bins.WAIT_SECONDS))), wait


def _auto_accepted(start, end) -> Iterable[tuple[Key, float]]:
    """Items whose final label came from auto-accept, at the time of that prediction."""
    case, wait = _wait_bin("created_at", "item__created_at")
    rows = (Prediction.objects.filter(created_at__gte=start, created_at__lt=end,
                                      decision=Prediction.Decision.AUTO_ACCEPTED, item__status=Item.Status.AUTO_ACCEPTED)
            .annotate(h=_hour("created_at"), p=F("item__project_id"), w=wait).annotate(b=case)
            .values("p", "h", "top_label", "b").annotate(n=Count("pk")))
    for row in rows:
        yield (row["p"], row["h"], "final_auto", row["top_label"], -1), row["n"]
        yield (row["p"], row["h"], "wait", "auto", row["b"]), row["n"]


def _reviewed(start, end) -> Iterable[tuple[Key, float]]:
    """Items a person labelled: wait from upload, and whether the model's top class was right."""
    case, wait = _wait_bin("labelled_at", "created_at")
    rows = (Item.objects.filter(labelled_at__gte=start, labelled_at__lt=end, status=Item.Status.REVIEWED)
            .annotate(h=_hour("labelled_at"), w=wait).annotate(b=case)
            .annotate(sb=Case(When(top_score__isnull=True, then=Value(-2)), default=_score_bin("top_score")))
            .values("project_id", "h", "top_label", "b", "sb")
            .annotate(n=Count("pk"), correct=Count("pk", filter=Q(label__name=F("top_label")))))
    for row in rows:
        base = (row["project_id"], row["h"])
        yield (*base, "final_human", row["top_label"], -1), row["n"]
        yield (*base, "wait", "human", row["b"]), row["n"]
        if row["sb"] >= 0 and row["top_label"]:
            yield (*base, "reviewed", row["top_label"], row["sb"]), row["n"]
            yield (*base, "correct", row["top_label"], row["sb"]), row["correct"]


def _decisions(start, end) -> Iterable[tuple[Key, float]]:
    window = Decision.objects.filter(created_at__gte=start, created_at__lt=end).annotate(
        h=_hour("created_at"), p=F("item__project_id"))
    rows = window.annotate(b=_binned("seconds_spent", bins.DECISION_SECONDS)).values("p", "h", "reviewer_id", "b").annotate(
        labels=Count("pk", filter=Q(kind=Decision.Kind.LABEL)), skips=Count("pk", filter=Q(kind=Decision.Kind.SKIP)),
        undos=Count("pk", filter=Q(kind=Decision.Kind.UNDO)),
        timed=Count("pk", filter=Q(kind=Decision.Kind.LABEL, seconds_spent__isnull=False)),
        seconds=Sum("seconds_spent", filter=Q(kind=Decision.Kind.LABEL)))
    for row in rows:
        base, who = (row["p"], row["h"]), str(row["reviewer_id"])
        for metric in ("labels", "skips", "undos"):
            yield (*base, metric, who, -1), row[metric]
        yield (*base, "seconds_n", who, -1), row["timed"]
        yield (*base, "seconds_sum", who, -1), row["seconds"] or 0.0
        yield (*base, "seconds", who, row["b"]), row["timed"]
    audits = (window.filter(audit=True, kind=Decision.Kind.LABEL, undone=False)
              .values("p", "h", "item__top_label")
              .annotate(n=Count("pk"), ok=Count("pk", filter=Q(label__name=F("item__top_label")))))
    for row in audits:
        yield (row["p"], row["h"], "audit_checked", row["item__top_label"], -1), row["n"]
        yield (row["p"], row["h"], "audit_confirmed", row["item__top_label"], -1), row["ok"]


def _consensus(start, end) -> Iterable[tuple[Key, float]]:
    rows = (Decision.objects.filter(item__labelled_at__gte=start, item__labelled_at__lt=end, agrees__isnull=False,
                                    kind=Decision.Kind.LABEL)
            .annotate(h=_hour("item__labelled_at"), p=F("item__project_id")).values("p", "h", "reviewer_id")
            .annotate(n=Count("pk"), agreed=Count("pk", filter=Q(agrees=True))))
    for row in rows:
        yield (row["p"], row["h"], "consensus", str(row["reviewer_id"]), -1), row["n"]
        yield (row["p"], row["h"], "agreed", str(row["reviewer_id"]), -1), row["agreed"]


# --- Snapshots and events ------------------------------------------------------------------------


def take_status_snapshot(*, now: datetime | None = None) -> int:
    """Store every project's count per status for the current hour (the backlog plot's points):
    one row per project and status holding items, none for an empty status.

    The counts come from the ones the item table's triggers keep (``StatusCount``, exact at every
    commit), not from counting items: the periodic refresh takes a snapshot every few minutes, and
    a COUNT over a million items each time would cost more than the rest of the refresh. Only the
    backend failures among the items waiting for review are still counted from those items."""
    hour = floor_hour(now or timezone.now())
    counts = status_counts_of(Project.objects.only("pk"))
    rows = [(project_id, status, n) for project_id, by_status in counts.items() for status, n in by_status.items() if n > 0]
    failed = dict(Item.objects.filter(status=Item.Status.NEEDS_REVIEW, status_reason__startswith=BACKEND_FAILED)
                  .order_by().values("project_id").annotate(n=Count("pk")).values_list("project_id", "n"))
    with transaction.atomic():
        StatusSnapshot.objects.filter(hour=hour).delete()
        StatusSnapshot.objects.bulk_create(
            StatusSnapshot(project_id=project_id, hour=hour, status=status, count=n,
                           backend_errors=failed.get(project_id, 0) if status == Item.Status.NEEDS_REVIEW else 0)
            for project_id, status, n in rows
        )
    return len(rows)


def record_retry(*, item_id: int, error: str) -> None:
    """Count one retry of an item's classification in the current hour (called by the worker)."""
    count_event(item_id=item_id, metric="retries", detail=error)


def record_backend_error(*, item_id: int) -> None:
    """Count an item sent to review because its backend failed, in the current hour (called by the
    worker, once per such run: the item's status says it only until a person reviews it)."""
    count_event(item_id=item_id, metric="backend_errors")


def count_event(*, item_id: int, metric: str, detail: str = "") -> None:
    """Add one to ``metric`` of the item's project and backend (``backend:detail`` with a detail)
    in the current hour."""
    item = Item.objects.filter(pk=item_id).values("project_id", "backend").first()
    if item is None:
        return
    key = f"{item['backend'] or '?'}:{detail}" if detail else item["backend"] or "?"
    where = {"project_id": item["project_id"], "metric": metric, "hour": floor_hour(timezone.now()), "key": key[:100]}
    if HourlyRollup.objects.filter(**where).update(value=F("value") + 1):
        return
    try:
        with transaction.atomic():
            HourlyRollup.objects.create(value=1, **where)
    except IntegrityError:  # another worker created it first
        HourlyRollup.objects.filter(**where).update(value=F("value") + 1)
