"""Compare before switching: what a candidate model would change on the project's recent items.

"Before" is what the project's models said (each item's latest stored prediction), re-routed with
today's thresholds; "after" is the candidate's scores for the same images, routed the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from classify import pipeline
from classify.backends import BackendError
from classify.models import Item, Label, Project, Spend
from classify.selectors import latest_prediction
from classify.services import budgets
from classify.services.scoring import load_image

COMPARED_STATUSES = (Item.Status.AUTO_ACCEPTED, Item.Status.NEEDS_REVIEW, Item.Status.REVIEWED)


def historical_sample(project: Project, size: int) -> list[Item]:
    """The project's most recent classified items (newest first), at most ``size``."""
    return list(Item.objects.filter(project=project, status__in=COMPARED_STATUSES, predictions__isnull=False)
                .distinct().order_by("-pk")[:size])


def compare_candidate(*, project: Project, candidate, items: Sequence[Item], labels: Sequence[Label]) -> dict:
    """Re-classify ``items`` with the ``candidate`` backend and tabulate the change.

    Returns per-class counts and shares before/after, the confusion table between the two
    versions (rows: before, columns: after), the auto-accept rate before/after at the current
    thresholds, and a warning for each class whose share moves by more than
    ``project.max_share_shift`` points. Items the candidate fails on are counted, not compared.
    What the candidate's calls cost is counted against the project's budgets.
    """
    rules = {label.name: pipeline.Rule(label.accept_threshold, label.margin) for label in labels}
    unknown = next(label.name for label in labels if label.is_unknown)
    pairs, errors, first_error = [], 0, ""
    for item in items:
        latest = latest_prediction(item)
        try:
            scores = _stored(candidate, item) or candidate.classify(
                load_image(item, min_side=getattr(candidate, "input_side", None)))
        except BackendError as exc:
            _charge(project, candidate, exc.cost_usd)
            errors, first_error = errors + 1, first_error or str(exc)
            continue
        _charge(project, candidate, scores.cost_usd)
        pairs.append((_route(latest.scores, rules, unknown), _route(scores.scores, rules, unknown)))
    return tabulate(pairs, classes=[label.name for label in labels], max_shift=project.max_share_shift,
                    errors=errors, first_error=first_error)


def _charge(project: Project, candidate, cost_usd: float) -> None:
    """A candidate's paid calls (a Custom Labels model with a price per call) count against the budgets."""
    budgets.record_spend(project=project, backend=candidate.name, cost_usd=cost_usd, kind=Spend.Kind.COMPARISON)


def _stored(candidate, item: Item):
    """A local head scores the embedding the worker stored: a 200-item comparison in milliseconds."""
    from_embedding = getattr(candidate, "scores_from_embedding", None)
    return from_embedding(item.embedding) if from_embedding and item.embedding is not None else None


def _route(scores: dict, rules: dict, unknown: str) -> pipeline.Routing:
    known = {name: value for name, value in scores.items() if name in rules}  # classes since deleted drop out
    return pipeline.route(known or {unknown: 1.0}, rules=rules, unknown=unknown)


def tabulate(pairs: Sequence[tuple[pipeline.Routing, pipeline.Routing]], *, classes: Sequence[str],
             max_shift: float, errors: int = 0, first_error: str = "") -> dict:
    """The comparison as stored on the run (plain JSON, in the order the page shows it)."""
    n = len(pairs)
    before = Counter(old.top_label for old, _ in pairs)
    after = Counter(new.top_label for _, new in pairs)
    confusion = Counter((old.top_label, new.top_label) for old, new in pairs)
    counts, warnings = [], []
    for name in classes:
        share_before = before[name] / n if n else 0.0
        share_after = after[name] / n if n else 0.0
        shift = round(100 * (share_after - share_before), 1)
        counts.append({"label": name, "before": before[name], "after": after[name], "share_before": share_before,
                       "share_after": share_after, "shift_points": shift})
        if abs(shift) > max_shift:
            warnings.append(f"{name}: {share_before:.0%} of the sample before, {share_after:.0%} after "
                            f"({shift:+.1f} points, more than the {max_shift:g} allowed without a warning).")
    accepted = lambda routing: routing.decision == "auto_accepted"  # noqa: E731
    return {
        "sample": n, "errors": errors, "first_error": first_error, "classes": list(classes), "counts": counts,
        "confusion": [{"before": row, "cells": [confusion[(row, col)] for col in classes]} for row in classes],
        "changed": sum(old.top_label != new.top_label for old, new in pairs),
        "auto_accept_before": sum(accepted(old) for old, _ in pairs) / n if n else None,
        "auto_accept_after": sum(accepted(new) for _, new in pairs) / n if n else None,
        "warnings": warnings,
    }
