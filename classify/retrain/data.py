"""The training data: a project's human labels (exemplars plus human-reviewed items) and their
embeddings, and the counts that decide when a new head is worth training."""

from __future__ import annotations

import numpy as np
from django.db.models import Count, Q

from classify.backends.local import INPUT_SIDE, embed
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


def labelled_examples(project: Project) -> tuple[list[str], np.ndarray, list[str]]:
    """Every exemplar and human-labelled item as (image hash, embedding, class name): the hash is
    the key a train/test split is made on; embeddings are computed once and kept."""
    keys, vectors, names = [], [], []
    for label in project.labels.prefetch_related("exemplars"):
        for exemplar in label.exemplars.all():
            if exemplar.embedding is None:
                exemplar.embedding = embed(load_image(exemplar, min_side=INPUT_SIDE))
                exemplar.save(update_fields=["embedding"])
            keys.append(exemplar.sha256 or f"exemplar:{exemplar.pk}")
            vectors.append(np.frombuffer(bytes(exemplar.embedding), dtype=np.float32))
            names.append(label.name)
    reviewed = Item.objects.filter(project=project, status=Status.REVIEWED, label__isnull=False).select_related("label")
    for item in reviewed.iterator():
        if item.embedding is None:
            item.embedding = embed(load_image(item, min_side=INPUT_SIDE))
            Item.objects.filter(pk=item.pk).update(embedding=item.embedding)
        keys.append(item.sha256 or f"item:{item.pk}")
        vectors.append(np.frombuffer(bytes(item.embedding), dtype=np.float32))
        names.append(item.label.name)
    return keys, (np.vstack(vectors) if vectors else np.zeros((0, 1280), np.float32)), names
