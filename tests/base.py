"""The cast (a project admin, a reviewer, an outsider) and helpers that make real images."""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from functools import cache

import numpy as np
from django.contrib.auth import get_user_model
from django.utils import timezone
from PIL import Image

from classify.models import Item, Label, Membership, Project
from classify.services import projects
from reviewer import selectors as review_selectors
from reviewer import services as review_services

MEDIA_BUCKET = "loupe-media-test"  # the bucket of the s3_media fixture (tests/conftest.py)

PASSWORD = "correct horse battery staple"
COLOURS = {"red": "#ff0000", "green": "#00ff00", "blue": "#0000ff"}


def make_user(username: str, **extra):
    return get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)


def make_colour_project(slug: str = "colours", *, admin=None, reviewer=None, threshold: float = 0.8,
                        config: dict | None = None) -> Project:
    """A project on the deterministic test backend: red, green, blue (+ unknown)."""
    project = projects.create_project(slug=slug, labels=list(COLOURS), backend="colour", created_by=admin)
    for name, colour in COLOURS.items():
        Label.objects.filter(project=project, name=name).update(
            mappings={"colour": [colour]}, accept_threshold=threshold, audit_rate=0.0
        )
    # Solid colours are perfectly flat: the blur check would reject every one of them.
    Project.objects.filter(pk=project.pk).update(backend_config=config or {}, min_sharpness=0)
    project.refresh_from_db()
    if reviewer is not None:
        Membership.objects.create(project=project, user=reviewer, role=Membership.Role.REVIEWER)
    return project


def claim_next(*, project: Project, reviewer) -> Item | None:
    """Lease the next item of the project's queue to this reviewer, or None when it is empty
    (the review API's claim, for one item)."""
    items = review_services.claim_many(project=project, reviewer=reviewer, limit=1)
    return items[0] if items else None


def label_directly(*, item: Item, labels, reviewer):
    """Lease this very item to the reviewer and decide it: a reviewer's whole round trip, for tests
    that need human labels on chosen items. The queue's rules apply (LeaseLost otherwise)."""
    if not review_selectors.reviewable_items(item.project, reviewer).filter(pk=item.pk).exists():
        raise review_services.LeaseLost("This item is not waiting for your decision, or a colleague has it.")
    token = uuid.uuid4()
    expires = timezone.now() + timedelta(seconds=item.project.lease_seconds)
    Item.objects.filter(pk=item.pk).update(lease_owner=reviewer, lease_token=token, lease_expires_at=expires)
    return review_services.record_decision(token=str(token), reviewer=reviewer, labels=labels)


def solid_image(rgb: tuple[int, int, int], size: tuple[int, int] = (96, 80), fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_image(rgb: tuple[int, int, int], seed: int, size: tuple[int, int] = (96, 80)) -> bytes:
    """A distinct image (different pixels, so a different hash) with the given mean colour."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(rgb) + rng.integers(-20, 21, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@cache
def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photographs (chelsea, coffee, rocket, astronaut...)."""
    from skimage import data

    return np.asarray(getattr(data, name)())


def photo_bytes(name: str, *, fmt: str = "JPEG", crop: tuple[float, float, float, float] | None = None,
                mirror: bool = False) -> bytes:
    image = Image.fromarray(photo(name)).convert("RGB")
    if crop:
        w, h = image.size
        image = image.crop((int(crop[0] * w), int(crop[1] * h), int(crop[2] * w), int(crop[3] * h)))
    if mirror:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=92)
    return buffer.getvalue()


def make_review_item(project: Project, scores: dict[str, float] | None = None, **fields):
    """An item waiting for review with a prediction, made directly (no pipeline), with a real image."""
    from django.core.files.base import ContentFile

    from classify.models import Item, Prediction

    names = list(project.labels.values_list("name", flat=True))
    scores = scores or {name: round(1 / len(names), 4) for name in names}
    ranked = sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
    margin = ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0.0)
    item = Item(project=project, sha256=fields.pop("sha256", "f" * 64), width=96, height=80,
                status=Item.Status.NEEDS_REVIEW, top_label=ranked[0][0], top_score=ranked[0][1], margin=margin,
                **fields)
    item.image.save("x.jpg", ContentFile(solid_image((200, 30, 30), fmt="JPEG")), save=False)
    item.save()
    Prediction.objects.create(item=item, backend=project.backend, model_version="test", scores=scores,
                              top_label=ranked[0][0], top_score=ranked[0][1], margin=margin, latency_ms=1.0,
                              thresholds={}, decision="needs_review", reason="test")
    return item
