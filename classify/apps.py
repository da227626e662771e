from celery import current_app
from django.apps import AppConfig


class ClassifyConfig(AppConfig):
    name = "classify"
    verbose_name = "Classification"

    def ready(self) -> None:
        # Register the tasks in every process, so ``classify.enqueue`` can publish them by name.
        from . import tasks  # noqa: F401

        # Every Celery worker records heartbeats; in a web process the step is registered, never run.
        from .heartbeat import Heartbeat

        current_app.steps["worker"].add(Heartbeat)
