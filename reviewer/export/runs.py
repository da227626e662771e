"""An export as a job: queued by a person or a command, run by the worker, its outcome on the row.

Claimed with a conditional UPDATE, so a redelivered task cannot run it twice.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from classify import aws
from classify.enqueue import enqueue
from classify.models import Project
from reviewer.models import Export
from reviewer.selectors import exportable_items

from .publish import images, publish_s3, write_local_zip
from .rules import ExportFailed, Options
from .split import build

log = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 1.0


def default_source_prefix(project: Project) -> str:
    return aws.default_s3_prefix(project)


def start_export(*, project: Project, user, target: str, options: dict) -> Export:
    """Queue an export (the worker runs it after commit). An S3 target must lie in the project's own
    prefix (``aws.S3LocationRefused`` otherwise, nothing queued)."""
    _confine(project, target)
    export = Export.objects.create(project=project, target=target, options=options, created_by=user)
    transaction.on_commit(lambda: enqueue("reviewer.run_export", export.pk))
    return export


def execute_export(*, export: Export) -> Export:
    """Run a queued export and keep its counts, report and file (or why it failed) on the row.

    Claimed with a conditional UPDATE, so a redelivered task cannot run it twice. To an S3
    target the source-refs point at the target itself.
    """
    if not Export.objects.filter(pk=export.pk, state=Export.State.QUEUED).update(state=Export.State.RUNNING):
        export.refresh_from_db()
        return export
    rows = Export.objects.filter(pk=export.pk)
    try:
        _confine(export.project, export.target)  # again: a row may have been written some other way
    except aws.S3LocationRefused as exc:
        rows.update(state=Export.State.FAILED, error=str(exc)[:500], finished_at=timezone.now())
        export.refresh_from_db()
        return export
    options = Options.from_dict(export.options)
    if export.target.startswith("s3://"):
        options = dataclasses.replace(options, source_prefix=export.target)
    elif not options.source_prefix:
        options = dataclasses.replace(options, source_prefix=default_source_prefix(export.project))
    rows.update(total=exportable_items(export.project, include_auto=options.include_auto).count())
    try:
        with tempfile.TemporaryDirectory(prefix="loupe-export-") as folder:
            paths, work, counts, report = build(export.project, options, Path(folder), progress=_progress(rows))
            counts["published"] = _deliver(export, options, paths, work, report, Path(folder))
    except ExportFailed as exc:
        rows.update(state=Export.State.FAILED, error=str(exc)[:500], report=exc.report, counts=exc.counts,
                    finished_at=timezone.now())
    except Exception as exc:
        log.exception("export %s failed", export.pk)
        rows.update(state=Export.State.FAILED, error=_failure(exc)[:500], finished_at=timezone.now())
    else:
        rows.update(state=Export.State.DONE, progress=counts["examined"], counts=counts, report=report,
                    file=export.file.name or "",
                    finished_at=timezone.now())
    export.refresh_from_db()
    return export


def _progress(rows) -> Callable[[int], None]:
    """Keep the items examined so far on the row for the page, at most once per
    ``PROGRESS_EVERY_SECONDS`` (each is a committed UPDATE, a disk flush)."""
    last = -PROGRESS_EVERY_SECONDS

    def report(examined: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
            last = time.monotonic()
            rows.update(progress=examined)

    return report


def _confine(project: Project, target: str) -> None:
    if target.startswith("s3://"):
        aws.confine_s3(target, project=project, what="export location")


def _deliver(export: Export, options: Options, paths: dict, work: Path, report: dict, folder: Path) -> list[str]:
    """Publish to the target; returns where the manifests ended up."""
    image_keys = images(work) if options.copy_images else ()
    if export.target.startswith("s3://"):
        return publish_s3(aws.client("s3"), export.target, paths, image_keys)
    if export.target == Export.DOWNLOAD:
        archive = write_local_zip(folder / "export.zip", paths, image_keys, report)
        with archive.open("rb") as handle:
            export.file.save("export.zip", File(handle), save=False)
        return [export.file.name]
    destination = Path(export.target)
    if destination.is_dir():
        destination = destination / f"loupe-{export.project.slug}-export-{export.pk}.zip"
    return [str(write_local_zip(destination, paths, image_keys, report))]


def _failure(exc: Exception) -> str:
    """A failure as the export page shows it: an AWS error translated (code, advice), else its class and text."""
    from botocore.exceptions import BotoCoreError, ClientError  # botocore loads on first use, as in classify.aws

    if isinstance(exc, (BotoCoreError, ClientError)):
        return str(aws.backend_error(exc, "s3"))
    return f"{exc.__class__.__name__}: {exc}"
