"""Reads for the dashboard: each plot as charts plus the table behind them, from the rollups only.

Every plot takes a project the caller may see (``classify.selectors.project_for``) and a ``Span``;
none reads the item, prediction or decision tables, so each answers in the time of a grouped sum
over at most a few hundred thousand rollup rows whatever the project's size. One module per
section of the page (``flow``, ``model``, ``quality``, ``people``, ``cost``) over the shared
``rollups`` (the span, the plot's shape, the sums) and ``shifts`` (the drift windows); this module
is the registry the views and the CSV downloads look plots up in.
"""

from __future__ import annotations

from collections.abc import Callable

from classify.models import Project

from . import cost, flow, model, people, quality
from .rollups import Plot, Span

WINDOWS = (1, 7, 30, 90)

PLOTS: dict[str, Callable[[Project, Span], Plot]] = {
    "uploads": flow.uploads, "backlog": flow.backlog, "time-to-label": flow.time_to_label,
    "auto-accept-rate": flow.auto_accept_rate,
    "confidence": model.confidence, "top-score": model.top_score, "class-shares": model.class_shares,
    "audit-precision": quality.audit_precision, "agreement": quality.agreement,
    "precision-coverage": quality.precision_coverage,
    "decisions": people.decisions, "seconds-per-decision": people.seconds_per_decision, "undo-rate": people.undo_rate,
    "cost": cost.cost, "savings": cost.savings,
}
SECTIONS = (
    ("flow", "Flow", ("uploads", "backlog", "time-to-label", "auto-accept-rate")),
    ("model", "Model", ("confidence", "top-score", "class-shares")),
    ("quality", "Quality", ("audit-precision", "agreement", "precision-coverage")),
    ("people", "People", ("decisions", "seconds-per-decision", "undo-rate")),
    ("cost", "Cost", ("cost", "savings")),
)
