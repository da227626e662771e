"""Reads used by more than one caller. Every query a person can trigger is scoped here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import Http404
from django.utils import timezone

from .backends.imagenet import Suggestion, describe_mapping
from .models import CloudResource, Exemplar, Item, Label, Membership, Prediction, Project, Spend, StatusCount


def projects_for(user) -> QuerySet[Project]:
    """The projects a user may see: their memberships (superusers see all), narrowed to one
    project when the request came with an API token scoped to it (``user.api_token``)."""
    if not user.is_authenticated:
        return Project.objects.none()
    projects = Project.objects.all() if user.is_superuser else Project.objects.filter(memberships__user=user).distinct()
    token = getattr(user, "api_token", None)
    if token is not None and token.project_id is not None:
        projects = projects.filter(pk=token.project_id)
    return projects


def project_for(user, slug: str) -> Project:
    """The project, or 404 when it does not exist *or* the user may not see it (no leak).

    Whether the user administers it comes in the same query and is remembered on the user object
    (``is_project_admin`` then asks nothing)."""
    projects = projects_for(user).filter(slug=slug)
    member = user.is_authenticated and not user.is_superuser
    if member:
        admin = Membership.objects.filter(project=OuterRef("pk"), user=user, role=Membership.Role.ADMIN)
        projects = projects.annotate(user_is_admin=Exists(admin))
    project = projects.first()
    if project is None:
        raise Http404("No such project.")
    if member:
        user.__dict__.setdefault("_loupe_admin_of", {})[project.pk] = project.user_is_admin
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


#: What a row of the project page's item list shows (the page's project gives the rest).
ITEM_LIST_FIELDS = ("id", "project_id", "status", "status_reason", "original_filename", "duplicate_of_id",
                    "near_duplicate_of_id", "label__name")


def item_page(project: Project, *, status: str = "", before: int | None = None, size: int) -> list[Item]:
    """One page of the project's item list, newest first: the ``size`` items older than ``before``
    (a keyset page), in ``status`` when given, with the columns the list shows.

    The page's ids come first, from the ``(project, status, id)`` or ``(project, id)`` index
    alone: asked for the rows directly, PostgreSQL walked the primary key backwards and filtered,
    reading every newer item of other statuses (200,000 of them for "needs review" at a million
    items); then the rows of those ids.
    """
    ids = Item.objects.filter(project=project)
    if status:
        ids = ids.filter(status=status)
    if before is not None:
        ids = ids.filter(pk__lt=before)
    ids = ids.order_by("-pk").values("pk")[:size]
    return list(Item.objects.filter(pk__in=ids).select_related("label").only(*ITEM_LIST_FIELDS).order_by("-pk"))


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
    """The project's number of items per status (every status, zeros included)."""
    return status_counts_of([project])[project.pk]


def status_counts_of(projects: Iterable[Project]) -> dict[int, dict[str, int]]:
    """Per project id, its number of items per status: one small query on ``StatusCount`` (the
    counts the item table's triggers keep, summed), whatever the projects' sizes."""
    counts = {project.pk: dict.fromkeys(Item.Status.values, 0) for project in projects}
    rows = (StatusCount.objects.filter(project_id__in=list(counts)).order_by()
            .values_list("project_id", "status").annotate(total=Sum("n")))
    for project_id, status, total in rows:
        counts[project_id][status] = total
    return counts


def item_count(projects: QuerySet[Project], *, status: str | None = None) -> int:
    """How many items these projects hold (in ``status`` when given), exactly, from the kept
    counts: what a list of a million items shows as its size without counting them."""
    rows = StatusCount.objects.filter(project__in=projects)
    if status is not None:
        rows = rows.filter(status=status)
    return rows.aggregate(total=Sum("n"))["total"] or 0


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


def spend_by_kind(project: Project) -> list[dict]:
    """Paid calls that left no prediction (``Spend``: bake-offs, comparisons, billed failures), per
    kind and backend: their number and cost. The budgets count them with the predictions."""
    rows = (Spend.objects.filter(project=project).values("kind", "backend")
            .annotate(calls=Count("pk"), cost=Sum("cost_usd")).order_by("kind", "backend"))
    return [{**row, "what": Spend.Kind(row["kind"]).label.lower()} for row in rows]


def cascade_counts(project: Project) -> dict:
    """From the recorded predictions: items the cascade answered (a settled near-duplicate, the
    confident first stage) and what each saved, and the calls made to a paid backend."""
    predictions = Prediction.objects.filter(item__project=project)
    near, first = Q(raw__cascade="near_duplicate"), Q(raw__cascade="first_stage")
    free = {"local", "near_duplicate", settings.LOUPE_CASCADE_BACKEND}
    return predictions.aggregate(
        near_duplicate=Count("pk", filter=near), near_duplicate_saved=Sum("saved_usd", filter=near),
        first_stage=Count("pk", filter=first), first_stage_saved=Sum("saved_usd", filter=first),
        paid=Count("pk", filter=Q(reused_from__isnull=True) & ~Q(backend__in=free)),
    )


# --- Number keys of the classes on the review screen ---------------------------------------------
# Each class keeps one key for the whole project: its place in the class list (``Label.order``,
# which project admins change in the admin), 1 to 9; unknown/other is always 0. Classes past the
# ninth have no number key (the search, "/", finds them). Fixed keys let a reviewer's habit hold
# from item to item, as in Label Studio and CVAT; the candidates are still listed by score.

UNKNOWN_KEY = 0
MAX_KEYS = 9


def number_keys(labels: Iterable[Label]) -> dict[int, int]:
    """Label id → its key (1-9, 0 for unknown), for labels in the project's class order."""
    keys: dict[int, int] = {}
    known = 0
    for label in labels:
        if label.is_unknown:
            keys[label.pk] = UNKNOWN_KEY
            continue
        known += 1
        if known <= MAX_KEYS:
            keys[label.pk] = known
    return keys


# --- The project page's classes ------------------------------------------------------------------
# Auto-accepted items are only ever *shown* as stand-ins while a class has no exemplars or human
# labels: they never become exemplars or training data by themselves.

PICTURES_PER_CLASS = 4
#: An auto-accepted item is offered as a stand-in picture only when the model was this sure (or
#: more, when the class's own accept threshold is higher).
STAND_IN_MIN_SCORE = 0.9


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
    counts = dict(StatusCount.objects.filter(project=project, status=Item.Status.REVIEWED, label__in=known)
                  .order_by().values_list("label").annotate(n=Sum("n")).values_list("label", "n"))
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
            .filter(top_score__gte=floor).order_by("-top_score", "-pk").values_list("pk", "top_score")[:limit])
    return list(rows)


def foreign_model_version(project: Project, config: dict) -> str | None:
    """The Custom Labels model version named in backend settings (``project_version_arn``) when it
    is not a version of a Rekognition project recorded for this project, else None: a project
    admin may point their project only at its own models."""
    arn = config.get("project_version_arn") if isinstance(config, dict) else None
    if not arn:
        return None
    owned = CloudResource.objects.filter(project=project, kind=CloudResource.Kind.REKOGNITION_PROJECT)
    if any(str(arn).startswith(f"{record.arn.rsplit('/', 1)[0]}/version/") for record in owned):
        return None
    return str(arn)
