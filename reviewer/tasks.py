"""Celery tasks for the reviewer app: thin wrappers that take ids and call one service."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from .export.runs import execute_export
from .models import Export


@shared_task(name="reviewer.run_export", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 60)
def run_export(export_id: int) -> None:
    export = Export.objects.select_related("project").filter(pk=export_id).first()
    if export is not None and export.state == Export.State.QUEUED:
        execute_export(export=export)


@shared_task(name="reviewer.sweep_exports")
def sweep_exports() -> int:
    """An export whose worker died stays "running" forever otherwise: after the task's time limit
    it is marked failed with the reason (its target never got a partial manifest)."""
    cutoff = timezone.now() - timedelta(seconds=run_export.time_limit + 300)
    return Export.objects.filter(state__in=[Export.State.QUEUED, Export.State.RUNNING], created_at__lt=cutoff).update(
        state=Export.State.FAILED, error="The export did not finish (its worker stopped); start it again.",
        finished_at=timezone.now(),
    )
