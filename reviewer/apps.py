from django.apps import AppConfig


class ReviewerConfig(AppConfig):
    name = "reviewer"
    verbose_name = "Review"

    def ready(self) -> None:
        # Register the tasks in every process, so ``classify.enqueue`` can publish them by name.
        from . import tasks  # noqa: F401
