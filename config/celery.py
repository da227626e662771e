"""The Celery app. Settings come from Django settings (``CELERY_*``); nothing connects at import."""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("loupe")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()



@app.on_after_finalize.connect
def _schedule_periodic_tasks(sender: Celery, **_kwargs: object) -> None:
    """The sweeper runs under celery beat (or a worker started with -B)."""
    sender.add_periodic_task(
        settings.LOUPE_SWEEP_EVERY_SECONDS, sender.signature("classify.sweep"), name="sweep stuck items"
    )
    sender.add_periodic_task(3600.0, sender.signature("reviewer.sweep_exports"), name="fail dead exports")
    sender.add_periodic_task(
        settings.LOUPE_SWEEP_EVERY_SECONDS, sender.signature("integrations.sweep"), name="sweep integrations"
    )
    sender.add_periodic_task(
        settings.LOUPE_ROLLUP_EVERY_SECONDS, sender.signature("dashboard.refresh_rollups"), name="refresh rollups"
    )
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        sender.add_periodic_task(3600.0, sender.signature("classify.prune_broker"), name="prune broker")
