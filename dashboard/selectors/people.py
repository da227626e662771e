"""People plots: decisions per reviewer, median seconds per decision, undo rate."""

from __future__ import annotations

from collections import defaultdict

from classify.models import Project
from dashboard import bins
from dashboard.charts import Chart, Series, fmt

from .rollups import Plot, Span, by_time, ratio, reviewer_names, span_totals, stamp, top_keys, x_label


def decisions(project: Project, span: Span) -> Plot:
    found = by_time(project, span, ["labels"])
    ids = top_keys(found, "labels")
    names = reviewer_names(ids)
    series = [Series(names.get(i, f"#{i}"), [(t, found[("labels", i)].get(t, 0.0)) for t in span.buckets]) for i in ids]
    rows = [[stamp(t, span), *(int(dict(s.points).get(t, 0)) for s in series)] for t in span.buckets]
    chart = Chart("line", "Decisions per reviewer", x_label(span), "labels given", series, step=span.step)
    return Plot("decisions", "people", "Decisions per reviewer per " + span.step, "Labels each reviewer gave (skips "
                "and undos not counted).", [chart], ["time", *(s.name for s in series)], rows)


def seconds_per_decision(project: Project, span: Span) -> Plot:
    totals = span_totals(project, span, ["seconds"], by_bin=True)
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
    totals = span_totals(project, span, ["labels", "skips", "undos"])
    ids = sorted({key for (_m, key) in totals})
    names = reviewer_names(ids)
    points, rows = [], []
    for key in ids:
        labels, undos = totals.get(("labels", key), 0), totals.get(("undos", key), 0)
        rate = ratio(undos, labels)
        points.append((names.get(key, f"#{key}"), rate))
        rows.append([names.get(key, f"#{key}"), int(labels), int(totals.get(("skips", key), 0)), int(undos),
                     fmt(rate, "share")])
    chart = Chart("bar", "Undo rate", "reviewer", "undos per label", [Series("undo rate", points)], y_unit="share")
    return Plot("undo-rate", "people", "Undo rate", "Undos per label given, per reviewer: a high rate can mean unclear "
                "classes or a hurried pace.", [chart], ["reviewer", "labels", "skips", "undos", "undo rate"], rows)
