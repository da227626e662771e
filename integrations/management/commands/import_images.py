from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from classify.images import ImageRejected
from classify.models import Project
from classify.services import classification, intake
from integrations import s3import
from integrations.models import ImportedObject

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class Command(BaseCommand):
    help = ("Import every image in a folder (recursively) or under an s3://bucket/prefix into a project and "
            "queue it for classification. An S3 import skips what the project imported before and resumes "
            "where an interrupted run stopped.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", help="A folder, or s3://bucket/prefix")
        parser.add_argument("--project", required=True, help="Project slug")
        parser.add_argument("--user", default="", help="Record this username as the uploader")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--force", action="store_true",
                            help="S3: take over an import that looks running (its process was killed)")

    def handle(self, *args, source: str, project: str, user: str, no_progress: bool, force: bool, **options) -> None:
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"no project {project!r}")
        uploader = get_user_model().objects.filter(username=user).first() if user else None
        if source.startswith("s3://"):
            self.stdout.write(classification.estimate_per_item(target))  # the number is known once listed
            self.import_s3(target, source, uploader, progress=not no_progress, force=force)
        else:
            self.import_folder(target, Path(source), uploader, progress=not no_progress)

    def import_folder(self, target: Project, root: Path, uploader, *, progress: bool) -> None:
        if not root.is_dir():
            raise CommandError(f"{root} is not a folder")
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        self.stdout.write(classification.estimate_per_item(target, count=len(paths)))
        imported, rejected = 0, []
        for path in tqdm(paths, unit="img", disable=not progress, desc=f"importing into {target.slug}"):
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

    def import_s3(self, target: Project, source: str, uploader, *, progress: bool, force: bool) -> None:
        try:
            job = s3import.start_import(project=target, source=source, user=uploader)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if job.processed:
            self.stdout.write(f"Resuming import #{job.pk}: {job.processed} object(s) handled already.")
        bar = tqdm(unit="obj", disable=not progress, desc=f"importing {job.source}", initial=job.processed,
                   file=self.stderr)

        def show(current) -> None:
            bar.total = current.listed if current.listing_done else max(current.listed, current.processed + 1)
            bar.update(current.processed - bar.n)
            bar.set_postfix(new=current.imported, dup=current.duplicates, skipped=current.skipped,
                            failed=current.failed, refresh=False)

        try:
            job = s3import.run(job.pk, force=force, on_progress=show)
        except s3import.ImportBusy as exc:
            raise CommandError(f"{exc} Rerun with --force if its process was killed.") from None
        finally:
            bar.close()
        for row in job.imported_objects.filter(outcome=ImportedObject.Outcome.FAILED):
            self.stderr.write(f"failed s3://{row.bucket}/{row.key}: {row.reason}")
        summary = (f"Import #{job.pk} {job.get_state_display().lower()}: {job.listed} listed, {job.imported} imported, "
                   f"{job.duplicates} duplicate(s), {job.skipped} imported before, {job.failed} failed.")
        if job.state != job.State.DONE:
            raise CommandError(f"{summary} {job.error}")
        self.stdout.write(self.style.SUCCESS(summary))
