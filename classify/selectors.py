"""Reads used by more than one caller. Every query a person can trigger is scoped here."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import Http404
from django.utils import timezone

from .models import Item, Membership, Prediction, Project


def projects_for(user) -> QuerySet[Project]:
    """The projects a user may see: their memberships (superusers see all)."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def project_for(user, slug: str) -> Project:
    """The project, or 404 when it does not exist *or* the user may not see it (no leak)."""
    project = projects_for(user).filter(slug=slug).first()
    if project is None:
        raise Http404("No such project.")
    return project


def is_project_admin(user, project: Project) -> bool:
    """Whether the user administers the project (remembered on the user object: once a request)."""
    if user.is_superuser:
        return True
    known = user.__dict__.setdefault("_loupe_admin_of", {})
    if project.pk not in known:
        known[project.pk] = Membership.objects.filter(project=project, user=user, role=Membership.Role.ADMIN).exists()
    return known[project.pk]


#: The order "latest prediction" means everywhere: the newest, and of two as new the later row.
LATEST_FIRST = ("-created_at", "-pk")


def items_for(user) -> QuerySet[Item]:
    latest = Prefetch("predictions", queryset=Prediction.objects.order_by(*LATEST_FIRST))
    return (
        Item.objects.filter(project__in=projects_for(user))
        .select_related("project", "label")
        .prefetch_related(latest)
    )


def item_for(user, item_id: int) -> Item:
    item = items_for(user).filter(pk=item_id).first()
    if item is None:
        raise Http404("No such item.")
    return item


def latest_prediction(item: Item) -> Prediction | None:
    """The item's latest prediction (``LATEST_FIRST``): from a prefetch of ``predictions`` when the
    item has one (``items_for``), else one query."""
    prefetched = getattr(item, "_prefetched_objects_cache", {}).get("predictions")
    if prefetched is None:
        return item.predictions.order_by(*LATEST_FIRST).first()
    return max(prefetched, key=lambda prediction: (prediction.created_at, prediction.pk), default=None)


def status_counts(project: Project) -> dict[str, int]:
    counts = {status: 0 for status in Item.Status.values}
    for row in Item.objects.filter(project=project).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def cost_by_day(project: Project, *, days: int = 30) -> list[dict]:
    """Per day: backend calls made, what they cost, and what reused scores saved (newest first)."""
    since = timezone.now() - timedelta(days=days)
    rows = (Prediction.objects.filter(item__project=project, created_at__gte=since)
            .annotate(day=TruncDate("created_at")).values("day")
            .annotate(predictions=Count("pk"), cost=Sum("cost_usd"), saved=Sum("saved_usd")).order_by("-day"))
    return list(rows)


def cost_totals(project: Project) -> dict:
    return Prediction.objects.filter(item__project=project).aggregate(
        predictions=Count("pk"), reused=Count("pk", filter=Q(reused_from__isnull=False)),
        cost=Sum("cost_usd"), saved=Sum("saved_usd"),
    )
