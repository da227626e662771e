from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from classify.images import ImageRejected
from classify.models import Project
from classify.services import intake

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class Command(BaseCommand):
    help = "Import every image in a folder (recursively) into a project and queue it for classification."

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder")
        parser.add_argument("--project", required=True, help="Project slug")
        parser.add_argument("--user", default="", help="Record this username as the uploader")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, folder: str, project: str, user: str, no_progress: bool, **options) -> None:
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"no project {project!r}")
        uploader = get_user_model().objects.filter(username=user).first() if user else None
        root = Path(folder)
        if not root.is_dir():
            raise CommandError(f"{folder} is not a folder")
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        imported, rejected = 0, []
        for path in tqdm(paths, unit="img", disable=no_progress, desc=f"importing into {project}"):
            try:
                intake.check_upload_size(path.stat().st_size)
                intake.ingest_upload(project=target, data=path.read_bytes(), filename=path.name,
                                       uploaded_by=uploader)
                imported += 1
            except ImageRejected as exc:
                rejected.append((path, str(exc)))
        for path, reason in rejected:
            self.stderr.write(f"rejected {path}: {reason}")
        self.stdout.write(self.style.SUCCESS(f"Imported {imported} image(s); {len(rejected)} rejected."))
