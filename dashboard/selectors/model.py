"""Model plots: confidence per class, the top-score trend, class shares with the open drift alarms."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.utils import timezone

from classify.models import Project
from dashboard import bins
from dashboard.charts import Chart, Series, fmt
from dashboard.models import DriftAlarm

from .rollups import MAX_LINES, Plot, Span, by_time, class_thresholds, metric_by_time, ratio, span_totals, stamp, top_keys, x_label
from .shifts import drift_windows


def confidence(project: Project, span: Span) -> Plot:
    totals = span_totals(project, span, ["score"], by_bin=True)
    per_class: dict[str, dict[int, float]] = defaultdict(dict)
    for (_metric, key, index), value in totals.items():
        per_class[key][index] = value
    thresholds, width = class_thresholds(project), 1 / bins.SCORE_BINS
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
    found = by_time(project, span, ["predictions", "score_sum"])
    total, sums = metric_by_time(found, "predictions"), metric_by_time(found, "score_sum")
    series = [Series("all classes", [(t, ratio(sums.get(t, 0), total.get(t, 0))) for t in span.buckets])]
    for name in top_keys(found, "predictions", MAX_LINES - 1):
        n, s = found.get(("predictions", name), {}), found.get(("score_sum", name), {})
        series.append(Series(name, [(t, ratio(s.get(t, 0), n.get(t, 0))) for t in span.buckets]))
    rows = [[stamp(t, span), *(fmt(dict(s.points).get(t), "score") for s in series)] for t in span.buckets]
    chart = Chart("line", "Mean top score", x_label(span), "mean top score", series, y_unit="score", step=span.step)
    return Plot("top-score", "model", "Top-score trend", "Mean top score of the predictions, overall and per predicted "
                "class: a falling line means the model grows less sure.", [chart],
                ["time", *(s.name for s in series)], rows)


def class_shares(project: Project, span: Span) -> Plot:
    found = by_time(project, span, ["predictions"])
    total = metric_by_time(found, "predictions")
    names = top_keys(found, "predictions")
    series = [Series(name, [(t, ratio(found[("predictions", name)].get(t, 0), total.get(t, 0)))
                            for t in span.buckets]) for name in names]
    rows = [[stamp(t, span), int(total.get(t, 0)), *(fmt(dict(s.points).get(t), "share") for s in series)]
            for t in span.buckets]
    chart = Chart("line", "Class shares", x_label(span), "share of predictions", series, y_unit="share", step=span.step)
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
