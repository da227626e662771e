"""Rekognition Custom Labels manifests from a project's labelled items: plain functions.

An export runs in three steps, all streaming (memory does not grow with the number of items):

1. ``collect``: walk the items in id order, check every per-image rule, and write each good item's
   finished manifest line to a local work file; an item that breaks a rule becomes a ``Problem``
   (listed in the report, never silently dropped).
2. ``split``: read the work file back and deal the lines into ``train.manifest`` and
   ``test.manifest`` (local temporary files), then check the dataset rules. Failing them raises
   ``ExportFailed`` with the report: nothing has been written to the target yet.
3. ``publish_s3`` or ``write_zip``: copy the images and publish the manifests. On S3 a manifest is
   uploaded under a temporary key and copied to its final key only when every image and every
   manifest is in place, so a crash never leaves a partial manifest at the final key.

The rules are the published ones (docs/export.md lists them with their sources).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Protocol

from django.core.files.storage import default_storage

from classify.images import DERIVATIVE_MAX_SIDE
from classify.models import Item, Label, Project

from .selectors import decided_label_ids, exportable_items

MIN_LABELS, MAX_LABELS = 2, 250
MAX_LABELS_PER_IMAGE = 50
MAX_CLASS_NAME = 256
MIN_SIDE, MAX_SIDE = 64, 4096
MAX_IMAGE_BYTES = 15 * 1024 * 1024
MAX_ASPECT = 20.0
MAX_LINE_CHARS = 100_000
MAX_VALUE_CHARS = 20_000
MAX_LINES = 250_000
MAX_MANIFEST_BYTES = 1024**3
MAX_TEST_PER_LABEL = 1000
MIN_TEST_LABEL_SHARE = 0.5
IMAGE_FORMATS = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
LABEL_TYPE = "groundtruth/image-classification"
CHUNK = 2000
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry times: the same data gives the same zip


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


@dataclass
class Census:
    """What ``collect`` saw: counts to split by, and the items it left out."""

    examined: int = 0
    lines: int = 0
    labels: Counter = field(default_factory=Counter)
    combos: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)


def parse_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (bucket, "some/prefix"); anything else is a ValueError."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3://bucket/prefix location")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket or "/" in bucket:
        raise ValueError(f"{url!r} has no bucket name")
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


# --- Step 1: collect --------------------------------------------------------------------------


def item_labels(item: ItemRow, decided: dict[int, list[int]], labels: dict[int, Label]) -> tuple[list[Label], bool]:
    """The item's labels (sorted by name) and whether a person gave them: the latest live LABEL
    decision's labels for a reviewed item, else ``Item.label``."""
    human = item.status == Item.Status.REVIEWED
    ids = decided.get(item.id) if human else None
    ids = ids or ([item.label_id] if item.label_id else [])
    return sorted((labels[label_id] for label_id in ids), key=lambda label: label.name), human


def batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def label_problems(item: ItemRow, labels: list, options: Options) -> list[Problem]:
    if not labels:
        return [Problem(item.id, "no-label", "No label to export.")]
    problems = []
    if any(label.is_unknown for label in labels):
        problems.append(Problem(item.id, "unknown-class", "Labelled unknown/other: not a class to train on."))
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


