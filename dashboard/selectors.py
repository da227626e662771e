"""Reads for the dashboard: each plot as charts plus the table behind them, from the rollups only.

Every function takes a project the caller may see (``classify.selectors.project_for``) and a
``Span``; none reads the item, prediction or decision tables, so each answers in the time of a
grouped sum over at most a few hundred thousand rollup rows whatever the project's size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from classify.models import Item, Project

from . import bins, drift
from .bins import HOUR, floor_hour
from .charts import Chart, Series, fmt
from .models import DriftAlarm, HourlyRollup, StatusSnapshot

WINDOWS = (1, 7, 30, 90)
BACKLOG_STATUSES = (Item.Status.RECEIVED, Item.Status.QUEUED, Item.Status.CLASSIFYING, Item.Status.NEEDS_REVIEW,
                    Item.Status.FAILED)
MAX_LINES = 8


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    step: str  # "hour" or "day"

    @property
    def buckets(self) -> list[datetime]:
        delta = HOUR if self.step == "hour" else timedelta(days=1)
        first = self.start if self.step == "hour" else self.start.replace(hour=0)
        out, moment = [], first
        while moment < self.end:
            out.append(moment)
            moment += delta
        return out


def span_for(days: int, *, now: datetime | None = None) -> Span:
    """The last ``days`` days up to the current hour; hourly points for one day, daily beyond."""
    end = floor_hour(now or timezone.now()) + HOUR
    start = end - timedelta(days=days)
    return Span(start=start, end=end, step="hour" if days <= 1 else "day")


@dataclass
class Plot:
    slug: str
    section: str
    title: str
    about: str
    charts: list[Chart]
    headers: list[str]
    rows: list[list[object]]
    alerts: list[str] = field(default_factory=list)


# --- Sums over the rollups ------------------------------------------------------------------------


def _rollups(project: Project, span: Span, metrics):
    return HourlyRollup.objects.filter(project=project, hour__gte=span.start, hour__lt=span.end,
                                       metric__in=list(metrics))


def _by_time(project: Project, span: Span, metrics) -> dict[tuple[str, str], dict[datetime, float]]:
    """{(metric, key): {bucket start: sum}}."""
    bucket = TruncDay("hour", tzinfo=UTC) if span.step == "day" else F("hour")
    rows = _rollups(project, span, metrics).annotate(t=bucket).values("metric", "key", "t").annotate(v=Sum("value"))
    out: dict[tuple[str, str], dict[datetime, float]] = defaultdict(dict)
    for row in rows:
        out[(row["metric"], row["key"])][row["t"]] = row["v"]
    return out


def _totals(project: Project, span: Span, metrics, *, by_bin: bool = False) -> dict[tuple, float]:
    """{(metric, key): sum over the span}, or with ``by_bin`` {(metric, key, bin): ...} of
    histogram metrics (their per-bin counts are added up here: JSON does not sum in SQL)."""
    if not by_bin:
        rows = _rollups(project, span, metrics).values("metric", "key").annotate(v=Sum("value"))
        return {(row["metric"], row["key"]): row["v"] for row in rows}
    if connection.vendor == "postgresql":
        return bin_totals_in_sql(project, span, metrics)
    return bin_totals_in_python(project, span, metrics)


def bin_totals_in_python(project: Project, span: Span, metrics) -> dict[tuple, float]:
    """Histogram bins added up here, row by row (any database)."""
    return {(metric, key, index): n for (metric, key), counts in add_counts(
        _rollups(project, span, metrics).values_list("metric", "key", "counts")).items()
        for index, n in enumerate(counts)}


def bin_totals_in_sql(project: Project, span: Span, metrics) -> dict[tuple, float]:
    """The same sums computed by PostgreSQL, which unnests each jsonb array of counts: a 30-day
    window of a busy project is thousands of rows of bins, and decoding them all in Python cost
    more than the 300 ms a plot may take (measured on 1M items, bench/dashboard.py)."""
    sql = f"""
        SELECT r.metric, r.key, bin.ord - 1, SUM(bin.n::float)
        FROM {HourlyRollup._meta.db_table} r
        CROSS JOIN LATERAL jsonb_array_elements_text(r.counts) WITH ORDINALITY AS bin(n, ord)
        WHERE r.project_id = %s AND r.hour >= %s AND r.hour < %s AND r.metric = ANY(%s)
          AND jsonb_typeof(r.counts) = 'array'
        GROUP BY 1, 2, 3"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [project.pk, span.start, span.end, list(metrics)])
        return {(metric, key, index): total for metric, key, index, total in cursor.fetchall()}


