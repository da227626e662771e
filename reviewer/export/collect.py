"""Step 1 of an export: walk the items in id order, check every per-item rule, and write each good
item's finished manifest line to a local work file. Streaming: two server-side cursors in id order
(the items, and the classes of their decisions) read ``CHUNK`` rows at a time, so memory does not
grow with the number of items, and the database answers two queries whatever the size."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from django.db import connection

from classify.models import Item, Label, Project
from reviewer.selectors import decided_labels, exportable_items

from .rules import (
    ManifestLines,
    Options,
    Problem,
    encode_json,
    image_extension,
    image_problems,
    join_key,
    label_problems,
    line_problems,
    s3_location,
    stored_sizes,
)

CHUNK = 2000


@dataclass
class Census:
    """What ``collect`` saw: counts to split by, and the items it left out.

    ``classes`` numbers each combination of class names a line carries (the work file names a
    line's classes by that number); ``labels`` and ``combos`` count lines per class and per
    combination."""

    examined: int = 0
    lines: int = 0
    labels: Counter = field(default_factory=Counter)
    combos: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    classes: list[tuple[str, ...]] = field(default_factory=list)


class DecidedLabels:
    """The label ids of each item's latest live LABEL decision, read off ``decided_labels`` rows
    (item id order, newest decision first) while the items go by in the same order."""

    def __init__(self, rows: Iterable[tuple[int, int, int]]) -> None:
        self.rows = iter(rows)
        self.row = next(self.rows, None)

    def of(self, item_id: int) -> tuple[int, ...]:
        """Ask in increasing item id order; an item without a decision gets ()."""
        row, rows = self.row, self.rows
        while row is not None and row[0] < item_id:
            row = next(rows, None)
        found: list[int] = []
        latest = row[1] if row is not None and row[0] == item_id else None
        while row is not None and row[0] == item_id:
            if row[1] == latest:
                found.append(row[2])
            row = next(rows, None)
        self.row = row
        return tuple(found)


class Classes:
    """An item's classes as the rules and the line need them, worked out once per combination of
    label ids: the Label rows sorted by name, ``(index, name)`` pairs, and the combination's number
    in ``census.classes``."""

    def __init__(self, project: Project, census: Census) -> None:
        self.labels = {label.pk: label for label in project.labels.all()}
        self.index = {pk: n for n, pk in enumerate(project.labels.order_by("order", "pk").values_list("pk", flat=True))}
        self.census = census
        self.known: dict[tuple[int, ...], tuple[list[Label], tuple[tuple[int, str], ...], int]] = {}

    def of(self, ids: tuple[int, ...]) -> tuple[list[Label], tuple[tuple[int, str], ...], int]:
        found = self.known.get(ids)
        if found is None:
            chosen = sorted((self.labels[pk] for pk in ids), key=lambda label: label.name)
            self.census.classes.append(tuple(label.name for label in chosen))
            found = self.known[ids] = (chosen, tuple((self.index[label.pk], label.name) for label in chosen),
                                       len(self.census.classes) - 1)
        return found


@contextmanager
def without_jit() -> Iterator[None]:
    """PostgreSQL's JIT off for the export's reads, then back: the items query's cost estimate
    counts the prediction lookup for every row (it runs only for items without a decision
    time), so the planner compiled it, 60 ms of compiling on every export for a scan that
    takes about as long."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET jit = off")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET jit")


def collect(project: Project, options: Options, work: IO[str], *,
            progress: Callable[[int], None] | None = None) -> Census:
    """Check every item and write one line per good item to ``work``:
    ``<id>\\t<extension>\\t<classes number>\\t<stored name as JSON>\\t<manifest line>`` (neither the
    JSON nor the manifest line holds a tab or a newline)."""
    census = Census()
    per_combination: Counter = Counter()
    with without_jit():
        walk(project, options, work, census, per_combination, progress)
    count(census, per_combination)
    return census


def walk(project: Project, options: Options, work: IO[str], census: Census, per_combination: Counter,
         progress: Callable[[int], None] | None) -> None:
    """``collect``'s loop: the items and their decisions' classes, two cursors side by side."""
    bucket, prefix = s3_location(options.source_prefix)
    lines = ManifestLines(images_url=f"s3://{bucket}/{join_key(prefix, 'images/')}", job_name=f"loupe/{project.slug}")
    included = frozenset([Item.Status.REVIEWED] + ([Item.Status.AUTO_ACCEPTED] if options.include_auto else []))
    classes, size_of = Classes(project, census), stored_sizes()
    decided = DecidedLabels(decided_labels(project).iterator(chunk_size=CHUNK))
    for item in exportable_items(project, include_auto=options.include_auto).iterator(chunk_size=CHUNK):
        census.examined += 1
        if progress and census.examined % CHUNK == 0:
            progress(census.examined)
        human = item.status == Item.Status.REVIEWED
        ids = (decided.of(item.id) if human else ()) or ((item.label_id,) if item.label_id else ())
        chosen, pairs, number = classes.of(ids)
        extension = image_extension(item.image)
        problems = label_problems(item, chosen, options) or image_problems(item, options, included, size_of,
                                                                           extension)
        if problems:
            census.problems += problems
            continue
        line = lines.line(item_id=item.id, extension=extension, classes=pairs, human=human,
                          confidence=1.0 if human else min(1.0, max(0.0, item.top_score or 0.0)),
                          created=item.labelled)
        if problems := line_problems(item.id, line):
            census.problems += problems
            continue
        work.write(f"{item.id}\t{extension}\t{number}\t{encode_json(item.image)}\t{line}\n")
        per_combination[number] += 1
    if progress and census.examined % CHUNK:
        progress(census.examined)


def count(census: Census, per_combination: Counter) -> None:
    for number, lines in per_combination.items():
        names = census.classes[number]
        census.lines += lines
        census.labels.update(dict.fromkeys(names, lines))
        census.combos["\x1f".join(sorted(names))] += lines


def read_work(work: IO[str]) -> Iterator[tuple[str, str, str, int, str]]:
    """``(item id, stored name as JSON, extension, classes number, manifest line)`` per line of
    the work file (the name is decoded only by who needs it: ``json.loads``)."""
    work.seek(0)
    for raw in work:
        item_id, extension, number, name, line = raw.rstrip("\n").split("\t", 4)
        yield item_id, name, extension, int(number), line
