from django.apps import AppConfig


class ClassifyConfig(AppConfig):
    name = "classify"
    verbose_name = "Classification"

    def ready(self) -> None:
        # Register the tasks in every process, so ``classify.enqueue`` can publish them by name.
        from . import tasks  # noqa: F401
