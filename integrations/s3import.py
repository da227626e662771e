"""Import every image under an S3 prefix, resumably and without importing anything twice.

- Listing is paginated (``list_objects_v2``) and resumes after the last key handled
  (``S3Import.continuation``); keys come in S3's lexicographic order.
- Each object is streamed (at most ``LOUPE_MAX_UPLOAD_BYTES``) through the same intake as an
  upload. Its item, its :class:`ImportedObject` row and the job's counters are written in one
  transaction, so a crash at any point leaves each object either fully imported or not at all,
  and a rerun picks up where it stopped: every object is imported once.
- Skipped: an object the project imported before with the same key and ETag (``skipped``), and
  one whose picture the project already has (content hash; ``duplicate``, pointing at that item).
- A failure (not an image, too big, deleted meanwhile, access denied) is recorded with its reason
  and the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from classify import pipeline, services
from classify.backends import aws
from classify.images import ImageRejected
from classify.models import Item, Project

from .confine import parse_s3
from .models import ImportedObject, S3Import

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
PAGE_SIZE = 1000
STALLED_AFTER_SECONDS = 300
State = S3Import.State
Outcome = ImportedObject.Outcome


class ImportBusy(Exception):
    """Another runner holds this import (its heartbeat is recent)."""


def start_import(*, project: Project, source: str, user=None) -> S3Import:
    """The unfinished import of this source if there is one (it resumes), else a new one."""
    bucket, prefix = parse_s3(source)
    source = f"s3://{bucket}/{prefix}".rstrip("/")
    unfinished = S3Import.objects.filter(project=project, source=source).exclude(state=State.DONE).first()
    if unfinished is not None:
        S3Import.objects.filter(pk=unfinished.pk, state=State.FAILED).update(state=State.QUEUED, error="")
        unfinished.refresh_from_db()
        return unfinished
    return S3Import.objects.create(project=project, source=source, created_by=user)


def claim(job_id: int) -> S3Import:
    """Take the job for this runner: queued, failed, or running with a stale heartbeat."""
    now = timezone.now()
    stale = now - timedelta(seconds=STALLED_AFTER_SECONDS)
    taken = (S3Import.objects.filter(pk=job_id, state__in=[State.QUEUED, State.FAILED])
             | S3Import.objects.filter(pk=job_id, state=State.RUNNING, heartbeat_at__lt=stale)
             ).update(state=State.RUNNING, heartbeat_at=now, error="")
    job = S3Import.objects.select_related("project", "created_by").get(pk=job_id)
    if not taken:
        raise ImportBusy(f"import #{job.pk} is {job.get_state_display().lower()}")
    return job


def run(job_id: int, *, on_progress: Callable[[S3Import], None] | None = None) -> S3Import:
    """List and import everything of a claimed-or-claimable job; returns the finished job.

    Stops (state ``failed`` with the error) only when listing itself fails (bucket missing, no
    access); a per-object problem is recorded on that object. Raising anything else (a crash)
    leaves the job to be resumed.
    """
    try:
        job = claim(job_id)
    except ImportBusy:
        return S3Import.objects.get(pk=job_id)
    bucket, prefix = parse_s3(job.source)
    client = aws.client("s3")
    try:
        for obj in list_objects(client, bucket, prefix, job):
            import_object(job, client, bucket, obj)
            if on_progress is not None:
                job.refresh_from_db()
                on_progress(job)
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError  # boto3 is loaded lazily

        if not isinstance(exc, (BotoCoreError, ClientError)):
            raise
        log.warning("import %s: listing %s failed: %s", job.pk, job.source, exc)
        S3Import.objects.filter(pk=job.pk).update(state=State.FAILED, error=f"Listing failed: {exc}"[:500])
    else:
        S3Import.objects.filter(pk=job.pk).update(state=State.DONE, finished_at=timezone.now())
    job.refresh_from_db()
    return job


def list_objects(client, bucket: str, prefix: str, job: S3Import) -> Iterator[dict]:
    """Image objects under the prefix, page by page, after the job's last handled key."""
    folder = f"{prefix}/" if prefix else ""
    params = {"Bucket": bucket, "Prefix": folder, "MaxKeys": PAGE_SIZE}
    if job.continuation:
        params["StartAfter"] = job.continuation
    while True:
        page = client.list_objects_v2(**params)
        objects = [obj for obj in page.get("Contents", []) if is_image_key(obj["Key"])]
        # Everything after the last handled key is unhandled: listed = handled + this page.
        S3Import.objects.filter(pk=job.pk).update(
            listed=F("imported") + F("duplicates") + F("skipped") + F("failed") + len(objects),
            heartbeat_at=timezone.now(), listing_done=not page.get("IsTruncated"))
        yield from objects
        if not page.get("IsTruncated"):
            return
        params["ContinuationToken"] = page["NextContinuationToken"]
        params.pop("StartAfter", None)


