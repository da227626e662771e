"""Drift reads: the baseline and recent windows now, and the classes whose share left its band.

``dashboard.drift`` holds the arithmetic; these read its inputs from the rollups with the
LOUPE_DRIFT_* settings. The class-shares plot and the drift-alarm service both use them.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from dashboard import drift
from dashboard.models import HourlyRollup


def drift_windows(now: datetime) -> drift.Windows:
    return drift.windows(now, recent_hours=settings.LOUPE_DRIFT_RECENT_HOURS,
                         baseline_hours=settings.LOUPE_DRIFT_BASELINE_HOURS)


def class_counts(project_id: int, start: datetime, end: datetime) -> dict[str, float]:
    rows = (HourlyRollup.objects.filter(project_id=project_id, metric="predictions", hour__gte=start, hour__lt=end)
            .values("key").annotate(n=Sum("value")))
    return {row["key"]: row["n"] for row in rows}


def current_shifts(project_id: int, *, now: datetime | None = None) -> tuple[drift.Windows, list[drift.Shift]]:
    """The drift windows now and the classes whose share is outside the band (LOUPE_DRIFT_*)."""
    span = drift_windows(now or timezone.now())
    baseline = class_counts(project_id, span.baseline_start, span.recent_start)
    recent = class_counts(project_id, span.recent_start, span.end)
    return span, drift.shifts(baseline, recent, band=settings.LOUPE_DRIFT_BAND,
                              min_predictions=settings.LOUPE_DRIFT_MIN_PREDICTIONS)
