from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction

from classify import backends
from classify.backends.imagenet import describe_mapping
from classify.images import ImageRejected
from classify.retrain.runs import train_from_exemplars
from classify.services import exemplars, intake, projects


class Command(BaseCommand):
    help = "Create a project with its classes (an unknown/other class is always added)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--labels", required=True, help="Comma-separated class names, e.g. cat,dog,bird")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug)")
        parser.add_argument("--backend", default="", help="Backend name (default: LOUPE_DEFAULT_BACKEND)")
        parser.add_argument("--admin", default="", help="Username to make the project's admin")
        parser.add_argument("--exemplars", default=None, type=Path,
                            help="A folder with one sub-folder of example pictures per class (named like the class); "
                                 "with 3 or more per class the first head trains at once")

    def handle(self, *args, slug: str, labels: str, name: str, backend: str, admin: str, exemplars: Path | None,
               **options) -> None:
        if backend and backend not in backends.available():
            raise CommandError(f"unknown backend {backend!r}; installed: {', '.join(backends.available())}")
        user = None
        if admin:
            user = get_user_model().objects.filter(username=admin).first()
            if user is None:
                raise CommandError(f"no user called {admin!r}")
        folders = self.exemplar_folders(exemplars, labels.split(",")) if exemplars is not None else {}
        try:
            with transaction.atomic():
                project = projects.create_project(
                    slug=slug, name=name, labels=labels.split(","), backend=backend, created_by=user
                )
                added = self.add_exemplars(project, folders)
                run = train_from_exemplars(project) if added else None
        except (ValueError, IntegrityError) as exc:
            raise CommandError(f"could not create {slug!r}: {exc}") from None
        names = ", ".join(project.labels.values_list("name", flat=True))
        self.stdout.write(self.style.SUCCESS(f"Created project {project.slug} ({project.backend}): {names}"))
        if exemplars is not None:
            self.stdout.write(f"{added} exemplars added. " + (
                f"Training run #{run.pk} trains the first head on them now (see the Models page)." if run else
                "Fewer than 3 per class: the first head trains once every class has 3 labels."))
        if project.backend == "local":
            self.report_mappings(project)

    def exemplar_folders(self, root: Path, labels: list[str]) -> dict[str, Path]:
        """Sub-folder per class; one naming no class stops everything before anything is made."""
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        names = {label.strip() for label in labels if label.strip()}
        folders = {path.name: path for path in sorted(root.iterdir()) if path.is_dir()}
        strangers = sorted(set(folders) - names)
        if strangers:
            raise CommandError(f"{root}: sub-folder(s) {', '.join(strangers)} name no class of {', '.join(sorted(names))}")
        return folders

    def add_exemplars(self, project, folders: dict[str, Path]) -> int:
        added = 0
        for name, folder in folders.items():
            label = project.labels.get(name=name)
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                try:
                    intake.check_upload_size(path.stat().st_size)
                    exemplars.add_exemplar(label=label, data=path.read_bytes())
                except ImageRejected as exc:
                    self.stderr.write(f"{name}/{path.relative_to(folder)}: refused: {exc}")
                else:
                    added += 1
        return added

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
