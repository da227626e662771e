"""Writes: drift alarms opened and closed after each rollup refresh.

Each change is logged (a WARNING when an alarm opens, an INFO line when it closes); /metrics
exports the open alarms as ``loupe_drift_alarm``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dashboard.drift import Shift
from dashboard.models import DriftAlarm, HourlyRollup
from dashboard.selectors.shifts import current_shifts, drift_windows

log = logging.getLogger(__name__)


def check_drift(*, now: datetime | None = None) -> list[DriftAlarm]:
    """Open an alarm for each class newly out of its band, refresh the open ones, close the rest.

    Returns the alarms opened by this check.
    """
    now = now or timezone.now()
    span = drift_windows(now)
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
