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

        # On SQLite a migration can drop the count triggers with the table it rebuilds: put them back.
        from django.db.models.signals import post_migrate

        from .sqlite_triggers import on_post_migrate

        post_migrate.connect(on_post_migrate, sender=self, dispatch_uid="classify.restore_count_triggers")
