"""Exemplars from the start: uploads per class on the project page, and what the project page shows
of each class (its number key, its ImageNet mapping and how much it covers, its pictures).

An exemplar upload goes through the same checks as any upload (size, real format, pixel limit,
the project's quality rules) and is stored as the same re-encoded JPEG. Auto-accepted items are
only ever *shown* as stand-ins while a class has no exemplars or human labels: they never become
exemplars or training data by themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.core.files.base import ContentFile
from django.db.models import Count, Q

from . import pipeline
from .backends.imagenet import Suggestion, describe_mapping
from .images import ImageRejected
from .models import Exemplar, Item, Label, Project
from .services import check_upload_size

PICTURES_PER_CLASS = 4
#: An auto-accepted item is offered as a stand-in picture only when the model was this sure (or
#: more, when the class's own accept threshold is higher).
STAND_IN_MIN_SCORE = 0.9


def add_exemplar(*, label: Label, data: bytes) -> Exemplar:
    """Store an uploaded picture as an exemplar of ``label``; raises ``ImageRejected`` with the
    reason to show (not an image, too large, too dark, already an exemplar of this class, ...)."""
    project = label.project
    check_upload_size(len(data))
    prepared = pipeline.preprocess(data, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS)
    problems = pipeline.check_quality(prepared, rules=project.quality_rules)
    if problems:
        raise ImageRejected(" ".join(problems))
    if Exemplar.objects.filter(label=label, sha256=prepared.sha256).exists():
        raise ImageRejected(f"This picture is already an exemplar of {label.name}.")
    exemplar = Exemplar(label=label, sha256=prepared.sha256)
    exemplar.image.save("exemplar.jpg", ContentFile(prepared.jpeg), save=True)
    return exemplar


def remove_exemplar(*, exemplar: Exemplar) -> None:
    exemplar.image.delete(save=False)
    exemplar.delete()


@dataclass
class ClassCard:
    """One class as the project page shows it."""

    label: Label
    key: int | None
    mapping: Suggestion | None  # None when the project's backend does not use ImageNet classes
    exemplars: list[int] = field(default_factory=list)  # exemplar ids, newest first
    stand_ins: list[tuple[int, float]] = field(default_factory=list)  # (item id, score): auto-accepted
    human_labels: int = 0

    @property
    def unmapped(self) -> bool:
        return self.mapping is not None and self.mapping.coverage == "none"


def class_cards(project: Project, labels: Sequence[Label], keys: dict[int, int]) -> list[ClassCard]:
    """The project's classes (unknown aside) with their mapping, exemplars and stand-in pictures."""
    known = [label for label in labels if not label.is_unknown]
    counts = dict(Item.objects.filter(project=project, status=Item.Status.REVIEWED, label__in=known)
                  .values_list("label").annotate(n=Count("pk")).values_list("label", "n"))
    cards = []
    for label in known:
        mapping = describe_mapping(label.name, label.mappings.get("local", [])) if project.backend == "local" else None
        ids = list(Exemplar.objects.filter(label=label).order_by("-created_at", "-pk")
                   .values_list("pk", flat=True)[:PICTURES_PER_CLASS * 3])
        card = ClassCard(label=label, key=keys.get(label.pk), mapping=mapping, exemplars=ids,
                         human_labels=counts.get(label.pk, 0))
        if not ids and not card.human_labels:
            card.stand_ins = stand_ins(label)
        cards.append(card)
    return cards


def stand_ins(label: Label, limit: int = PICTURES_PER_CLASS) -> list[tuple[int, float]]:
    """Auto-accepted items of the class the model was surest of: pictures to compare with until
    people have labelled some. Display only: they are not exemplars and train nothing."""
    floor = max(STAND_IN_MIN_SCORE, label.accept_threshold)
    rows = (Item.objects.filter(project=label.project_id, status=Item.Status.AUTO_ACCEPTED, top_label=label.name)
            .filter(Q(top_score__gte=floor)).order_by("-top_score", "-pk").values_list("pk", "top_score")[:limit])
    return list(rows)
