"""Class-share drift: does any class get a share of the predictions in the recent window that lies
outside a band around its share in the baseline window before it?

``shifts`` is pure; ``check_drift`` reads the rollups, opens and closes ``DriftAlarm`` rows, and
logs each change (a WARNING when an alarm opens, an INFO line when it closes). /metrics exports
the open alarms as ``loupe_drift_alarm``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from .models import DriftAlarm, HourlyRollup
from .rollups import HOUR, floor_hour

log = logging.getLogger(__name__)


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


def windows(now: datetime) -> Windows:
    """The recent window is the last LOUPE_DRIFT_RECENT_HOURS hours up to the current one; the
    baseline the LOUPE_DRIFT_BASELINE_HOURS before it."""
    end = floor_hour(now) + HOUR
    recent_start = end - timedelta(hours=settings.LOUPE_DRIFT_RECENT_HOURS)
    return Windows(recent_start, recent_start - timedelta(hours=settings.LOUPE_DRIFT_BASELINE_HOURS), end)


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


def class_counts(project_id: int, start: datetime, end: datetime) -> dict[str, float]:
    rows = (HourlyRollup.objects.filter(project_id=project_id, metric="predictions", hour__gte=start, hour__lt=end)
            .values("key").annotate(n=Sum("value")))
    return {row["key"]: row["n"] for row in rows}


def current_shifts(project_id: int, *, now: datetime | None = None) -> tuple[Windows, list[Shift]]:
    span = windows(now or timezone.now())
    baseline = class_counts(project_id, span.baseline_start, span.recent_start)
    recent = class_counts(project_id, span.recent_start, span.end)
    return span, shifts(baseline, recent, band=settings.LOUPE_DRIFT_BAND,
                        min_predictions=settings.LOUPE_DRIFT_MIN_PREDICTIONS)


def check_drift(*, now: datetime | None = None) -> list[DriftAlarm]:
    """Open an alarm for each class newly out of its band, refresh the open ones, close the rest.

    Returns the alarms opened by this check.
    """
    now = now or timezone.now()
    span = windows(now)
    projects = set(HourlyRollup.objects.filter(metric="predictions", hour__gte=span.baseline_start, hour__lt=span.end)
                   .values_list("project_id", flat=True).distinct())
    projects |= set(DriftAlarm.objects.filter(ended_at__isnull=True).values_list("project_id", flat=True))
    opened = []
    for project_id in sorted(projects):
        opened += _update_alarms(project_id, current_shifts(project_id, now=now)[1], now)
    return opened


def _update_alarms(project_id: int, found: list[Shift], now: datetime) -> list[DriftAlarm]:
    opened = []
    with transaction.atomic():
        open_alarms = {a.label: a for a in DriftAlarm.objects.select_for_update().filter(project_id=project_id,
                                                                                          ended_at__isnull=True)}
        for shift in found:
            fields = {"baseline_share": shift.baseline_share, "recent_share": shift.recent_share,
                      "recent_predictions": shift.recent_total, "band": settings.LOUPE_DRIFT_BAND, "checked_at": now}
            alarm = open_alarms.pop(shift.label, None)
            if alarm is not None:
                DriftAlarm.objects.filter(pk=alarm.pk).update(**fields)
                continue
            opened.append(DriftAlarm.objects.create(project_id=project_id, label=shift.label, started_at=now, **fields))
            log.warning("drift alarm: project %s class %r has %.1f%% of the predictions in the last %s h against "
                        "%.1f%% in the %s h before (band ±%.1f points)", project_id, shift.label,
                        100 * shift.recent_share, settings.LOUPE_DRIFT_RECENT_HOURS, 100 * shift.baseline_share,
                        settings.LOUPE_DRIFT_BASELINE_HOURS, 100 * settings.LOUPE_DRIFT_BAND)
        for alarm in open_alarms.values():
            DriftAlarm.objects.filter(pk=alarm.pk).update(ended_at=now, checked_at=now)
            log.info("drift alarm closed: project %s class %r is back within its band", project_id, alarm.label)
    return opened
