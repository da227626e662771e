"""Quality plots: audited precision of auto-accept, reviewer agreement, precision and coverage."""

from __future__ import annotations

from collections import defaultdict

from classify.models import Project
from dashboard import bins
from dashboard.charts import Chart, Series, fmt

from .rollups import MAX_LINES, Plot, Span, class_thresholds, ratio, reviewer_names, span_totals


def audit_precision(project: Project, span: Span) -> Plot:
    totals = span_totals(project, span, ["audit_checked", "audit_confirmed"])
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
    totals = span_totals(project, span, ["consensus", "agreed"])
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
    totals = span_totals(project, span, ["reviewed", "correct"], by_bin=True)
    thresholds = class_thresholds(project)
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
            precision.append((edge, ratio(ok, n)))
            coverage.append((edge, ratio(n, everything)))
            rows.append([name, f"{edge:.2f}", int(n), int(ok), fmt(ratio(ok, n), "share"),
                         fmt(ratio(n, everything), "share")])
        markers = [(thresholds[name], "threshold")] if name in thresholds else []
        charts.append(Chart("line", f"Precision and coverage of {name}", "score cut-off", "share",
                            [Series("precision", precision), Series("coverage", coverage)], y_unit="share",
                            markers=markers, x_range=(0.0, 1.0)))
    return Plot("precision-coverage", "quality", "Precision and coverage per class", "From the items people reviewed: "
                "at each score cut-off, the share of the class's reviewed items scoring at least that much (coverage) "
                "and the share of those people confirmed (precision). The line is the current threshold. Reviewed "
                "items lean towards uncertain ones, so read it as a guide for moving the threshold.", charts,
                ["class", "cut-off", "reviewed at or above", "confirmed", "precision", "coverage"], rows)
