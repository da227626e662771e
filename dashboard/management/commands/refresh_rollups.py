"""manage.py refresh_rollups [--days N]: recompute the dashboard's hourly rollups for a range."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from dashboard.services import drift, rollups


class Command(BaseCommand):
    help = ("Recompute the hourly rollups of the last N days (after an upgrade, a restore, or to pick up old "
            "changes), then snapshot the backlog and check drift as the periodic task does.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=1, help="How many days back to recompute (default 1).")

    def handle(self, *args, days: int, **options):
        now = timezone.now()
        result = rollups.refresh_rollups(since=now - timedelta(days=days))
        rollups.take_status_snapshot(now=now)
        opened = drift.check_drift(now=now)
        self.stdout.write(f"{result.rows} rollup values for {result.since:%Y-%m-%d %H:00}..{result.until:%Y-%m-%d %H:00} "
                          f"UTC in {result.seconds:.2f} s; {len(opened)} new drift alarm(s)")