def add_counts(rows) -> dict[tuple, list[float]]:
    """Sum histogram rows ``(*group, counts)`` per group, bin by bin."""
    out: dict[tuple, list[float]] = {}
    for *group, counts in rows:
        if not counts:
            continue
        total = out.setdefault(tuple(group), [0.0] * len(counts))
        for index, n in enumerate(counts):
            total[index] += n
    return out


def _metric_by_time(found, metric: str) -> dict[datetime, float]:
    total: dict[datetime, float] = defaultdict(float)
    for (name, _key), points in found.items():
        if name == metric:
            for moment, value in points.items():
                total[moment] += value
    return total


def _keys(found, metric: str, limit: int = MAX_LINES) -> list[str]:
    """The keys of a metric, biggest first, at most ``limit``."""
    sizes = {key: sum(points.values()) for (name, key), points in found.items() if name == metric}
    return sorted(sizes, key=lambda key: (-sizes[key], key))[:limit]


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _x_label(span: Span) -> str:
    return "hour (UTC)" if span.step == "hour" else "day (UTC)"


def _stamp(moment: datetime, span: Span) -> str:
    return moment.strftime("%Y-%m-%d %H:00" if span.step == "hour" else "%Y-%m-%d")


def reviewer_names(ids) -> dict[str, str]:
    users = get_user_model().objects.filter(pk__in=[int(i) for i in ids if str(i).isdigit()])
    return {str(user.pk): user.get_username() for user in users}


# --- Flow ----------------------------------------------------------------------------------------


def uploads(project: Project, span: Span) -> Plot:
    found = _by_time(project, span, ["uploads", "rejected", "duplicates"])
    names = {"uploads": "uploads", "rejected": "rejected by the quality checks", "duplicates": "duplicates"}
    series = [Series(label, [(t, found.get((m, ""), {}).get(t, 0.0)) for t in span.buckets]) for m, label in names.items()]
    rows = [[_stamp(t, span), *(int(found.get((m, ""), {}).get(t, 0)) for m in names)] for t in span.buckets]
    chart = Chart("line", "Uploads", _x_label(span), "images", series, step=span.step)
    return Plot("uploads", "flow", "Uploads per " + span.step, "Images uploaded; how many the quality checks "
                "rejected and how many were exact duplicates of an earlier upload.", [chart],
                ["time", "uploads", "rejected", "duplicates"], rows)


def backlog(project: Project, span: Span) -> Plot:
    """Items per waiting status, from the snapshots the refresh takes each hour (the last one of
    each day for daily points)."""
    snaps = (StatusSnapshot.objects.filter(project=project, hour__gte=span.start, hour__lt=span.end).order_by("hour")
             .values_list("hour", "status", "count"))
    points: dict[str, dict[datetime, float]] = defaultdict(dict)
    latest: dict[datetime, datetime] = {}
    for hour, status, count in snaps:  # a snapshot without a status means none in it
        bucket = hour if span.step == "hour" else hour.replace(hour=0)
        if latest.get(bucket) != hour:  # a later snapshot of the day replaces the earlier one
            latest[bucket] = hour
            for waiting in BACKLOG_STATUSES:
                points[waiting][bucket] = 0
        if status in BACKLOG_STATUSES:
            points[status][bucket] = count
    moments = sorted({t for values in points.values() for t in values})
    labels = dict(Item.Status.choices)
    series = [Series(labels[s], [(t, points[s].get(t, 0)) for t in moments]) for s in BACKLOG_STATUSES]
    rows = [[_stamp(t, span), *(int(points[s].get(t, 0)) for s in BACKLOG_STATUSES)] for t in moments]
    chart = Chart("line", "Backlog by status", _x_label(span), "items", series if moments else [], step=span.step)
    return Plot("backlog", "flow", "Backlog by status", "Items waiting in each status, as counted by the hourly "
                "snapshot (the last snapshot of each day for daily points).", [chart],
                ["time", *(labels[s] for s in BACKLOG_STATUSES)], rows)


