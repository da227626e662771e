"""Writes: a Celery worker's heartbeat row."""

from __future__ import annotations

from django.utils import timezone

from dashboard.models import WorkerHeartbeat


def beat(*, name: str, kind: str = "worker") -> None:
    """Record that ``name`` is alive now."""
    now = timezone.now()
    if not WorkerHeartbeat.objects.filter(name=name).update(seen_at=now, kind=kind):
        WorkerHeartbeat.objects.get_or_create(name=name, defaults={"kind": kind, "seen_at": now, "started_at": now})


def started(*, name: str, kind: str = "worker") -> None:
    """A worker (re)started under ``name``: its heartbeat starts over."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(name=name, defaults={"kind": kind, "seen_at": now, "started_at": now})
