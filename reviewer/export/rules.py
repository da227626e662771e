"""The per-image rules of a Custom Labels export and the manifest line format: plain functions.

The rules are the published ones (docs/export.md lists them with their sources). An item that
breaks one becomes a ``Problem``: listed in the export's report, never silently dropped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

from django.core.files.storage import default_storage

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


class ItemRow(Protocol):
    """A row of ``selectors.exportable_items`` (a named tuple, not a model instance)."""

    id: int
    status: str
    image: str
    width: int
    height: int
    top_score: float | None
    labelled_at: datetime | None
    created_at: datetime
    duplicate_of_id: int | None
    label_id: int | None
    predicted_at: datetime | None
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
    check_files: bool = True  # stat each stored image during the pre-flight (size, existence)

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
    """UTC ISO-8601 with microseconds and no offset, as Ground Truth writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


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


def image_problems(item: ItemRow, options: Options, included: frozenset[str]) -> list[Problem]:
    """The per-image rules: format, size in pixels and bytes, aspect ratio, each picture once."""
    if not item.image:
        return [Problem(item.id, "missing-image", "The item has no stored image.")]
    extension = image_extension(item.image)
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
        problems += file_problems(item)
    return problems


def file_problems(item: ItemRow) -> list[Problem]:
    try:
        size = default_storage.size(item.image)
    except OSError:
        return [Problem(item.id, "missing-image", "The stored image file is missing.")]
    if size > MAX_IMAGE_BYTES:
        return [Problem(item.id, "file-size", f"{size:,} bytes; at most {MAX_IMAGE_BYTES:,} (15 MB).")]
    return []


def line_problems(item_id: int, line: str) -> list[Problem]:
    if len(line) > MAX_LINE_CHARS:
        return [Problem(item_id, "line-length", f"The manifest line is {len(line):,} characters; at most 100,000.")]
    for value in json.loads(line).values():
        if len(json.dumps(value, ensure_ascii=False)) > MAX_VALUE_CHARS:
            return [Problem(item_id, "attribute-length", "An attribute value is over 20,000 characters.")]
    return []



def image_extension(name: str) -> str:
    # os.path, not pathlib: pathlib interns every path part it parses, for the life of the process.
    return os.path.splitext(name)[1].lower()