def collect(project: Project, options: Options, work: IO[str], *,
            progress: Callable[[int], None] | None = None) -> Census:
    """Check every item and write ``[id, image name, extension, class names, line]`` per good item
    to ``work`` (JSON lines). Items are read in id order, ``CHUNK`` rows and one decision query at
    a time."""
    bucket, prefix = parse_s3(options.source_prefix)
    labels = {label.pk: label for label in project.labels.all()}
    index = {pk: n for n, pk in enumerate(project.labels.order_by("order", "pk").values_list("pk", flat=True))}
    included = frozenset([Item.Status.REVIEWED] + ([Item.Status.AUTO_ACCEPTED] if options.include_auto else []))
    census = Census()
    rows = exportable_items(project, include_auto=options.include_auto).iterator(chunk_size=CHUNK)
    for batch in batches(rows, CHUNK):
        decided = decided_label_ids([item.id for item in batch])
        for item in batch:
            chosen, human = item_labels(item, decided, labels)
            problems = label_problems(item, chosen, options) or image_problems(item, options, included)
            if problems:
                census.problems += problems
                continue
            extension = image_extension(item.image)
            line = manifest_line(
                source_ref=f"s3://{bucket}/{join_key(prefix, image_key(item.id, extension))}",
                classes=[(index[label.pk], label.name) for label in chosen], human=human,
                confidence=1.0 if human else min(1.0, max(0.0, item.top_score or 0.0)),
                created=item.labelled_at or item.predicted_at or item.created_at, job_name=f"loupe/{project.slug}",
            )
            if problems := line_problems(item.id, line):
                census.problems += problems
                continue
            record(census, work, item, extension, [label.name for label in chosen], line)
        census.examined += len(batch)
        if progress:
            progress(census.examined)
    return census


def record(census: Census, work: IO[str], item: ItemRow, extension: str, names: list[str], line: str) -> None:
    work.write(json.dumps([item.id, item.image, extension, names, line], ensure_ascii=False) + "\n")
    census.lines += 1
    census.labels.update(names)
    census.combos["\x1f".join(sorted(names))] += 1


def image_extension(name: str) -> str:
    # os.path, not pathlib: pathlib interns every path part it parses, for the life of the process.
    return os.path.splitext(name)[1].lower()


def read_work(work: IO[str]) -> Iterator[tuple[int, str, str, list[str], str]]:
    work.seek(0)
    for raw in work:
        item_id, name, extension, names, line = json.loads(raw)
        yield item_id, name, extension, names, line


# --- Step 2: split and the dataset rules ------------------------------------------------------


