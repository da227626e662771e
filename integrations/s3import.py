"""Import every image under an S3 prefix, resumably and without importing anything twice.

- Listing is paginated (``list_objects_v2``) and resumes after the last key handled
  (``S3Import.continuation``); keys come in S3's lexicographic order.
- Each object is streamed (at most ``LOUPE_MAX_UPLOAD_BYTES``) through the same intake as an
  upload. A few objects at a time (``CHUNK``), downloaded in parallel, are imported together:
  their items, their :class:`ImportedObject` rows and the job's counters and resume point are
  written in one transaction, so a crash at any point leaves each object either fully imported
  or not at all, and a rerun picks up where it stopped: every object is imported once.
- Skipped: an object the project imported before with the same key and ETag (``skipped``), and
  one whose picture the project already has (content hash; ``duplicate``, pointing at that item).
- A failure (not an image, too big, deleted meanwhile, access denied) is recorded with its reason
  and the batch goes on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import islice
from pathlib import PurePosixPath

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from classify import aws
from classify.images import ImageRejected
from classify.models import Item, Project
from classify.services import intake

from .models import ImportedObject, S3Import

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
PAGE_SIZE = 1000
CHUNK = 16  # objects per transaction (and held in memory at once: at most 16 x LOUPE_MAX_UPLOAD_BYTES)
FETCH_THREADS = 8
STALLED_AFTER_SECONDS = 300
State = S3Import.State
Outcome = ImportedObject.Outcome


class ImportBusy(Exception):
    """Another runner holds this import (its heartbeat is recent)."""


def start_import(*, project: Project, source: str, user=None) -> S3Import:
    """The unfinished import of this source if there is one (it resumes), else a new one."""
    bucket, prefix = aws.parse_s3_uri(source, what="import source", bucket_rules=True)
    source = f"s3://{bucket}/{prefix.strip('/')}".rstrip("/")
    unfinished = S3Import.objects.filter(project=project, source=source).exclude(state=State.DONE).first()
    if unfinished is not None:
        S3Import.objects.filter(pk=unfinished.pk, state=State.FAILED).update(state=State.QUEUED, error="")
        unfinished.refresh_from_db()
        return unfinished
    return S3Import.objects.create(project=project, source=source, created_by=user)


def claim(job_id: int, *, force: bool = False) -> S3Import:
    """Take the job for this runner: queued, failed, or running without progress for
    ``STALLED_AFTER_SECONDS`` (its runner was killed); ``force`` takes a running one at once."""
    now = timezone.now()
    stale = now if force else now - timedelta(seconds=STALLED_AFTER_SECONDS)
    taken = (S3Import.objects.filter(pk=job_id, state__in=[State.QUEUED, State.FAILED])
             | S3Import.objects.filter(pk=job_id, state=State.RUNNING, heartbeat_at__lte=stale)
             ).update(state=State.RUNNING, heartbeat_at=now, error="")
    job = S3Import.objects.select_related("project", "created_by").get(pk=job_id)
    if not taken:
        raise ImportBusy(f"Import #{job.pk} is {job.get_state_display().lower()}.")
    return job


def run(job_id: int, *, force: bool = False, on_progress: Callable[[S3Import], None] | None = None) -> S3Import:
    """List and import everything of a job (claiming it first); returns the job as it ended.

    Ends ``failed`` with the error only when listing itself fails (no such bucket, no access); a
    per-object problem is recorded on that object and the batch goes on. An interruption (an
    exception, Ctrl-C) marks the job failed and re-raises; running it again resumes it.
    """
    job = claim(job_id, force=force)
    bucket, prefix = aws.parse_s3_uri(job.source)
    prefix = prefix.strip("/")
    try:
        client = aws.client("s3")
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            for chunk in chunks(list_objects(client, bucket, prefix, job), CHUNK):
                import_chunk(job, client, pool, bucket, chunk)
                if on_progress is not None:
                    job.refresh_from_db()
                    on_progress(job)
    except BaseException as exc:
        from botocore.exceptions import BotoCoreError, ClientError  # boto3 is loaded lazily

        listing_failed = isinstance(exc, (BotoCoreError, ClientError))
        error = f"Listing failed: {exc}" if listing_failed else f"Interrupted ({exc.__class__.__name__}: {exc})"
        S3Import.objects.filter(pk=job.pk).update(state=State.FAILED, error=error[:500])
        if not listing_failed:
            raise
        log.warning("import %s: %s", job.pk, error)
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
    listed = job.processed  # everything after the last handled key is still to do
    while True:
        page = client.list_objects_v2(**params)
        objects = [obj for obj in page.get("Contents", []) if is_image_key(obj["Key"])]
        listed += len(objects)
        S3Import.objects.filter(pk=job.pk).update(listed=listed, heartbeat_at=timezone.now(),
                                                  listing_done=not page.get("IsTruncated"))
        yield from objects
        if not page.get("IsTruncated"):
            return
        params["ContinuationToken"] = page["NextContinuationToken"]
        params.pop("StartAfter", None)


def chunks(iterable, size: int) -> Iterator[list]:
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk


def is_image_key(key: str) -> bool:
    return not key.endswith("/") and PurePosixPath(key).suffix.lower() in IMAGE_SUFFIXES


def import_chunk(job: S3Import, client, pool: ThreadPoolExecutor, bucket: str, objects: Sequence[dict]) -> None:
    """Import a few listed objects (or record why not) and advance the job past them, in one
    transaction: after a crash each of them is either fully recorded or untouched.

    The downloads run in parallel (S3 latency dominates); intake runs one object at a time.
    """
    rows = [ImportedObject(project=job.project, s3_import=job, bucket=bucket, key=obj["Key"],
                           etag=obj.get("ETag", "").strip('"'), size=obj.get("Size", 0)) for obj in objects]
    earlier = {(row.key, row.etag): row for row in ImportedObject.objects.filter(
        project=job.project, bucket=bucket, key__in=[row.key for row in rows],
        outcome__in=[Outcome.IMPORTED, Outcome.DUPLICATE])}
    for row in rows:
        if (before := earlier.get((row.key, row.etag))) is not None:
            row.outcome, row.item_id = Outcome.SKIPPED, before.item_id
            row.reason = f"Imported by import #{before.s3_import_id}."
    todo = [row for row in rows if not row.outcome]
    downloads = pool.map(lambda row: fetch(client, row.bucket, row.key, row.size), todo)
    with transaction.atomic():
        for row, data in zip(todo, downloads, strict=True):
            take_in(job, row, data)
        ImportedObject.objects.bulk_create(rows)
        counts = Counter(COUNTERS[row.outcome] for row in rows)
        S3Import.objects.filter(pk=job.pk).update(**{name: F(name) + n for name, n in counts.items()},
                                                  continuation=rows[-1].key, heartbeat_at=timezone.now())


def take_in(job: S3Import, row: ImportedObject, data: bytes | str) -> None:
    """Send downloaded bytes through intake and note the outcome on the row (``data`` is the
    reason as text when the download failed)."""
    if isinstance(data, str):
        row.outcome, row.reason = Outcome.FAILED, data[:500]
        return
    try:
        row.item, created = ingest_if_new(job, data, PurePosixPath(row.key).name)
    except ImageRejected as exc:
        row.outcome, row.reason = Outcome.FAILED, str(exc)[:500]
        return
    row.outcome = Outcome.IMPORTED if created else Outcome.DUPLICATE
    row.reason = "" if created else f"The project has this picture already (item #{row.item.pk})."


def fetch(client, bucket: str, key: str, size: int) -> bytes | str:
    """The object's bytes, or why not as text: too big (refused before downloading), deleted
    since the listing, access denied."""
    from botocore.exceptions import BotoCoreError, ClientError  # boto3 is loaded lazily

    try:
        intake.check_upload_size(size)
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        data = body.read(settings.LOUPE_MAX_UPLOAD_BYTES + 1)
        body.close()
        intake.check_upload_size(len(data))
    except ImageRejected as exc:
        return str(exc)
    except (BotoCoreError, ClientError) as exc:
        return f"Could not read the object: {exc}"
    return data


def ingest_if_new(job: S3Import, data: bytes, filename: str) -> tuple[Item, bool]:
    """(item, True) for a new picture; (the project's existing item, False) for one it has."""
    prepared = intake.prepare_upload(data)
    existing = Item.objects.filter(project=job.project, sha256=prepared.sha256).order_by("pk").first()
    if existing is not None:
        return existing, False
    return intake.store_upload(project=job.project, prepared=prepared, data=data, filename=filename,
                               uploaded_by=job.created_by), True


COUNTERS = {Outcome.IMPORTED: "imported", Outcome.DUPLICATE: "duplicates", Outcome.SKIPPED: "skipped",
            Outcome.FAILED: "failed"}


def stalled_imports() -> list[int]:
    """Imports whose runner died: queued or running without a heartbeat for a while."""
    stale = timezone.now() - timedelta(seconds=STALLED_AFTER_SECONDS)
    return list(S3Import.objects.filter(state__in=[State.QUEUED, State.RUNNING])
                .exclude(heartbeat_at__gte=stale).exclude(created_at__gte=stale).values_list("pk", flat=True))
