"""Step 1 of an export: walk the items in id order, check every per-item rule, and write each good
item's finished manifest line to a local work file (JSON lines). Streaming: ``CHUNK`` rows and one
decision query at a time, so memory does not grow with the number of items."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from classify.models import Item, Label, Project
from reviewer.selectors import decided_label_ids, exportable_items

from .rules import (
    ItemRow,
    Options,
    Problem,
    image_extension,
    image_key,
    image_problems,
    join_key,
    label_problems,
    line_problems,
    manifest_line,
    s3_location,
)

CHUNK = 2000


@dataclass
class Census:
    """What ``collect`` saw: counts to split by, and the items it left out."""

    examined: int = 0
    lines: int = 0
    labels: Counter = field(default_factory=Counter)
    combos: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)



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



def collect(project: Project, options: Options, work: IO[str], *,
            progress: Callable[[int], None] | None = None) -> Census:
    """Check every item and write ``[id, image name, extension, class names, line]`` per good item
    to ``work`` (JSON lines). Items are read in id order, ``CHUNK`` rows and one decision query at
    a time."""
    bucket, prefix = s3_location(options.source_prefix)
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



def read_work(work: IO[str]) -> Iterator[tuple[int, str, str, list[str], str]]:
    work.seek(0)
    for raw in work:
        item_id, name, extension, names, line = json.loads(raw)
        yield item_id, name, extension, names, line

