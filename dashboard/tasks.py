"""Thin Celery tasks: the periodic rollup refresh (celery beat)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .services import drift, rollups

log = logging.getLogger(__name__)


@shared_task(name="dashboard.refresh_rollups", soft_time_limit=1800, time_limit=1860)
def refresh_rollups() -> None:
    """Recompute the recent hours, snapshot the backlog, check drift (every LOUPE_ROLLUP_EVERY_SECONDS)."""
    now = timezone.now()
    result = rollups.refresh_rollups(since=now - timedelta(hours=settings.LOUPE_ROLLUP_LOOKBACK_HOURS))
    rollups.take_status_snapshot(now=now)
    drift.check_drift(now=now)
    log.info("rollups: %s values for %s..%s in %.2f s", result.rows, result.since, result.until, result.seconds)
