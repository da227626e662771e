"""Step 2 of an export: deal the work file's lines into ``train.manifest`` and ``test.manifest``
(local temporary files), then check the dataset rules. Failing them raises ``ExportFailed`` with
the report: nothing has been written to the target yet."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

from classify.models import Project
from reviewer.models import UNKNOWN_RULE

from .collect import Census, collect, read_work
from .rules import ExportFailed, Options, Problem

MIN_LABELS, MAX_LABELS = 2, 250
MAX_LINES = 250_000
MAX_MANIFEST_BYTES = 1024**3
MAX_TEST_PER_LABEL = 1000
MIN_TEST_LABEL_SHARE = 0.5


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
        self.offsets: dict[str, int] = {}

    def stratum(self, names: Iterable[str]) -> str:
        return min(names, key=lambda name: (self.label_counts[name], name))

    def offset_of(self, stratum: str) -> int:
        """``offset`` of the stratum, hashed once per stratum."""
        if stratum not in self.offsets:
            self.offsets[stratum] = self.offset(stratum, self.sizes[stratum])
        return self.offsets[stratum]

    def quota(self, size: int) -> int:
        if self.fraction <= 0 or size < 2:
            return 0
        return min(max(1, round(size * self.fraction)), size - 1, MAX_TEST_PER_LABEL)

    def offset(self, stratum: str, size: int) -> int:
        digest = hashlib.sha256(f"{self.seed}\x1f{stratum}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % size

    def is_test(self, names: Sequence[str], stratum: str | None = None) -> bool:
        """``stratum``: ``self.stratum(names)`` when the caller knows it already."""
        stratum = stratum or self.stratum(names)
        size, quota = self.sizes[stratum], self.quota(self.sizes[stratum])
        position = (self.seen[stratum] + self.offset_of(stratum)) % size
        self.seen[stratum] += 1
        chosen = (position + 1) * quota // size > position * quota // size
        if not chosen or any(self.test_per_label[name] >= MAX_TEST_PER_LABEL for name in names):
            return False
        self.test_per_label.update(names)
        return True


def split(work: IO[str], census: Census, options: Options, folder: Path) -> tuple[dict[str, Path], dict]:
    """Write ``train.manifest`` (and ``test.manifest`` with a split) into ``folder``; returns
    {name: path} and, per set, its lines and images per class (``manifest_stats``, counted as the
    lines are written). Lines keep the items' id order."""
    splitter = Splitter(census.labels, census.combos, options.test_split, options.seed)
    strata = [splitter.stratum(names) if names else "" for names in census.classes]
    paths = {"train": folder / "train.manifest"}
    if options.test_split > 0:
        paths["test"] = folder / "test.manifest"
    files = {name: path.open("w", encoding="utf-8", newline="\n") for name, path in paths.items()}
    per_set = {name: Counter() for name in paths}
    try:
        for _item_id, _name, _extension, number, line in read_work(work):
            names = census.classes[number]
            chosen = "test" if "test" in files and splitter.is_test(names, strata[number]) else "train"
            files[chosen].write(line + "\n")
            per_set[chosen][number] += 1
    finally:
        for handle in files.values():
            handle.close()
    stats = {}
    for name, counts in per_set.items():
        per_label: Counter = Counter()
        for number, lines in counts.items():
            per_label.update(dict.fromkeys(census.classes[number], lines))
        stats[name] = (sum(counts.values()), per_label)
    return paths, stats


def manifest_stats(path: Path) -> tuple[int, Counter]:
    """Lines and images per class of a written manifest (read back, one line at a time)."""
    lines, per_label = 0, Counter()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            lines += 1
            record = json.loads(line)
            per_label.update(value["class-name"] for key, value in record.items() if key.endswith("-metadata"))
    return lines, per_label


def dataset_problems(paths: dict[str, Path], census: Census, project: Project,
                     stats: dict | None = None) -> tuple[list[Problem], list[str], dict]:
    """The dataset rules, checked on the written manifests: (failures, warnings, counts).
    ``stats``: each manifest's ``manifest_stats`` when known (``split`` counts them), else they
    are read back from the files."""
    failures: list[Problem] = []
    stats = stats or {name: manifest_stats(path) for name, path in paths.items()}
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
        "examined": census.examined, "exported": census.lines,
        **set_aside_and_left_out(census.problems),
        **{name: stat[0] for name, stat in stats.items()},
        "labels": {name: {set_name: stats[set_name][1][name] for set_name in stats} for name in sorted(census.labels)},
    }
    return failures, warnings, counts


def set_aside_and_left_out(problems: list[Problem]) -> dict[str, int]:
    """Items labelled unknown on purpose (``unknown``: set aside, nothing wrong) apart from the
    items that break a rule (``left_out``)."""
    broken = {p.item for p in problems if p.rule != UNKNOWN_RULE}
    unknown = {p.item for p in problems if p.rule == UNKNOWN_RULE} - broken
    return {"left_out": len(broken), "unknown": len(unknown)}


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
        paths, stats = split(work, census, options, folder)
    failures, warnings, counts = dataset_problems(paths, census, project, stats)
    result = report(census, failures, warnings)
    if failures:
        raise ExportFailed("; ".join(p.message for p in failures), result, counts)
    return paths, work_path, counts, result

