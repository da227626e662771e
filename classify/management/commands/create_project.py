from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from classify import backends
from classify.backends.imagenet import describe_mapping
from classify.services import projects


class Command(BaseCommand):
    help = "Create a project with its classes (an unknown/other class is always added)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--labels", required=True, help="Comma-separated class names, e.g. cat,dog,bird")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug)")
        parser.add_argument("--backend", default="", help="Backend name (default: LOUPE_DEFAULT_BACKEND)")
        parser.add_argument("--admin", default="", help="Username to make the project's admin")

    def handle(self, *args, slug: str, labels: str, name: str, backend: str, admin: str, **options) -> None:
        if backend and backend not in backends.available():
            raise CommandError(f"unknown backend {backend!r}; installed: {', '.join(backends.available())}")
        user = None
        if admin:
            user = get_user_model().objects.filter(username=admin).first()
            if user is None:
                raise CommandError(f"no user called {admin!r}")
        try:
            project = projects.create_project(
                slug=slug, name=name, labels=labels.split(","), backend=backend, created_by=user
            )
        except (ValueError, IntegrityError) as exc:
            raise CommandError(f"could not create {slug!r}: {exc}") from None
        names = ", ".join(project.labels.values_list("name", flat=True))
        self.stdout.write(self.style.SUCCESS(f"Created project {project.slug} ({project.backend}): {names}"))
        if project.backend == "local":
            self.report_mappings(project)

    def report_mappings(self, project) -> None:
        """Each class's suggested ImageNet classes, with the ones that got none called out."""
        self.stdout.write("ImageNet classes suggested for the local model (change them in the admin):")
        for label in project.labels.filter(is_unknown=False):
            mapping = describe_mapping(label.name, label.mappings.get("local", []))
            line = f"  {label.name}: {mapping.hint}"
            self.stdout.write(self.style.WARNING(line) if mapping.coverage != "kinds" else line)
        missing = [label.name for label in project.labels.filter(is_unknown=False) if not label.mappings.get("local")]
        if missing:
            self.stderr.write(self.style.ERROR(
                f"No ImageNet mapping for {', '.join(missing)}: these classes score 0 until you choose ImageNet "
                "classes for them in the admin or add exemplars (see the project page)."))