def time_to_label(project: Project, span: Span) -> Plot:
    rows = _rollups(project, span, ["wait"]).values_list("hour", "key", "counts")
    hist: dict[str, dict[datetime, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for (hour, key), counts in add_counts(rows).items():
        bucket = hour if span.step == "hour" else hour.replace(hour=0)
        for name in (key, "all"):
            cell = hist[name][bucket]
            for index, n in enumerate(counts):
                cell[index] = cell.get(index, 0) + n
    edges = bins.WAIT_SECONDS
    stats = {(key, q, t): bins.quantile(hist[key].get(t, {}), edges, q)
             for key in ("all", "human") for q in (0.5, 0.9) for t in span.buckets}
    series = [Series("median", [(t, stats[("all", 0.5, t)]) for t in span.buckets]),
              Series("p90", [(t, stats[("all", 0.9, t)]) for t in span.buckets]),
              Series("median, reviewed by a person", [(t, stats[("human", 0.5, t)]) for t in span.buckets])]
    table = [[_stamp(t, span), int(sum(hist["all"].get(t, {}).values())),
              *(round(v, 1) if v is not None else "" for v in (stats[("all", 0.5, t)], stats[("all", 0.9, t)],
                                                            stats[("human", 0.5, t)]))] for t in span.buckets]
    chart = Chart("line", "Upload to final label", _x_label(span), "time from upload", series, y_unit="seconds",
                  step=span.step)
    return Plot("time-to-label", "flow", "Time from upload to final label", "Median and 90th percentile of the time "
                "from upload to the final label (auto-accept or a person's), read from hourly histograms.",
                [chart], ["time", "labelled", "median s", "p90 s", "median s (people)"], table)


def auto_accept_rate(project: Project, span: Span) -> Plot:
    found = _by_time(project, span, ["predictions", "auto_accepted"])
    total, auto = _metric_by_time(found, "predictions"), _metric_by_time(found, "auto_accepted")
    rate = [(t, _ratio(auto.get(t, 0), total.get(t, 0))) for t in span.buckets]
    chart = Chart("line", "Auto-accept rate", _x_label(span), "share auto-accepted", [Series("auto-accepted", rate)],
                  y_unit="share", step=span.step)
    rows = [[_stamp(t, span), int(total.get(t, 0)), int(auto.get(t, 0)), fmt(r, "share")] for t, r in rate]
    return Plot("auto-accept-rate", "flow", "Auto-accept rate", "Share of predictions the thresholds auto-accepted "
                "(before the audit sample is drawn).", [chart], ["time", "predictions", "auto-accepted", "rate"], rows)


# --- Model ---------------------------------------------------------------------------------------


def _thresholds(project: Project) -> dict[str, float]:
    return dict(project.labels.filter(is_unknown=False).values_list("name", "accept_threshold"))


def confidence(project: Project, span: Span) -> Plot:
    totals = _totals(project, span, ["score"], by_bin=True)
    per_class: dict[str, dict[int, float]] = defaultdict(dict)
    for (_metric, key, index), value in totals.items():
        per_class[key][index] = value
    thresholds, width = _thresholds(project), 1 / bins.SCORE_BINS
    names = sorted(per_class, key=lambda name: -sum(per_class[name].values()))[:MAX_LINES]
    charts, rows = [], []
    for name in names:
        points = [(edge, per_class[name].get(i, 0.0)) for i, edge in enumerate(bins.score_edges())]
        markers = [(thresholds[name], "threshold")] if name in thresholds else []
        charts.append(Chart("hist", f"Top score of {name}", "top score", "predictions", [Series(name, points)],
                            markers=markers, x_range=(0.0, 1.0), bin_width=width))
        rows += [[name, f"{edge:.2f}-{edge + width:.2f}", int(n)] for edge, n in points]
    return Plot("confidence", "model", "Confidence per class", "How the top score of the predictions in each class "
                "is distributed; the line is the class's accept threshold.", charts, ["class", "top score", "predictions"],
                rows)


def top_score(project: Project, span: Span) -> Plot:
    found = _by_time(project, span, ["predictions", "score_sum"])
    total, sums = _metric_by_time(found, "predictions"), _metric_by_time(found, "score_sum")
    series = [Series("all classes", [(t, _ratio(sums.get(t, 0), total.get(t, 0))) for t in span.buckets])]
    for name in _keys(found, "predictions", MAX_LINES - 1):
        n, s = found.get(("predictions", name), {}), found.get(("score_sum", name), {})
        series.append(Series(name, [(t, _ratio(s.get(t, 0), n.get(t, 0))) for t in span.buckets]))
    rows = [[_stamp(t, span), *(fmt(dict(s.points).get(t), "score") for s in series)] for t in span.buckets]
    chart = Chart("line", "Mean top score", _x_label(span), "mean top score", series, y_unit="score", step=span.step)
    return Plot("top-score", "model", "Top-score trend", "Mean top score of the predictions, overall and per predicted "
                "class: a falling line means the model grows less sure.", [chart],
                ["time", *(s.name for s in series)], rows)


def class_shares(project: Project, span: Span) -> Plot:
    found = _by_time(project, span, ["predictions"])
    total = _metric_by_time(found, "predictions")
    names = _keys(found, "predictions")
    series = [Series(name, [(t, _ratio(found[("predictions", name)].get(t, 0), total.get(t, 0)))
                            for t in span.buckets]) for name in names]
    rows = [[_stamp(t, span), int(total.get(t, 0)), *(fmt(dict(s.points).get(t), "share") for s in series)]
            for t in span.buckets]
    chart = Chart("line", "Class shares", _x_label(span), "share of predictions", series, y_unit="share", step=span.step)
    windows = drift_windows(timezone.now())
    alerts = [f"Drift alarm: {alarm.label} had {fmt(alarm.recent_share, 'share')} of the predictions in the last "
              f"{_hours(windows.end - windows.recent_start)} against {fmt(alarm.baseline_share, 'share')} in the "
              f"{_hours(windows.recent_start - windows.baseline_start)} before (band ±{100 * alarm.band:.0f} points), "
              f"since {alarm.started_at:%Y-%m-%d %H:%M} UTC."
              for alarm in DriftAlarm.objects.filter(project=project, ended_at__isnull=True).order_by("label")]
    return Plot("class-shares", "model", "Class shares and drift", "Share of the predictions that went to each class. "
                "A class whose share in the recent window leaves the band around its baseline share raises a drift "
                "alarm (checked at every rollup refresh).", [chart], ["time", "predictions", *names], rows, alerts)


def _hours(delta: timedelta) -> str:
    hours = round(delta.total_seconds() / 3600)
    return f"{hours // 24} days" if hours % 24 == 0 and hours >= 48 else f"{hours} h"


def drift_windows(now: datetime) -> drift.Windows:
    return drift.windows(now, recent_hours=settings.LOUPE_DRIFT_RECENT_HOURS,
                         baseline_hours=settings.LOUPE_DRIFT_BASELINE_HOURS)


def class_counts(project_id: int, start: datetime, end: datetime) -> dict[str, float]:
    rows = (HourlyRollup.objects.filter(project_id=project_id, metric="predictions", hour__gte=start, hour__lt=end)
            .values("key").annotate(n=Sum("value")))
    return {row["key"]: row["n"] for row in rows}


def current_shifts(project_id: int, *, now: datetime | None = None) -> tuple[drift.Windows, list[drift.Shift]]:
    """The drift windows now and the classes whose share is outside the band (LOUPE_DRIFT_*)."""
    span = drift_windows(now or timezone.now())
    baseline = class_counts(project_id, span.baseline_start, span.recent_start)
    recent = class_counts(project_id, span.recent_start, span.end)
    return span, drift.shifts(baseline, recent, band=settings.LOUPE_DRIFT_BAND,
                              min_predictions=settings.LOUPE_DRIFT_MIN_PREDICTIONS)


# --- Quality -------------------------------------------------------------------------------------


def audit_precision(project: Project, span: Span) -> Plot:
    totals = _totals(project, span, ["audit_checked", "audit_confirmed"])
    names = sorted({key for (_m, key) in totals})
    points, intervals, rows = [], {}, []
    for name in names:
        checked, confirmed = totals.get(("audit_checked", name), 0), totals.get(("audit_confirmed", name), 0)
        if not checked:
            continue
        low, high = bins.wilson_interval(confirmed, checked)
        points.append((name, confirmed / checked))
        intervals[name] = (low, high)
        rows.append([name, int(checked), int(confirmed), fmt(confirmed / checked, "share"), fmt(low, "share"),
                     fmt(high, "share")])
    chart = Chart("bar", "Audited precision of auto-accept", "class", "precision", [Series("precision", points)],
                  y_unit="share", intervals=intervals)
    return Plot("audit-precision", "quality", "Audited precision of auto-accept", "Of the auto-accepted items sampled "
                "for a human check, the share people confirmed, per class, with its 95% Wilson interval.", [chart],
                ["class", "checked", "confirmed", "precision", "95% low", "95% high"], rows)


def agreement(project: Project, span: Span) -> Plot:
    totals = _totals(project, span, ["consensus", "agreed"])
    ids = sorted({key for (_m, key) in totals})
    names = reviewer_names(ids)
    points, intervals, rows = [], {}, []
    all_n = sum(v for (m, _k), v in totals.items() if m == "consensus")
    all_ok = sum(v for (m, _k), v in totals.items() if m == "agreed")
    for key, label in [("", "everyone")] + [(i, names.get(i, f"#{i}")) for i in ids]:
        n = all_n if key == "" else totals.get(("consensus", key), 0)
        ok = all_ok if key == "" else totals.get(("agreed", key), 0)
        if not n:
            continue
        points.append((label, ok / n))
        intervals[label] = bins.wilson_interval(ok, n)
        rows.append([label, int(n), int(ok), fmt(ok / n, "share")])
    chart = Chart("bar", "Reviewer agreement", "reviewer", "agreed with the final label", [Series("agreement", points)],
                  y_unit="share", intervals=intervals)
    return Plot("agreement", "quality", "Reviewer agreement", "On items that needed several independent reviews: the "
                "share of each reviewer's decisions that matched the final label.", [chart],
                ["reviewer", "consensus decisions", "agreed", "agreement"], rows)


def precision_coverage(project: Project, span: Span) -> Plot:
    """Per class, from the items people reviewed: for each cut-off t, the share of the class's
    reviewed items scoring at least t (coverage) and how many of those people confirmed (precision)."""
    totals = _totals(project, span, ["reviewed", "correct"], by_bin=True)
    thresholds = _thresholds(project)
    per_class: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: {"reviewed": {}, "correct": {}})
    for (metric, key, index), value in totals.items():
        per_class[key][metric][index] = value
    names = sorted(per_class, key=lambda name: -sum(per_class[name]["reviewed"].values()))[:MAX_LINES]
    charts, rows = [], []
    for name in names:
        reviewed, correct = per_class[name]["reviewed"], per_class[name]["correct"]
        everything = sum(reviewed.values())
        precision, coverage = [], []
        for index, edge in enumerate(bins.score_edges()):
            n = sum(v for i, v in reviewed.items() if i >= index)
            ok = sum(v for i, v in correct.items() if i >= index)
            precision.append((edge, _ratio(ok, n)))
            coverage.append((edge, _ratio(n, everything)))
            rows.append([name, f"{edge:.2f}", int(n), int(ok), fmt(_ratio(ok, n), "share"),
                         fmt(_ratio(n, everything), "share")])
        markers = [(thresholds[name], "threshold")] if name in thresholds else []
        charts.append(Chart("line", f"Precision and coverage of {name}", "score cut-off", "share",
                            [Series("precision", precision), Series("coverage", coverage)], y_unit="share",
                            markers=markers, x_range=(0.0, 1.0)))
    return Plot("precision-coverage", "quality", "Precision and coverage per class", "From the items people reviewed: "
                "at each score cut-off, the share of the class's reviewed items scoring at least that much (coverage) "
                "and the share of those people confirmed (precision). The line is the current threshold. Reviewed "
                "items lean towards uncertain ones, so read it as a guide for moving the threshold.", charts,
                ["class", "cut-off", "reviewed at or above", "confirmed", "precision", "coverage"], rows)


# --- People --------------------------------------------------------------------------------------


def decisions(project: Project, span: Span) -> Plot:
    found = _by_time(project, span, ["labels"])
    ids = _keys(found, "labels")
    names = reviewer_names(ids)
    series = [Series(names.get(i, f"#{i}"), [(t, found[("labels", i)].get(t, 0.0)) for t in span.buckets]) for i in ids]
    rows = [[_stamp(t, span), *(int(dict(s.points).get(t, 0)) for s in series)] for t in span.buckets]
    chart = Chart("line", "Decisions per reviewer", _x_label(span), "labels given", series, step=span.step)
    return Plot("decisions", "people", "Decisions per reviewer per " + span.step, "Labels each reviewer gave (skips "
                "and undos not counted).", [chart], ["time", *(s.name for s in series)], rows)


def seconds_per_decision(project: Project, span: Span) -> Plot:
    totals = _totals(project, span, ["seconds"], by_bin=True)
    per_reviewer: dict[str, dict[int, float]] = defaultdict(dict)
    for (_m, key, index), value in totals.items():
        per_reviewer[key][index] = value
    names = reviewer_names(per_reviewer)
    points, rows = [], []
    for key in sorted(per_reviewer, key=lambda k: names.get(k, k)):
        median = bins.quantile(per_reviewer[key], bins.DECISION_SECONDS, 0.5)
        points.append((names.get(key, f"#{key}"), median))
        rows.append([names.get(key, f"#{key}"), int(sum(per_reviewer[key].values())),
                     round(median, 1) if median is not None else ""])
    chart = Chart("bar", "Median seconds per decision", "reviewer", "seconds", [Series("median", points)],
                  y_unit="seconds")
    return Plot("seconds-per-decision", "people", "Median seconds per decision", "How long each reviewer looked at an "
                "item before labelling it (timed by the review page), median from binned times.", [chart],
                ["reviewer", "timed decisions", "median seconds"], rows)


def undo_rate(project: Project, span: Span) -> Plot:
    totals = _totals(project, span, ["labels", "skips", "undos"])
    ids = sorted({key for (_m, key) in totals})
    names = reviewer_names(ids)
    points, rows = [], []
    for key in ids:
        labels, undos = totals.get(("labels", key), 0), totals.get(("undos", key), 0)
        rate = _ratio(undos, labels)
        points.append((names.get(key, f"#{key}"), rate))
        rows.append([names.get(key, f"#{key}"), int(labels), int(totals.get(("skips", key), 0)), int(undos),
                     fmt(rate, "share")])
    chart = Chart("bar", "Undo rate", "reviewer", "undos per label", [Series("undo rate", points)], y_unit="share")
    return Plot("undo-rate", "people", "Undo rate", "Undos per label given, per reviewer: a high rate can mean unclear "
                "classes or a hurried pace.", [chart], ["reviewer", "labels", "skips", "undos", "undo rate"], rows)


# --- Cost ----------------------------------------------------------------------------------------


def cost(project: Project, span: Span) -> Plot:
    found = _by_time(project, span, ["cost_usd", "calls"])
    backends = sorted({key for (metric, key) in found if metric == "calls"})
    series = [Series(name, [(t, found.get(("cost_usd", name), {}).get(t, 0.0)) for t in span.buckets])
              for name in backends]
    rows = [[_stamp(t, span), name, int(found.get(("calls", name), {}).get(t, 0)),
             round(found.get(("cost_usd", name), {}).get(t, 0.0), 6)] for t in span.buckets for name in backends]
    chart = Chart("line", "Cost per backend", _x_label(span), "US dollars", series, y_unit="usd", step=span.step)
    return Plot("cost", "cost", "Cost per " + span.step + " per backend", "What the backend calls cost (0 for the local "
                "model).", [chart], ["time", "backend", "calls", "cost USD"], rows)


def savings(project: Project, span: Span) -> Plot:
    """Saved by dedup: the recorded cost of the reused scores. Saved by the quality filter: each
    rejected upload at the mean cost of one backend call in the window (an estimate)."""
    found = _by_time(project, span, ["saved_usd", "rejected", "cost_usd", "calls"])
    saved, rejected = _metric_by_time(found, "saved_usd"), _metric_by_time(found, "rejected")
    per_call = _ratio(sum(_metric_by_time(found, "cost_usd").values()), sum(_metric_by_time(found, "calls").values())) or 0
    series = [Series("dedup (reused scores)", [(t, saved.get(t, 0.0)) for t in span.buckets]),
              Series("quality filter (estimate)", [(t, rejected.get(t, 0.0) * per_call) for t in span.buckets])]
    rows = [[_stamp(t, span), round(saved.get(t, 0.0), 6), int(rejected.get(t, 0)), round(rejected.get(t, 0) * per_call, 6)]
            for t in span.buckets]
    chart = Chart("line", "Saved", _x_label(span), "US dollars saved", series, y_unit="usd", step=span.step)
    return Plot("savings", "cost", "Saved by dedup and the quality filter", "Dedup: what the reused scores of "
                "identical images would have cost. Quality filter: rejected uploads times the mean cost of a backend "
                f"call in this window ({fmt(per_call, 'usd')}).", [chart],
                ["time", "saved by dedup USD", "rejected uploads", "saved by quality filter USD"], rows)


PLOTS: dict[str, Callable[[Project, Span], Plot]] = {
    "uploads": uploads, "backlog": backlog, "time-to-label": time_to_label, "auto-accept-rate": auto_accept_rate,
    "confidence": confidence, "top-score": top_score, "class-shares": class_shares,
    "audit-precision": audit_precision, "agreement": agreement, "precision-coverage": precision_coverage,
    "decisions": decisions, "seconds-per-decision": seconds_per_decision, "undo-rate": undo_rate,
    "cost": cost, "savings": savings,
}
SECTIONS = (
    ("flow", "Flow", ("uploads", "backlog", "time-to-label", "auto-accept-rate")),
    ("model", "Model", ("confidence", "top-score", "class-shares")),
    ("quality", "Quality", ("audit-precision", "agreement", "precision-coverage")),
    ("people", "People", ("decisions", "seconds-per-decision", "undo-rate")),
    ("cost", "Cost", ("cost", "savings")),
)
