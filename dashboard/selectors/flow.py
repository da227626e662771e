"""Flow plots: uploads, the backlog by status, time from upload to final label, auto-accept rate."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from classify.models import Item, Project
from dashboard import bins
from dashboard.charts import Chart, Series, fmt
from dashboard.models import StatusSnapshot

from .rollups import Plot, Span, add_counts, by_time, metric_by_time, ratio, rollup_rows, stamp, x_label

BACKLOG_STATUSES = (Item.Status.RECEIVED, Item.Status.QUEUED, Item.Status.CLASSIFYING, Item.Status.NEEDS_REVIEW,
                    Item.Status.FAILED)


def uploads(project: Project, span: Span) -> Plot:
    found = by_time(project, span, ["uploads", "rejected", "duplicates"])
    names = {"uploads": "uploads", "rejected": "rejected by the quality checks", "duplicates": "duplicates"}
    series = [Series(label, [(t, found.get((m, ""), {}).get(t, 0.0)) for t in span.buckets]) for m, label in names.items()]
    rows = [[stamp(t, span), *(int(found.get((m, ""), {}).get(t, 0)) for m in names)] for t in span.buckets]
    chart = Chart("line", "Uploads", x_label(span), "images", series, step=span.step)
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
    rows = [[stamp(t, span), *(int(points[s].get(t, 0)) for s in BACKLOG_STATUSES)] for t in moments]
    chart = Chart("line", "Backlog by status", x_label(span), "items", series if moments else [], step=span.step)
    return Plot("backlog", "flow", "Backlog by status", "Items waiting in each status, as counted by the hourly "
                "snapshot (the last snapshot of each day for daily points).", [chart],
                ["time", *(labels[s] for s in BACKLOG_STATUSES)], rows)


def time_to_label(project: Project, span: Span) -> Plot:
    rows = rollup_rows(project, span, ["wait"]).values_list("hour", "key", "counts")
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
    table = [[stamp(t, span), int(sum(hist["all"].get(t, {}).values())),
              *(round(v, 1) if v is not None else "" for v in (stats[("all", 0.5, t)], stats[("all", 0.9, t)],
                                                            stats[("human", 0.5, t)]))] for t in span.buckets]
    chart = Chart("line", "Upload to final label", x_label(span), "time from upload", series, y_unit="seconds",
                  step=span.step)
    return Plot("time-to-label", "flow", "Time from upload to final label", "Median and 90th percentile of the time "
                "from upload to the final label (auto-accept or a person's), read from hourly histograms.",
                [chart], ["time", "labelled", "median s", "p90 s", "median s (people)"], table)


def auto_accept_rate(project: Project, span: Span) -> Plot:
    found = by_time(project, span, ["predictions", "auto_accepted"])
    total, auto = metric_by_time(found, "predictions"), metric_by_time(found, "auto_accepted")
    rate = [(t, ratio(auto.get(t, 0), total.get(t, 0))) for t in span.buckets]
    chart = Chart("line", "Auto-accept rate", x_label(span), "share auto-accepted", [Series("auto-accepted", rate)],
                  y_unit="share", step=span.step)
    rows = [[stamp(t, span), int(total.get(t, 0)), int(auto.get(t, 0)), fmt(r, "share")] for t, r in rate]
    return Plot("auto-accept-rate", "flow", "Auto-accept rate", "Share of predictions the thresholds auto-accepted "
                "(before the audit sample is drawn).", [chart], ["time", "predictions", "auto-accepted", "rate"], rows)
