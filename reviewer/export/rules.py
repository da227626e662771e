"""The per-image rules of a Custom Labels export and the manifest line format: plain functions.

The rules are the published ones (docs/export.md lists them with their sources). An item that
breaks one becomes a ``Problem``: listed in the export's report, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

from django.core.files.storage import FileSystemStorage, default_storage, storages
from storages.utils import clean_name

from classify import aws
from classify.images import DERIVATIVE_MAX_SIDE
from reviewer.models import UNKNOWN_RULE

MAX_LABELS_PER_IMAGE = 50
MAX_CLASS_NAME = 256
MIN_SIDE, MAX_SIDE = 64, 4096
MAX_IMAGE_BYTES = 15 * 1024 * 1024
MAX_ASPECT = 20.0
MAX_LINE_CHARS = 100_000
MAX_VALUE_CHARS = 20_000
IMAGE_FORMATS = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
LABEL_TYPE = "groundtruth/image-classification"

log = logging.getLogger(__name__)


class ItemRow(Protocol):
    """A row of ``selectors.exportable_items`` (a named tuple, not a model instance)."""

    id: int
    status: str
    image: str
    width: int
    height: int
    top_score: float | None
    labelled: datetime  # when it got its label: decided, else predicted, else uploaded
    duplicate_of_id: int | None
    label_id: int | None
    duplicate_status: str | None


class ExportFailed(Exception):
    """The dataset breaks a rule Rekognition enforces; ``report`` says which, and which items."""

    def __init__(self, message: str, report: dict, counts: dict | None = None) -> None:
        super().__init__(message)
        self.report, self.counts = report, counts or {}


@dataclass(frozen=True)
class Options:
    test_split: float = 0.0
    include_auto: bool = False
    multi_label: bool = False
    seed: int = 0
    source_prefix: str = ""  # the s3://bucket/prefix the source-refs point at
    copy_images: bool = True  # False: manifests only (benchmarks, a re-publish of the same images)
    check_files: bool = True  # size each stored image during the pre-flight (size, existence)

    @classmethod
    def from_dict(cls, values: dict) -> Options:
        return cls(**{key: value for key, value in values.items() if key in cls.__dataclass_fields__})

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Problem:
    item: int | None
    rule: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)




def s3_location(url: str) -> tuple[str, str]:
    """(bucket, prefix without surrounding slashes) of an export's ``s3://bucket/prefix``; ValueError otherwise."""
    bucket, prefix = aws.parse_s3_uri(url, what="S3 location")
    return bucket, prefix.strip("/")


def join_key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def image_key(item_id: int, extension: str) -> str:
    """Where an item's image lives relative to the export prefix (also its path in the zip)."""
    return f"images/{item_id}{extension}"



# --- The manifest line ------------------------------------------------------------------------


def manifest_line(*, source_ref: str, classes: list[tuple[int, str]], human: bool, confidence: float,
                  created: datetime, job_name: str) -> str:
    """One JSON line: ``source-ref`` and, per class, ``loupe-label-<n>`` + ``loupe-label-<n>-metadata``.

    Generated attribute names (never the class name: a class called ``source-ref`` would collide);
    the attribute's integer value is the class's index in the project (Rekognition ignores it).
    """
    record: dict = {"source-ref": source_ref}
    for n, (index, name) in enumerate(classes):
        record[f"loupe-label-{n}"] = index
        record[f"loupe-label-{n}-metadata"] = {
            "confidence": confidence,
            "job-name": job_name,
            "class-name": name,
            "human-annotated": "yes" if human else "no",
            "creation-date": utc_iso(created),
            "type": LABEL_TYPE,
        }
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


