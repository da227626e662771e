"""Creating a project with its classes and the unknown/other class every project has; what
removing a member sets free."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import transaction

from classify.backends.local import suggest_imagenet_classes
from classify.models import Item, Label, Membership, Project

UNKNOWN_LABEL = "unknown"


def create_project(
    *, slug: str, name: str = "", labels: Sequence[str], backend: str = "", created_by=None
) -> Project:
    """A project with its classes and the unknown/other class every project has.

    For the local backend, each class starts with the ImageNet classes whose names match it, and
    the project learns in automatic mode with the ``learning`` review order (docs/retraining.md).
    """
    backend = backend or settings.LOUPE_DEFAULT_BACKEND
    names = [name.strip() for name in labels if name.strip()]
    if len(set(names)) != len(names) or UNKNOWN_LABEL in names:
        raise ValueError(f"class names must be distinct and not {UNKNOWN_LABEL!r}")
    learns = backend == "local"  # a head Loupe trains itself: the loop can close by itself
    with transaction.atomic():
        project = Project.objects.create(
            slug=slug, name=name or slug, backend=backend, created_by=created_by,
            learning_mode=Project.LearningMode.AUTOMATIC if learns else Project.LearningMode.APPROVAL,
            review_order=Project.ReviewOrder.LEARNING if learns else Project.ReviewOrder.MARGIN,
        )
        for order, label in enumerate(names):
            mappings = {"local": suggest_imagenet_classes(label)} if backend == "local" else {}
            Label.objects.create(project=project, name=label, order=order, mappings=mappings)
        Label.objects.create(
            project=project, name=UNKNOWN_LABEL, order=len(names), is_unknown=True,
            description="None of the project's classes: the rejection class.",
        )
        if created_by is not None:
            Membership.objects.create(project=project, user=created_by, role=Membership.Role.ADMIN)
    return project


def release_leases(*, project: Project, user) -> int:
    """Give back every lease ``user`` holds in ``project`` (they were removed from it), so the
    items go straight back to the queue instead of waiting for the leases to run out. Returns how
    many were released."""
    return Item.objects.filter(project=project, lease_owner=user).update(
        lease_owner=None, lease_token=None, lease_expires_at=None)
