"""The training data: a project's human labels (exemplars plus human-reviewed items) and their
embeddings, and the counts that decide when a new head is worth training."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db.models import Count, Q

from classify.backends.local import EMBEDDING_DIM, INPUT_SIDE, embed, is_current
from classify.models import Exemplar, Item, Project
from classify.services.scoring import load_image

Status = Item.Status


def human_label_count(project: Project) -> int:
    """Exemplars plus human-reviewed items: what the trained head learns from."""
    exemplars = Exemplar.objects.filter(label__project=project).count()
    return exemplars + Item.objects.filter(project=project, status=Status.REVIEWED, label__isnull=False).count()


def labels_per_class(project: Project) -> dict[str, int]:
    """Per class (unknown aside): exemplars plus human-reviewed items."""
    rows = project.labels.filter(is_unknown=False).annotate(
        exemplar_count=Count("exemplars", distinct=True),
        reviewed=Count("items", filter=Q(items__status=Status.REVIEWED), distinct=True),
    )
    return {row.name: row.exemplar_count + row.reviewed for row in rows}


@dataclass(frozen=True)
class Examples:
    """The training data, each picture once: key (image hash), embedding, class, when labelled."""

    keys: list[str]
    embeddings: np.ndarray
    names: list[str]
    labelled_at: list[datetime]

    def counts(self) -> dict[str, int]:
        return {name: self.names.count(name) for name in sorted(set(self.names))}


def examples(project: Project) -> Examples:
    """Exemplars and human-reviewed items, the first label of a picture winning (so no picture
    sits in two folds). Auto-accepted items never train the head: only people's labels do.
    Embeddings are read as stored; one missing (an exemplar just added, an item scored by another
    backend) or in an older release's layout (``local.is_current``) is computed once and kept."""
    rows = [(e.sha256 or f"exemplar:{e.pk}", _current(e.embedding, e), e.label.name, e.created_at)
            for e in Exemplar.objects.filter(label__project=project).select_related("label").order_by("pk")]
    reviewed = (Item.objects.filter(project=project, status=Item.Status.REVIEWED, label__isnull=False)
                .order_by("labelled_at", "pk").values_list("sha256", "pk", "embedding", "label__name", "labelled_at"))
    rows += [(sha or f"item:{pk}", _current(vector, pk), name, when)
             for sha, pk, vector, name, when in reviewed.iterator()]
    seen, keys, vectors, names, times = set(), [], [], [], []
    for key, vector, name, when in rows:
        if key in seen:
            continue
        seen.add(key)
        keys.append(key)
        vectors.append(np.frombuffer(bytes(vector), dtype=np.float32))
        names.append(name)
        times.append(when)
    matrix = np.vstack(vectors) if vectors else np.zeros((0, EMBEDDING_DIM), np.float32)
    return Examples(keys, matrix, names, times)


def _current(vector: bytes | None, row: Exemplar | int) -> bytes:
    """The stored embedding if it has today's layout, else one computed now (``row`` is the
    exemplar, or an item's primary key: the item is only loaded when needed)."""
    if is_current(vector):
        return vector
    return _embed_once(row if isinstance(row, Exemplar) else Item.objects.get(pk=row))


def _embed_once(row: Exemplar | Item) -> bytes:
    vector = embed(load_image(row, min_side=INPUT_SIDE))
    type(row).objects.filter(pk=row.pk).update(embedding=vector)
    return vector


POOL_LIMIT = 4000  # the most recent unlabelled pictures whose geometry the head's basis learns from


def unlabelled_pool(project: Project, *, limit: int = POOL_LIMIT) -> np.ndarray:
    """Stored embeddings of the project's most recent pictures no person labelled (waiting,
    auto-accepted, rejected...). Only their geometry is used (``local.whitened_basis``), never a
    class: auto-accepted items never train the head. Embeddings of an older release's layout are
    left out (the basis needs one layout; re-embedding thousands of pictures is not worth it)."""
    vectors = (Item.objects.filter(project=project, embedding__isnull=False)
               .exclude(status=Status.REVIEWED, label__isnull=False)
               .order_by("-pk").values_list("embedding", flat=True)[:limit])
    rows = [np.frombuffer(bytes(vector), dtype=np.float32) for vector in vectors if is_current(vector)]
    return np.vstack(rows) if rows else np.zeros((0, EMBEDDING_DIM), np.float32)