def utc_iso(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and no offset, as Ground Truth writes it
    (``%Y-%m-%dT%H:%M:%S.%f``; ``isoformat`` writes the same, several times faster)."""
    if moment.tzinfo is not UTC:  # what the database returns is UTC already
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6]  # without "+00:00"


#: JSON as the manifest writes it (UTF-8 kept), one encoder for every call.
encode_json = json.JSONEncoder(ensure_ascii=False).encode


class ManifestLines:
    """``manifest_line`` for the many lines of one export, byte for byte (a test compares them),
    without serialising the same parts again for every line: the source-ref's prefix, the job
    name and each combination of classes are encoded once; a line is then joined from those
    pieces, the item's id and extension, its confidence and its date."""

    def __init__(self, *, images_url: str, job_name: str) -> None:
        """``images_url``: what precedes ``<id><extension>`` in a source-ref (``s3://b/p/images/``)."""
        self.images_url, self.job_name = images_url, job_name
        self.head = '{"source-ref": ' + encode_json(images_url)[:-1]
        self.job = encode_json(job_name)
        self.pieces: dict[tuple, tuple[str, ...]] = {}

    def line(self, *, item_id: int, extension: str, classes: tuple[tuple[int, str], ...], human: bool,
             confidence: float, created: datetime) -> str:
        pieces = self.pieces.get((classes, human))
        if pieces is None:
            pieces = self.pieces[(classes, human)] = self._pieces(classes, human)
        if extension not in IMAGE_FORMATS or not 0.0 <= confidence <= 1.0:  # nothing the pieces assume
            return manifest_line(source_ref=f"{self.images_url}{item_id}{extension}", classes=list(classes),
                                 human=human, confidence=confidence, created=created, job_name=self.job_name)
        value, date = repr(float(confidence)), utc_iso(created)
        parts = [self.head, str(item_id), extension, '"']
        for before_confidence, before_date in zip(pieces[0:-1:2], pieces[1:-1:2], strict=True):
            parts += [before_confidence, value, before_date, date]
        parts.append(pieces[-1])
        return "".join(parts)

    def _pieces(self, classes: tuple[tuple[int, str], ...], human: bool) -> tuple[str, ...]:
        """Per class the text before its confidence and before its date; then the line's end."""
        pieces, close = [], ""
        for n, (index, name) in enumerate(classes):
            pieces.append(f'{close}, "loupe-label-{n}": {index}, "loupe-label-{n}-metadata": {{"confidence": ')
            pieces.append(f', "job-name": {self.job}, "class-name": {encode_json(name)}, '
                          f'"human-annotated": "{"yes" if human else "no"}", "creation-date": "')
            close = f'", "type": "{LABEL_TYPE}"}}'
        pieces.append(close + "}")
        return tuple(pieces)


def stored_size(width: int, height: int, max_side: int = DERIVATIVE_MAX_SIDE) -> tuple[int, int]:
    """The stored derivative's size: the upright original bounded to ``max_side`` (aspect kept)."""
    longer = max(width, height)
    if longer <= max_side:
        return width, height
    return max(1, round(width * max_side / longer)), max(1, round(height * max_side / longer))



# --- Per-item rules ----------------------------------------------------------------------------


def label_problems(item: ItemRow, labels: list, options: Options) -> list[Problem]:
    if not labels:
        return [Problem(item.id, "no-label", "No label to export.")]
    problems = []
    if any(label.is_unknown for label in labels):
        problems.append(Problem(item.id, UNKNOWN_RULE, "Labelled unknown/other on purpose: not a class to train on, "
                                "so it stays out of the manifest."))
    if len(labels) > 1 and not options.multi_label:
        problems.append(Problem(item.id, "single-label",
                                f"Has {len(labels)} labels; export with multi-label to keep it."))
    if len(labels) > MAX_LABELS_PER_IMAGE:
        problems.append(Problem(item.id, "labels-per-image",
                                f"Has {len(labels)} labels; at most {MAX_LABELS_PER_IMAGE} per image."))
    for label in labels:
        if len(label.name) > MAX_CLASS_NAME:
            problems.append(Problem(item.id, "class-name",
                                    f"Class name is {len(label.name)} characters; at most {MAX_CLASS_NAME}."))
    return problems


def image_problems(item: ItemRow, options: Options, included: frozenset[str],
                   size_of: Callable[[str], int] | None = None, extension: str | None = None) -> list[Problem]:
    """The per-image rules: format, size in pixels and bytes, aspect ratio, each picture once.
    ``size_of`` reads a stored file's size (``stored_sizes()``; default: the storage's own);
    ``extension`` is ``image_extension(item.image)`` when the caller has it."""
    if not item.image:
        return [Problem(item.id, "missing-image", "The item has no stored image.")]
    extension = image_extension(item.image) if extension is None else extension
    problems = []
    if extension not in IMAGE_FORMATS:
        problems.append(Problem(item.id, "format", f"Stored as {extension or 'no extension'}; only JPEG and PNG."))
    width, height = stored_size(item.width, item.height)
    if min(width, height) < MIN_SIDE:
        problems.append(Problem(item.id, "too-small",
                                f"{width}×{height} px; Rekognition needs at least {MIN_SIDE} px per side."))
    if max(width, height) > MAX_SIDE:
        problems.append(Problem(item.id, "too-large", f"{width}×{height} px; at most {MAX_SIDE} px per side."))
    if max(width, height) > MAX_ASPECT * max(1, min(width, height)):
        problems.append(Problem(item.id, "aspect-ratio", f"{width}×{height} px; the aspect ratio is at most 20:1."))
    if item.duplicate_of_id and item.duplicate_status in included:
        problems.append(Problem(item.id, "duplicate",
                                f"The same picture as item #{item.duplicate_of_id}, which is exported instead."))
    if options.check_files and not problems:
        problems += file_problems(item, size_of)
    return problems


def file_problems(item: ItemRow, size_of: Callable[[str], int] | None = None) -> list[Problem]:
    try:
        size = (size_of or default_storage.size)(item.image)
    except PermissionError:
        return [Problem(item.id, "missing-image", "The stored image file could not be read: S3 refused it "
                                                  "(missing, or not readable with Loupe's credentials).")]
    except OSError:
        return [Problem(item.id, "missing-image", "The stored image file is missing.")]
    if size > MAX_IMAGE_BYTES:
        return [Problem(item.id, "file-size", f"{size:,} bytes; at most {MAX_IMAGE_BYTES:,} (15 MB).")]
    return []


def line_problems(item_id: int, line: str) -> list[Problem]:
    if len(line) > MAX_LINE_CHARS:
        return [Problem(item_id, "line-length", f"The manifest line is {len(line):,} characters; at most 100,000.")]
    if len(line) <= MAX_VALUE_CHARS:  # every attribute value is a part of the line: none can be longer
        return []
    for value in json.loads(line).values():
        if len(json.dumps(value, ensure_ascii=False)) > MAX_VALUE_CHARS:
            return [Problem(item_id, "attribute-length", "An attribute value is over 20,000 characters.")]
    return []



def stored_sizes() -> Callable[[str], int]:
    """How to read a stored file's size, fast: on the local filesystem storage one ``os.stat``
    (for a relative name without ``..``, which stays inside the media folder: the check the
    storage itself makes); on S3 a listing of each folder the images live in (``ListedSizes``),
    not one HEAD request per image; else the storage's own ``size``. OSError for a missing file
    whichever way."""
    storage = storages["default"]
    if isinstance(storage, FileSystemStorage):
        return stat_sizes(storage)
    from storages.backends.s3 import S3Storage  # imports boto3: loaded only when media are not on disk

    if isinstance(storage, S3Storage):
        return ListedSizes(storage).size
    return storage.size


def stat_sizes(storage: FileSystemStorage) -> Callable[[str], int]:
    root = os.path.abspath(storage.location)

    def size(name: str) -> int:
        if not name or name.startswith("/") or "\\" in name or "\x00" in name or ".." in name.split("/"):
            return storage.size(name)
        return os.stat(f"{root}/{name}").st_size

    return size


class ListedSizes:
    """Stored sizes on S3 read by listing: the first image of a folder lists that folder
    (ListObjectsV2, 1,000 keys a page, ``Delimiter="/"`` so subfolders stay out) and every later
    image of it is a dictionary lookup. An item's image is ``items/<project id>/<uuid>.jpg``
    (``classify.models.item_image_key``), so a project's export lists one folder: one request per
    1,000 images instead of one HEAD per image (100 instead of 100,000 for 100k items).

    A key that the listing does not hold is a missing file: FileNotFoundError, as
    ``S3Storage.size`` raises. The key is the storage's own (``location`` prefix, the same
    normalisation and the same refusal of a name that climbs out of it). Memory: every listed
    key and its size, about 17 MB per 100,000 objects, for the length of one export; a folder
    also holds files of deleted items until they are cleaned up, and they are counted too.

    Listing needs ``s3:ListBucket`` on the media bucket (docs/security.md). Where it is refused,
    the sizes come from one HEAD per image as before, with a warning in the log: slower, still
    right.
    """

    def __init__(self, storage) -> None:
        self.storage = storage
        self.sizes: dict[str, int] = {}
        self.listed: set[str] = set()
        self.refused = False

    def size(self, name: str) -> int:
        if self.refused:
            return self.head(name)
        key = self.storage._normalize_name(clean_name(name))  # the key S3Storage.size would HEAD
        folder = key[:key.rfind("/") + 1]
        if folder not in self.listed and not self.list_folder(folder):
            return self.head(name)
        try:
            return self.sizes[key]
        except KeyError:
            raise FileNotFoundError(f"File does not exist: {key}") from None

    def head(self, name: str) -> int:
        """One HEAD request (``S3Storage.size``). Without ``s3:ListBucket`` S3 answers a missing key
        with 403, not 404, and the storage lets that ClientError through: it is a PermissionError
        here, an OSError like a 404's FileNotFoundError, so the pre-flight reports the image
        instead of the export failing."""
        from botocore.exceptions import ClientError  # botocore is loaded already: S3Storage imported it

        try:
            return self.storage.size(name)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 403:
                raise
            raise PermissionError(f"S3 refused to read {name} (403: missing, or not readable with these "
                                  "credentials)") from None

    def list_folder(self, folder: str) -> bool:
        """Add the sizes of ``folder``'s files; False when the listing is refused."""
        from botocore.exceptions import ClientError  # botocore is loaded already: S3Storage imported it

        client = self.storage.connection.meta.client
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.storage.bucket_name, Prefix=folder,
                                                                 Delimiter="/")
        try:
            for page in pages:
                for entry in page.get("Contents", ()):
                    self.sizes[entry["Key"]] = entry["Size"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("AccessDenied", "AccessDeniedException"):
                raise
            log.warning("Listing s3://%s/%s was refused (s3:ListBucket on the media bucket): "
                        "the export sizes each image with a HEAD request instead.", self.storage.bucket_name, folder)
            self.refused = True
            return False
        self.listed.add(folder)
        return True


def image_extension(name: str) -> str:
    # os.path, not pathlib: pathlib interns every path part it parses, for the life of the process.
    return os.path.splitext(name)[1].lower()

