"""Exemplars: labelled pictures that show reviewers (and the trained head) what a class looks like."""

from __future__ import annotations

from django.core.files.base import ContentFile

from classify.models import Exemplar, Item


def promote_to_exemplar(*, item: Item) -> Exemplar:
    """Make a labelled item an exemplar of its class (a copy: deleting the item keeps it)."""
    if item.label is None:
        raise ValueError(f"item #{item.pk} has no label yet")
    with item.image.open("rb") as handle:
        data = handle.read()
    exemplar = Exemplar(label=item.label, sha256=item.sha256, embedding=item.embedding)
    exemplar.image.save("exemplar.jpg", ContentFile(data), save=True)
    return exemplar