def is_image_key(key: str) -> bool:
    return not key.endswith("/") and PurePosixPath(key).suffix.lower() in IMAGE_SUFFIXES


def import_object(job: S3Import, client, bucket: str, obj: dict) -> str:
    """Import one listed object (or record why not) and advance the job, atomically."""
    key, etag, size = obj["Key"], obj.get("ETag", "").strip('"'), obj.get("Size", 0)
    row = ImportedObject(project=job.project, s3_import=job, bucket=bucket, key=key, etag=etag, size=size)
    earlier = ImportedObject.objects.filter(project=job.project, bucket=bucket, key=key, etag=etag,
                                            outcome__in=[Outcome.IMPORTED, Outcome.DUPLICATE]).first()
    if earlier is not None:
        row.outcome, row.item_id, row.reason = Outcome.SKIPPED, earlier.item_id, f"Imported by import #{earlier.s3_import_id}."
        return _save(job, row)
    try:
        data = fetch(client, bucket, key, size)
        with transaction.atomic():
            row.item, created = ingest_if_new(job, data, PurePosixPath(key).name)
            row.outcome = Outcome.IMPORTED if created else Outcome.DUPLICATE
            row.reason = "" if created else f"The project has this picture already (item #{row.item.pk})."
            return _save(job, row)
    except ImageRejected as exc:
        row.outcome, row.reason = Outcome.FAILED, str(exc)[:500]
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError  # boto3 is loaded lazily

        if not isinstance(exc, (BotoCoreError, ClientError)):
            raise
        row.outcome, row.reason = Outcome.FAILED, f"Could not read the object: {exc}"[:500]
    return _save(job, row)


def fetch(client, bucket: str, key: str, size: int) -> bytes:
    """The object's bytes, refusing (before downloading) anything over the upload limit."""
    services.check_upload_size(size)
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    data = body.read(settings.LOUPE_MAX_UPLOAD_BYTES + 1)
    body.close()
    services.check_upload_size(len(data))
    return data


def ingest_if_new(job: S3Import, data: bytes, filename: str) -> tuple[Item, bool]:
    """(item, True) for a new picture; (the project's existing item, False) for one it has."""
    prepared = pipeline.preprocess(data, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS)
    existing = Item.objects.filter(project=job.project, sha256=prepared.sha256).order_by("pk").first()
    if existing is not None:
        return existing, False
    return services.ingest_upload(project=job.project, data=data, filename=filename, uploaded_by=job.created_by), True


COUNTERS = {Outcome.IMPORTED: "imported", Outcome.DUPLICATE: "duplicates", Outcome.SKIPPED: "skipped",
            Outcome.FAILED: "failed"}


def _save(job: S3Import, row: ImportedObject) -> str:
    """Record the object and move the job past it, in one transaction."""
    with transaction.atomic():
        row.save()
        S3Import.objects.filter(pk=job.pk).update(**{COUNTERS[row.outcome]: F(COUNTERS[row.outcome]) + 1},
                                                  continuation=row.key, heartbeat_at=timezone.now())
    return row.outcome


def stalled_imports() -> list[int]:
    """Imports whose runner died: queued or running without a heartbeat for a while."""
    stale = timezone.now() - timedelta(seconds=STALLED_AFTER_SECONDS)
    return list(S3Import.objects.filter(state__in=[State.QUEUED, State.RUNNING])
                .exclude(heartbeat_at__gte=stale).exclude(created_at__gte=stale).values_list("pk", flat=True))
