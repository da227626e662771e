from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (webhooks, S3 import, results to S3)"

    def ready(self) -> None:
        # Register the tasks in every process (the outbox consumer publishes them).
        from . import tasks  # noqa: F401
