"""Taking an upload: validate, normalise, store, spot duplicates, then hand it to a worker."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils.text import get_valid_filename

from classify import events, pipeline
from classify.images import ImageRejected, hamming, phash_bands
from classify.models import Item, Project

from .queueing import schedule_classification

log = logging.getLogger(__name__)
Status = Item.Status
NEAR_DUPLICATE_BITS = 4  # at most one differing bit per band: images.PHASH_BANDS has five


def clean_filename(filename: str) -> str:
    """The client's filename reduced to harmless metadata (never used as a storage key)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable() and ch not in "\u202a\u202b\u202c\u202d\u202e")
    try:
        name = get_valid_filename(base)
    except Exception:  # get_valid_filename refuses names like "..": keep none
        return ""
    if len(name) > 255:  # keep the extension, shorten the stem
        stem, dot, suffix = name.rpartition(".")
        name = f"{stem[: 254 - len(suffix)]}.{suffix}" if dot and len(suffix) < 16 else name[:255]
    return name


def human_size(n_bytes: float) -> str:
    if n_bytes < 2**20:
        return f"{n_bytes:,.0f} bytes"
    return f"{n_bytes / 2**20:,.1f} MB".replace(".0 MB", " MB")


def check_upload_size(size: int) -> None:
    if size > settings.LOUPE_MAX_UPLOAD_BYTES:
        raise ImageRejected(f"The file is {human_size(size)}; the limit is {human_size(settings.LOUPE_MAX_UPLOAD_BYTES)}.")


def ingest_upload(*, project: Project, data: bytes, filename: str, uploaded_by=None, idempotency_key: str = "") -> Item:
    """Validate, normalise and store one upload, then hand it to a worker after commit.

    Raises ``images.ImageRejected`` (with the reason to show) before anything is stored when the
    bytes are not a usable image. A decodable image that fails the project's quality checks is
    stored as ``rejected`` with the reasons and never reaches a backend (that settles it: an
    ``item.settled`` event). A picture the project has already seen is linked to its first copy
    (``duplicate_of``); its scores will be reused.

    The stored image is deleted only when the row surely was not committed: a failure while
    committing is checked against the database, and a committed item is returned as stored.
    Raises ``IntegrityError`` when ``idempotency_key`` is already taken (``ingest_upload_once``).
    """
    return store_upload(project=project, prepared=prepare_upload(data), data=data, filename=filename,
                        uploaded_by=uploaded_by, idempotency_key=idempotency_key)


def prepare_upload(data: bytes) -> pipeline.PreparedImage:
    """Check and normalise the bytes (``ImageRejected`` when they are no usable image); stores nothing."""
    check_upload_size(len(data))
    return pipeline.preprocess(data, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS,
                               max_bytes=settings.LOUPE_DECODE_MAX_BYTES)


def store_upload(*, project: Project, prepared: pipeline.PreparedImage, data: bytes, filename: str,
                 uploaded_by=None, idempotency_key: str = "") -> Item:
    """The second half of ``ingest_upload``, for callers that looked at the prepared image first
    (an S3 import skips pictures the project has)."""
    problems = pipeline.check_quality(prepared, rules=project.quality_rules)
    duplicate = Item.objects.filter(project=project, sha256=prepared.sha256).order_by("pk").first()
    item = Item(
        project=project, original_filename=clean_filename(filename), source_format=prepared.format,
        sha256=prepared.sha256, phash=prepared.phash, width=prepared.width, height=prepared.height,
        uploaded_by=uploaded_by, duplicate_of=duplicate, idempotency_key=idempotency_key,
        near_duplicate_of=None if duplicate else find_near_duplicate(project, prepared.phash),
        status=Status.REJECTED if problems else Status.RECEIVED, status_reason=" ".join(problems)[:500],
    )
    item.image.save("upload.jpg", ContentFile(prepared.jpeg), save=False)
    try:
        if project.keep_originals:
            item.original.save(f"original.{prepared.format.lower()}", ContentFile(data), save=False)
        _save_and_schedule(item, classify=not problems)
    except Exception:
        committed = _committed(item)
        if committed is False:
            _delete_files(item)  # nothing half-stored
        if not committed:  # not stored, or unknown: the caller says so (and keeps no row)
            raise
        log.warning("item %s was stored although its transaction reported an error", item.pk, exc_info=True)
    return item


def _save_and_schedule(item: Item, *, classify: bool) -> None:
    with transaction.atomic():
        item.save()
        if classify:
            schedule_classification(item.pk)
        else:
            events.item_settled(item.pk)


def _committed(item: Item) -> bool | None:
    """Whether the row is in the database after an error (one during COMMIT leaves that open),
    asked on a fresh connection; None when the database cannot tell. Then the image is kept:
    an image without a row is harmless, a row without its image is not."""
    if item.pk is None:
        return False
    for _ in range(2):
        try:
            return Item.objects.filter(pk=item.pk).exists()
        except DatabaseError:
            connection.close()  # a dropped connection: the next try opens a new one
    return None


def _delete_files(item: Item) -> None:
    item.image.delete(save=False)
    if item.original:
        item.original.delete(save=False)


def find_by_idempotency_key(*, project: Project, uploaded_by, key: str) -> Item | None:
    return Item.objects.filter(project=project, uploaded_by=uploaded_by, idempotency_key=key).first()


def ingest_upload_once(*, project: Project, data: bytes, filename: str, uploaded_by, key: str) -> tuple[Item, bool]:
    """``ingest_upload`` keyed by the client's Idempotency-Key: returns (item, replayed). A key
    already used by this user in this project returns that upload's item (replayed=True), even
    when two requests race (the unique constraint decides; the loser's image is removed)."""
    if earlier := find_by_idempotency_key(project=project, uploaded_by=uploaded_by, key=key):
        return earlier, True
    try:
        return ingest_upload(project=project, data=data, filename=filename, uploaded_by=uploaded_by,
                             idempotency_key=key), False
    except IntegrityError:
        earlier = find_by_idempotency_key(project=project, uploaded_by=uploaded_by, key=key)
        if earlier is None:
            raise
        return earlier, True


def find_near_duplicate(project: Project, phash: int) -> Item | None:
    """The latest item of the project whose perceptual hash is at most NEAR_DUPLICATE_BITS from
    ``phash``, however old, or None.

    Two such hashes agree on at least one whole band (``images.PHASH_BANDS``), so the candidates
    are the items sharing a band, found through the band indexes; only they are compared bit by
    bit. Random hashes share a band by chance about once in 1,400 items, so the lookup
    reads about 75 rows in a project of 100,000 instead of comparing the last 5,000 in Python.
    """
    bands = Q()
    for index, value in enumerate(phash_bands(phash)):
        bands |= Q(**{f"phash_band{index}": value})
    candidates = Item.objects.filter(bands, project=project).order_by("-pk").values_list("pk", "phash")
    for item_id, other in candidates:
        if hamming(phash, other) <= NEAR_DUPLICATE_BITS:
            return Item.objects.get(pk=item_id)
    return None
