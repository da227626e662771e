from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard and metrics"

    def ready(self) -> None:
        # Celery signal receivers: retries are counted where they happen (the worker).
        from . import signals  # noqa: F401
