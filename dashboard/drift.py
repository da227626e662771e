"""Class-share drift, the pure part: does any class get a share of the predictions in the recent
window that lies outside a band around its share in the baseline window before it?

``dashboard.selectors.shifts.current_shifts`` reads the windows' class counts from the rollups;
``dashboard.services.drift.check_drift`` opens and closes the alarms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .bins import HOUR, floor_hour


@dataclass(frozen=True)
class Shift:
    label: str
    baseline_share: float
    recent_share: float
    recent_total: int

    @property
    def delta(self) -> float:
        return self.recent_share - self.baseline_share


@dataclass(frozen=True)
class Windows:
    recent_start: datetime
    baseline_start: datetime
    end: datetime


def windows(now: datetime, *, recent_hours: int, baseline_hours: int) -> Windows:
    """The recent window is the last ``recent_hours`` hours up to the current one; the baseline the
    ``baseline_hours`` before it."""
    end = floor_hour(now) + HOUR
    recent_start = end - timedelta(hours=recent_hours)
    return Windows(recent_start, recent_start - timedelta(hours=baseline_hours), end)


def shares(counts: dict[str, float]) -> dict[str, float]:
    total = sum(counts.values())
    return {label: n / total for label, n in counts.items()} if total else {}


def shifts(baseline: dict[str, float], recent: dict[str, float], *, band: float, min_predictions: int) -> list[Shift]:
    """Every class whose recent share differs from its baseline share by more than ``band``.

    Nothing is judged while either window has fewer than ``min_predictions`` predictions: a
    handful of uploads is noise, not drift. A class absent from one window has share 0 there.
    """
    recent_total = sum(recent.values())
    if recent_total < min_predictions or sum(baseline.values()) < min_predictions:
        return []
    before, after = shares(baseline), shares(recent)
    found = [Shift(label, before.get(label, 0.0), after.get(label, 0.0), int(recent_total))
             for label in sorted(set(before) | set(after))]
    return [shift for shift in found if abs(shift.delta) > band + 1e-9]  # exactly on the edge is inside
