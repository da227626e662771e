"""What the dashboard and /metrics read instead of scanning items: hourly rollups, drift alarms,
status snapshots (worker heartbeats are classify's ``WorkerHeartbeat``, one row per worker).

``HourlyRollup`` is one long table of numbers per project, hour, metric and key (a class, a
backend or a reviewer id); a histogram metric keeps its counts per bin in one row. A periodic
task (``dashboard.refresh_rollups``) recomputes
the recent hours from the item, prediction and decision tables; every plot sums these rows.
"""

from __future__ import annotations

from django.db import models


class HourlyRollup(models.Model):
    """One number, ``value``, of ``metric`` for ``key`` in one hour; for a histogram metric
    (``dashboard.bins.BINNED``) ``counts`` holds the count per bin and ``value`` their total.

    The metrics and their keys are listed in ``dashboard.rollups``. One row per histogram, not
    one per bin, keeps a 30-day window of a 10-class project to thousands of rows.
    """

    project = models.ForeignKey("classify.Project", on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField(help_text="Start of the hour (UTC).")
    metric = models.CharField(max_length=24)
    key = models.CharField(max_length=100, blank=True)
    value = models.FloatField(default=0)
    counts = models.JSONField(null=True, blank=True, help_text="Histogram metrics: the count per bin.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "metric", "hour", "key"], name="one_rollup_value"),
        ]
        indexes = [models.Index(fields=["hour"], name="rollup_hour")]

    def __str__(self) -> str:
        return f"{self.metric}[{self.key}] {self.hour:%Y-%m-%d %H}h = {self.value}"


class StatusSnapshot(models.Model):
    """How many of a project's items stood in each status at one hour (the backlog over time;
    the latest also feeds /metrics, so a scrape never counts a million rows)."""

    project = models.ForeignKey("classify.Project", on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    status = models.CharField(max_length=16)
    count = models.PositiveIntegerField(default=0)
    backend_errors = models.PositiveIntegerField(
        default=0, help_text="needs_review only: how many were sent to review because their backend failed.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "hour", "status"], name="one_snapshot_per_status")]


class DriftAlarm(models.Model):
    """A class whose share of predictions in the recent window left the band around its baseline.

    Open while ``ended_at`` is empty; the refresh that finds the share back in the band closes it.
    """

    project = models.ForeignKey("classify.Project", on_delete=models.CASCADE, related_name="+")
    label = models.CharField(max_length=100)
    baseline_share = models.FloatField()
    recent_share = models.FloatField()
    band = models.FloatField(help_text="Allowed distance from the baseline share (0-1).")
    recent_predictions = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    checked_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "label"], condition=models.Q(ended_at__isnull=True),
                                    name="one_open_drift_alarm_per_class"),
        ]

    def __str__(self) -> str:
        return f"drift of {self.label} in {self.project}"

    @property
    def shift(self) -> float:
        return self.recent_share - self.baseline_share


class RefreshLog(models.Model):
    """One run of the rollup refresh: the hours it recomputed and how long it took."""

    started_at = models.DateTimeField()
    since = models.DateTimeField()
    until = models.DateTimeField()
    seconds = models.FloatField()
    rows = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]