class Splitter:
    """A deterministic, stratified, seeded train/test split that needs only counters in memory.

    Each item's stratum is its rarest label. A stratum of n items sends q = round(n × fraction)
    of them to test, at least 1 when n ≥ 2 (so every label with two images is in test) and never
    all of them (so every label stays in training), at most 1,000. The q are spread evenly over
    the stratum's items in id order, starting at a seeded offset (systematic sampling). An item
    that would take any of its labels past 1,000 test images goes to training instead.
    """

    def __init__(self, label_counts: Counter, combos: Counter, fraction: float, seed: int) -> None:
        self.label_counts, self.fraction, self.seed = label_counts, fraction, seed
        self.sizes: Counter = Counter()
        for combo, count in combos.items():
            self.sizes[self.stratum(combo.split("\x1f"))] += count
        self.seen: Counter = Counter()
        self.test_per_label: Counter = Counter()

    def stratum(self, names: Iterable[str]) -> str:
        return min(names, key=lambda name: (self.label_counts[name], name))

    def quota(self, size: int) -> int:
        if self.fraction <= 0 or size < 2:
            return 0
        return min(max(1, round(size * self.fraction)), size - 1, MAX_TEST_PER_LABEL)

    def offset(self, stratum: str, size: int) -> int:
        digest = hashlib.sha256(f"{self.seed}\x1f{stratum}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % size

    def is_test(self, names: list[str]) -> bool:
        stratum = self.stratum(names)
        size, quota = self.sizes[stratum], self.quota(self.sizes[stratum])
        position = (self.seen[stratum] + self.offset(stratum, size)) % size
        self.seen[stratum] += 1
        chosen = (position + 1) * quota // size > position * quota // size
        if not chosen or any(self.test_per_label[name] >= MAX_TEST_PER_LABEL for name in names):
            return False
        self.test_per_label.update(names)
        return True


def split(work: IO[str], census: Census, options: Options, folder: Path) -> dict[str, Path]:
    """Write ``train.manifest`` (and ``test.manifest`` with a split) into ``folder``; returns
    {name: path} and fills ``census`` counts per set. Lines keep the items' id order."""
    splitter = Splitter(census.labels, census.combos, options.test_split, options.seed)
    paths = {"train": folder / "train.manifest"}
    if options.test_split > 0:
        paths["test"] = folder / "test.manifest"
    files = {name: path.open("w", encoding="utf-8", newline="\n") for name, path in paths.items()}
    try:
        for _item_id, _name, _extension, names, line in read_work(work):
            files["test" if "test" in files and splitter.is_test(names) else "train"].write(line + "\n")
    finally:
        for handle in files.values():
            handle.close()
    return paths


def manifest_stats(path: Path) -> tuple[int, Counter]:
    """Lines and images per class of a written manifest (read back, one line at a time)."""
    lines, per_label = 0, Counter()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            lines += 1
            record = json.loads(line)
            per_label.update(value["class-name"] for key, value in record.items() if key.endswith("-metadata"))
    return lines, per_label


def dataset_problems(paths: dict[str, Path], census: Census, project: Project) -> tuple[list[Problem], list[str], dict]:
    """The dataset rules, checked on the written manifests: (failures, warnings, counts)."""
    failures: list[Problem] = []
    stats = {name: manifest_stats(path) for name, path in paths.items()}
    n_labels = len(census.labels)
    if n_labels < MIN_LABELS:
        failures.append(Problem(None, "label-count", f"{n_labels} class(es) with images; Rekognition needs at least 2."))
    if n_labels > MAX_LABELS:
        failures.append(Problem(None, "label-count", f"{n_labels} classes; Rekognition takes at most 250."))
    for name, path in paths.items():
        lines = stats[name][0]
        if lines > MAX_LINES or path.stat().st_size > MAX_MANIFEST_BYTES:
            failures.append(Problem(None, "manifest-size",
                                    f"{name}.manifest has {lines:,} lines, {path.stat().st_size:,} bytes; "
                                    "at most 250,000 lines and 1 GB."))
    train_labels = set(stats["train"][1])
    warnings = [f"Class {label.name!r} has no exported image: it will not be part of the model."
                for label in project.labels.filter(is_unknown=False).order_by("order", "pk")
                if label.name not in census.labels]
    if "test" in stats and train_labels:
        test_labels = set(stats["test"][1])
        if not test_labels <= train_labels:
            failures.append(Problem(None, "test-labels", "Some test classes have no training image: "
                                    + ", ".join(sorted(test_labels - train_labels))))
        missing = sorted(train_labels - test_labels)
        if len(train_labels & test_labels) < MIN_TEST_LABEL_SHARE * len(train_labels):
            failures.append(Problem(None, "test-coverage", f"Only {len(train_labels & test_labels)} of "
                                    f"{len(train_labels)} training classes are in test; at least half must be."))
        elif missing:
            warnings.append("Too few images to put these classes in test: " + ", ".join(missing))
        over = [name for name, count in stats["test"][1].items() if count > MAX_TEST_PER_LABEL]
        if over:
            failures.append(Problem(None, "test-per-label", "Over 1,000 test images: " + ", ".join(sorted(over))))
    counts = {
        "examined": census.examined, "exported": census.lines, "left_out": len({p.item for p in census.problems}),
        **{name: stat[0] for name, stat in stats.items()},
        "labels": {name: {set_name: stats[set_name][1][name] for set_name in stats} for name in sorted(census.labels)},
    }
    return failures, warnings, counts


def report(census: Census, failures: list[Problem], warnings: list[str]) -> dict:
    return {"problems": [p.as_dict() for p in census.problems], "dataset": [p.as_dict() for p in failures],
            "warnings": warnings}


def build(project: Project, options: Options, folder: Path, *,
          progress: Callable[[int], None] | None = None) -> tuple[dict[str, Path], Path, dict, dict]:
    """Steps 1 and 2 in ``folder``: (manifests, work file, counts, report). Raises ``ExportFailed``
    when a dataset rule fails; nothing outside ``folder`` is written."""
    work_path = folder / "work.jsonl"
    with work_path.open("w+", encoding="utf-8", newline="\n") as work:
        census = collect(project, options, work, progress=progress)
        paths = split(work, census, options, folder)
    failures, warnings, counts = dataset_problems(paths, census, project)
    result = report(census, failures, warnings)
    if failures:
        raise ExportFailed("; ".join(p.message for p in failures), result, counts)
    return paths, work_path, counts, result


def images(work_path: Path) -> Iterator[tuple[str, str]]:
    """(stored name, key relative to the export prefix) for every exported image."""
    with work_path.open(encoding="utf-8") as work:
        for item_id, name, extension, _names, _line in read_work(work):
            yield name, image_key(item_id, extension)


# --- Step 3: targets --------------------------------------------------------------------------


def publish_s3(client, url: str, manifests: dict[str, Path], image_keys: Iterable[tuple[str, str]]) -> list[str]:
    """Copy the images, upload each manifest under a temporary key, then publish: copy every
    manifest to its final key and delete the temporary one. Returns the final manifest URLs."""
    bucket, prefix = parse_s3(url)
    for name, key in image_keys:
        with default_storage.open(name, "rb") as handle:
            client.put_object(Bucket=bucket, Key=join_key(prefix, key), Body=handle,
                              ContentType=IMAGE_FORMATS[image_extension(key)])
    token = uuid.uuid4().hex
    staged = {set_name: join_key(prefix, f".{set_name}.manifest.{token}.tmp") for set_name in manifests}
    try:
        for set_name, path in manifests.items():
            with path.open("rb") as handle:
                client.put_object(Bucket=bucket, Key=staged[set_name], Body=handle, ContentType="application/json")
        published = []
        for set_name, temporary in staged.items():
            final = join_key(prefix, f"{set_name}.manifest")
            client.copy_object(Bucket=bucket, Key=final, CopySource={"Bucket": bucket, "Key": temporary},
                               ContentType="application/json", MetadataDirective="REPLACE")
            published.append(f"s3://{bucket}/{final}")
        return published
    finally:
        for temporary in staged.values():
            try:
                client.delete_object(Bucket=bucket, Key=temporary)
            except Exception:  # best effort: a leftover temporary key is harmless, never read
                pass


def write_zip(destination: IO[bytes], manifests: dict[str, Path], image_keys: Iterable[tuple[str, str]],
              report_data: dict) -> None:
    """A zip laid out like the S3 prefix: ``train.manifest``, ``test.manifest``, ``images/<id>.jpg``
    and ``export-report.json``. Upload its contents to the source-ref prefix as they are."""
    with zipfile.ZipFile(destination, "w") as archive:
        for set_name, path in manifests.items():
            info = zipfile.ZipInfo(f"{set_name}.manifest", ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                copy_stream(source, target)
        info = zipfile.ZipInfo("export-report.json", ZIP_DATE)
        archive.writestr(info, json.dumps(report_data, indent=1, ensure_ascii=False), zipfile.ZIP_DEFLATED)
        for name, key in image_keys:
            info = zipfile.ZipInfo(key, ZIP_DATE)  # JPEG/PNG are compressed already: stored
            with default_storage.open(name, "rb") as source, archive.open(info, "w", force_zip64=True) as target:
                copy_stream(source, target)


def write_local_zip(path: Path, manifests: dict[str, Path], image_keys: Iterable[tuple[str, str]],
                    report_data: dict) -> Path:
    """``write_zip`` to a file, atomically: a crash leaves no half-written zip at ``path``."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with partial.open("wb") as handle:
            write_zip(handle, manifests, image_keys, report_data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def copy_stream(source: IO[bytes], target: IO[bytes], size: int = 1024 * 1024) -> None:
    while chunk := source.read(size):
        target.write(chunk)
