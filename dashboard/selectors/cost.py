"""Cost plots: what the backend calls cost, and what dedup and the quality filter saved."""

from __future__ import annotations

from classify.models import Project
from dashboard.charts import Chart, Series, fmt

from .rollups import Plot, Span, by_time, metric_by_time, ratio, stamp, x_label


def cost(project: Project, span: Span) -> Plot:
    found = by_time(project, span, ["cost_usd", "calls"])
    backends = sorted({key for (metric, key) in found if metric == "calls"})
    series = [Series(name, [(t, found.get(("cost_usd", name), {}).get(t, 0.0)) for t in span.buckets])
              for name in backends]
    rows = [[stamp(t, span), name, int(found.get(("calls", name), {}).get(t, 0)),
             round(found.get(("cost_usd", name), {}).get(t, 0.0), 6)] for t in span.buckets for name in backends]
    chart = Chart("line", "Cost per backend", x_label(span), "US dollars", series, y_unit="usd", step=span.step)
    return Plot("cost", "cost", "Cost per " + span.step + " per backend", "What the backend calls cost (0 for the local "
                "model).", [chart], ["time", "backend", "calls", "cost USD"], rows)


def savings(project: Project, span: Span) -> Plot:
    """Saved by dedup: the recorded cost of the reused scores. Saved by the quality filter: each
    rejected upload at the mean cost of one backend call in the window (an estimate)."""
    found = by_time(project, span, ["saved_usd", "rejected", "cost_usd", "calls"])
    saved, rejected = metric_by_time(found, "saved_usd"), metric_by_time(found, "rejected")
    per_call = ratio(sum(metric_by_time(found, "cost_usd").values()), sum(metric_by_time(found, "calls").values())) or 0
    series = [Series("dedup (reused scores)", [(t, saved.get(t, 0.0)) for t in span.buckets]),
              Series("quality filter (estimate)", [(t, rejected.get(t, 0.0) * per_call) for t in span.buckets])]
    rows = [[stamp(t, span), round(saved.get(t, 0.0), 6), int(rejected.get(t, 0)), round(rejected.get(t, 0) * per_call, 6)]
            for t in span.buckets]
    chart = Chart("line", "Saved", x_label(span), "US dollars saved", series, y_unit="usd", step=span.step)
    return Plot("savings", "cost", "Saved by dedup and the quality filter", "Dedup: what the reused scores of "
                "identical images would have cost. Quality filter: rejected uploads times the mean cost of a backend "
                f"call in this window ({fmt(per_call, 'usd')}).", [chart],
                ["time", "saved by dedup USD", "rejected uploads", "saved by quality filter USD"], rows)
