"""Exemplars: labelled pictures that show reviewers (and the trained head) what a class looks like."""

from __future__ import annotations

from django.conf import settings
from django.core.files.base import ContentFile

from classify import pipeline
from classify.images import ImageRejected
from classify.models import Exemplar, Item, Label


def promote_to_exemplar(*, item: Item) -> Exemplar:
    """Make a labelled item an exemplar of its class (a copy: deleting the item keeps it)."""
    if item.label is None:
        raise ValueError(f"item #{item.pk} has no label yet")
    with item.image.open("rb") as handle:
        data = handle.read()
    exemplar = Exemplar(label=item.label, sha256=item.sha256, embedding=item.embedding)
    exemplar.image.save("exemplar.jpg", ContentFile(data), save=True)
    return exemplar


def add_exemplar(*, label: Label, data: bytes) -> Exemplar:
    """Store an uploaded picture as an exemplar of ``label`` (the project page's drop zones,
    ``create_project --exemplars``), checked by ``prepare_exemplar``. Raises ``ImageRejected``
    with the reason to show."""
    prepared = prepare_exemplar(label=label, data=data)
    exemplar = Exemplar(label=label, sha256=prepared.sha256)
    exemplar.image.save("exemplar.jpg", ContentFile(prepared.jpeg), save=True)
    return exemplar


def prepare_exemplar(*, label: Label, data: bytes) -> pipeline.PreparedImage:
    """Check an uploaded picture as an exemplar of ``label`` and return what to store: the
    re-encoded JPEG (pixels only) and its hash. Every uploaded exemplar goes through here
    (``add_exemplar``, the admin's exemplar inline, which saves the file itself), so none skips a check.

    The same checks as any upload: the caller refuses an oversized file first
    (``intake.check_upload_size``, before reading it), then the real format, the pixel limit and
    the project's quality rules; then one copy of a picture per class. ``label`` may be a class
    not saved yet (the admin's add page): it has no exemplars to compare with. The unknown class
    takes none: it is what matches no class, and the head would learn it as a class of its own
    (the API and the drop zones never offer it; the admin's class page did). Raises
    ``ImageRejected`` with the reason to show.
    """
    if label.is_unknown:
        raise ImageRejected(f"{label.name} is where pictures that match no class go: it takes no exemplars.")
    prepared = pipeline.preprocess(data, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS,
                                   max_bytes=settings.LOUPE_DECODE_MAX_BYTES)
    problems = pipeline.check_quality(prepared, rules=label.project.quality_rules)
    if problems:
        raise ImageRejected(" ".join(problems))
    if label.pk is not None and Exemplar.objects.filter(label=label, sha256=prepared.sha256).exists():
        raise ImageRejected(f"This picture is already an exemplar of {label.name}.")
    return prepared


def remove_exemplar(*, exemplar: Exemplar) -> None:
    """Delete an exemplar and its stored picture."""
    exemplar.image.delete(save=False)
    exemplar.delete()
