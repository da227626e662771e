"""Reads for the review queue: what a reviewer may claim next, candidates, exemplars, pace."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import connection
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from classify.models import BacklogCount, Exemplar, Item, Label, Prediction, Project
from classify.selectors import LATEST_FIRST, is_project_admin, latest_prediction, stand_ins

from .models import Decision

SKIP_MEMORY = timedelta(hours=1)
EXEMPLARS_PER_CLASS = 4


def reviewable_items(project: Project, reviewer, *, now: datetime | None = None) -> QuerySet[Item]:
    """Items this reviewer may claim, in the project's queue order.

    Waiting for review, held by nobody (or by a lease that ran out), not already decided by this
    reviewer (consensus needs independent people), not skipped by them in the last hour, and not
    escalated unless they administer the project.
    """
    now = now or timezone.now()
    mine = Decision.objects.filter(item=OuterRef("pk"), reviewer=reviewer)
    decided = mine.filter(kind=Decision.Kind.LABEL, undone=False)
    skipped = mine.filter(kind=Decision.Kind.SKIP, undone=False, created_at__gte=now - SKIP_MEMORY)
    items = Item.objects.filter(project=project, status=Item.Status.NEEDS_REVIEW).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    ).exclude(Exists(decided)).exclude(Exists(skipped))
    if not is_project_admin(reviewer, project):
        items = items.filter(escalated=False)
    return ordered(items, project.review_order)


def ordered(items: QuerySet[Item], order: str) -> QuerySet[Item]:
    if order == Project.ReviewOrder.OLDEST:
        return items.order_by("created_at", "pk")
    if order == Project.ReviewOrder.RANDOM:
        # Content-hash order: claim_many starts it at a random point for each claim.
        return items.order_by("sha256", "pk")
    if order == Project.ReviewOrder.LEARNING:
        # Where a label teaches most (classify.services.learning.learning_priority); items routed
        # before the order was chosen follow, most uncertain first.
        return items.order_by(F("learning_priority").asc(nulls_last=True), F("margin").asc(nulls_first=True), "pk")
    return items.order_by(F("margin").asc(nulls_first=True), "pk")


def backlog(project: Project, reviewer) -> dict[str, int]:
    """Items waiting for a person, per class the model put them in (held by a colleague or not;
    escalated ones only for the project's admins): one read of ``BacklogCount``, which the
    database keeps as items move, so it costs the same at 100 items or a million. Who
    administers the project is asked only when something is escalated."""
    rows = BacklogCount.objects.filter(project=project, n__gt=0).values_list("top_label", "escalated", "n")
    return _visible_counts(list(rows), project, reviewer)


# The counters every review answer carries, in one statement: the reviewer's labels today (the
# one-row subquery) beside each BacklogCount row of the project (a LEFT JOIN, so the pace comes
# back with nothing waiting too). Plain SQL because it runs twice per claim+decision pair, and
# building the same query with the ORM (a subquery, COALESCE, GROUP BY) cost more CPU than the
# query itself.
COUNTERS_SQL = """
SELECT b.top_label, b.escalated, b.n, p.pace
FROM (SELECT COUNT(*) AS pace FROM {decision} d JOIN {item} i ON i.id = d.item_id
      WHERE d.reviewer_id = %s AND i.project_id = %s AND d.kind = %s AND NOT d.undone AND d.created_at >= %s) p
LEFT JOIN {backlog} b ON b.project_id = %s AND b.n > 0
"""


def counters(project: Project, reviewer) -> tuple[dict[str, int], int]:
    """``backlog`` and ``pace_today`` in one statement (``COUNTERS_SQL``), whatever the backlog."""
    sql = COUNTERS_SQL.format(decision=Decision._meta.db_table, item=Item._meta.db_table,
                              backlog=BacklogCount._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, [reviewer.pk, project.pk, Decision.Kind.LABEL, _today(), project.pk])
        rows = cursor.fetchall()
    backlog_rows = [(label, bool(escalated), n) for label, escalated, n, _ in rows if n is not None]
    return _visible_counts(backlog_rows, project, reviewer), rows[0][3]


def _visible_counts(rows: list[tuple[str, bool, int]], project: Project, reviewer) -> dict[str, int]:
    admin = any(escalated for _, escalated, _ in rows) and is_project_admin(reviewer, project)
    counts: dict[str, int] = {}
    for top_label, escalated, n in rows:
        if admin or not escalated:
            counts[top_label] = counts.get(top_label, 0) + n
    return counts


def remaining(project: Project, reviewer, *, counts: dict[str, int] | None = None) -> int:
    """How many items wait for a person (held by a colleague or not); from ``counts`` (``backlog``)
    when the caller has read them already."""
    return sum((backlog(project, reviewer) if counts is None else counts).values())


def waiting_by_class(project: Project, reviewer, *, counts: dict[str, int] | None = None) -> dict[str, int]:
    """How many items wait per class the model put them in (grid mode), largest first; items
    without a class (their backend failed) are in ``remaining`` only."""
    counts = backlog(project, reviewer) if counts is None else counts
    return {name: counts[name] for name in sorted(counts, key=lambda name: (-counts[name], name)) if name}


def pace_today(reviewer, project: Project) -> int:
    """The reviewer's labels in this project today that still stand (an undone one does not count)."""
    return _todays_labels(reviewer, project).count()


def _todays_labels(reviewer, project: Project) -> QuerySet[Decision]:
    return Decision.objects.filter(reviewer=reviewer, item__project=project, kind=Decision.Kind.LABEL,
                                   undone=False, created_at__gte=_today())


def _today() -> datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def hidden_from(project: Project, reviewer, *, now: datetime | None = None) -> dict:
    """Why items that wait for a person are not offered to this reviewer right now: the ones they
    skipped in the last hour (and when the first comes back), the ones colleagues hold, and the
    ones they decided that wait for another reviewer (consensus). The empty review screen says so.
    Each count starts from a small set (live leases, the reviewer's own decisions), not from the
    waiting items, so it costs the same at any backlog."""
    now = now or timezone.now()
    waiting = Item.objects.filter(project=project, status=Item.Status.NEEDS_REVIEW)
    if not is_project_admin(reviewer, project):
        waiting = waiting.filter(escalated=False)
    mine = Decision.objects.filter(item=OuterRef("pk"), reviewer=reviewer, undone=False)
    decided = waiting.filter(Exists(mine.filter(kind=Decision.Kind.LABEL)))
    skips = Decision.objects.filter(item__in=waiting.exclude(pk__in=decided.values("pk")), reviewer=reviewer,
                                    kind=Decision.Kind.SKIP, undone=False, created_at__gte=now - SKIP_MEMORY)
    first_skip = skips.order_by("created_at").values_list("created_at", flat=True).first()
    # Only leased items carry a token: the unique index on it finds them, not a scan of every waiting item.
    held = waiting.filter(lease_token__isnull=False, lease_expires_at__gte=now).exclude(lease_owner=reviewer)
    return {"skipped": skips.values("item").distinct().count(),
            "skipped_back_at": (first_skip + SKIP_MEMORY).isoformat() if first_skip else None,
            "held": held.count(), "awaiting_others": decided.count()}


@dataclass(frozen=True)
class Pictures:
    """Pictures of a class to compare with: ``auto`` when they are confident auto-accepted items
    standing in because the class has no exemplars or human labels yet (shown, never trained on)."""

    urls: list[str]
    auto: bool = False


@dataclass(frozen=True)
class Candidate:
    label: Label
    score: float | None
    pictures: Pictures


def candidates_for(item: Item, labels: list[Label], limit: int, *, exemplars: dict[int, Pictures]) -> list[Candidate]:
    """The classes to offer for keys 1-9: the model's ranking (unknown aside, it has key 0), with
    each class's pictures from ``exemplars`` (``exemplar_urls``, once per request)."""
    scores = item_scores(item)
    known = [label for label in labels if not label.is_unknown]
    known.sort(key=lambda label: -(scores.get(label.name) or 0.0))
    return [Candidate(label, scores.get(label.name), exemplars.get(label.pk, Pictures([]))) for label in known[:limit]]


def item_scores(item: Item) -> dict[str, float]:
    prediction = latest_prediction(item)
    return dict(prediction.scores) if prediction else {}


def with_latest_predictions(items: list[Item]) -> list[Item]:
    """Attach each item's latest prediction (for ``latest_prediction``) in one query for all."""
    latest: dict[int, Prediction] = {}
    for prediction in (Prediction.objects.filter(item_id__in=[item.pk for item in items])
                       .select_related("reused_from").order_by("item_id", *LATEST_FIRST)):
        latest.setdefault(prediction.item_id, prediction)
    for item in items:
        item._prefetched_objects_cache = {**getattr(item, "_prefetched_objects_cache", {}),
                                          "predictions": [latest[item.pk]] if item.pk in latest else []}
    return items


EXEMPLAR_CACHE_SECONDS = 60


def exemplar_urls(project: Project, labels: list[Label], per_class: int = EXEMPLARS_PER_CLASS) -> dict[int, Pictures]:
    """Up to ``per_class`` pictures of each class: its exemplars, else its latest human-labelled
    items; with neither, its most confident auto-accepted items (marked ``auto``). Shared by
    every claim of the project for EXEMPLAR_CACHE_SECONDS (the cache), and on a miss found in two
    queries whatever the number of classes (plus one per class with no human-labelled picture)."""
    key = exemplar_cache_key(project, per_class)
    urls = cache.get(key)
    if urls is None:
        urls = _exemplar_urls(labels, per_class)
        cache.set(key, urls, EXEMPLAR_CACHE_SECONDS)
    return urls


def exemplar_cache_key(project: Project, per_class: int = EXEMPLARS_PER_CLASS) -> str:
    return f"loupe:exemplars:{project.pk}:{project.created_at.timestamp():.6f}:{per_class}"


def _exemplar_urls(labels: list[Label], per_class: int) -> dict[int, Pictures]:
    urls: dict[int, list[str]] = {label.pk: [] for label in labels}
    exemplars = Exemplar.objects.filter(label__in=labels).order_by("label_id", "-created_at", "-pk")
    for label_id, pk in exemplars.values_list("label_id", "pk"):
        if len(urls[label_id]) < per_class:
            urls[label_id].append(reverse("reviewer:exemplar_image", args=[pk]))
    short = [label for label in labels if len(urls[label.pk]) < per_class]
    for label_id, pk in _latest_reviewed(short, per_class):
        if len(urls[label_id]) < per_class:
            urls[label_id].append(reverse("classify:item_image", args=[pk]))
    pictures = {label_id: Pictures(found) for label_id, found in urls.items() if found}
    for label in labels:
        if label.pk not in pictures:
            pictures[label.pk] = Pictures([reverse("classify:item_image", args=[pk])
                                           for pk, _ in stand_ins(label, per_class)], auto=True)
    return pictures


def _latest_reviewed(labels: list[Label], per_class: int) -> list[tuple[int, int]]:
    """(label id, item id) of each class's latest human-labelled items, newest first: one UNION
    of per-class index walks where the database can limit inside a UNION (PostgreSQL), else one
    query per class."""
    per_label = [Item.objects.filter(label=label, status=Item.Status.REVIEWED).order_by("-labelled_at", "-pk")
                 .values_list("label_id", "pk", "labelled_at")[:per_class] for label in labels]
    if not per_label:
        return []
    if connection.features.supports_slicing_ordering_in_compound:
        rows = list(per_label[0].union(*per_label[1:], all=True))
    else:
        rows = [row for query in per_label for row in query]
    rows.sort(key=lambda row: (row[2], row[1]), reverse=True)
    return [(label_id, pk) for label_id, pk, _ in rows]


def last_undoable(project: Project, reviewer) -> Decision | None:
    return (
        Decision.objects.filter(item__project=project, reviewer=reviewer, undone=False,
                                kind__in=[Decision.Kind.LABEL, Decision.Kind.SKIP])
        .select_related("item")
        .order_by("-created_at", "-pk")
        .first()
    )


def audit_accuracy(project: Project) -> dict[str, dict[str, int]]:
    """Per class: how many sampled auto-accepts people checked, and how many they confirmed."""
    stats: dict[str, dict[str, int]] = {}
    checks = Decision.objects.filter(item__project=project, audit=True, kind=Decision.Kind.LABEL, undone=False)
    for decision in checks.select_related("item", "label"):
        row = stats.setdefault(decision.item.top_label, {"checked": 0, "confirmed": 0})
        row["checked"] += 1
        row["confirmed"] += decision.label is not None and decision.label.name == decision.item.top_label
    return stats


def agreement_rates(project: Project) -> dict[str, dict]:
    """Per reviewer and per class: share of consensus decisions that matched the final label."""
    rates: dict[str, dict] = {"reviewers": {}, "classes": {}}
    resolved = Decision.objects.filter(item__project=project, kind=Decision.Kind.LABEL, agrees__isnull=False)
    for decision in resolved.select_related("reviewer", "item__label"):
        for key, name in (("reviewers", decision.reviewer.get_username()),
                          ("classes", decision.item.label.name if decision.item.label else "")):
            row = rates[key].setdefault(name, {"decisions": 0, "agreed": 0})
            row["decisions"] += 1
            row["agreed"] += bool(decision.agrees)
    return rates


def exportable_items(project: Project, *, include_auto: bool = False) -> QuerySet:
    """The items an export takes, in id order (a stable order makes re-runs byte-identical), as
    named tuples: no model instances, whose file fields form reference cycles that only the
    cycle collector frees (memory would grow with the project's size).

    ``labelled`` is when the item got its label: a person's decision, else (an auto-accepted
    item) its latest prediction, else its upload; the prediction is looked up only for items
    without a decision time. ``duplicate_status`` is the status of the item it duplicates, if any.
    """
    statuses = [Item.Status.REVIEWED, *([Item.Status.AUTO_ACCEPTED] if include_auto else [])]
    predicted_at = Prediction.objects.filter(item=OuterRef("pk")).order_by(*LATEST_FIRST).values("created_at")[:1]
    return (
        Item.objects.filter(project=project, status__in=statuses).order_by("pk")
        .annotate(labelled=Coalesce("labelled_at", Subquery(predicted_at), "created_at"),
                  duplicate_status=F("duplicate_of__status"))
        .values_list("id", "status", "image", "width", "height", "top_score", "labelled", "duplicate_of_id",
                     "label_id", "duplicate_status", named=True)
    )


def decided_labels(project: Project) -> QuerySet:
    """``(item id, decision id, label id)`` for every class of every live LABEL decision of the
    project's reviewed items, in item id order and, per item, newest decision first: read in one
    pass beside ``exportable_items`` (both in id order), so an export asks one query for all the
    decisions, not one per batch of items. Plain tuples (no model instances)."""
    return (Decision.labels.through.objects
            .filter(decision__item__project=project, decision__item__status=Item.Status.REVIEWED,
                    decision__kind=Decision.Kind.LABEL, decision__undone=False)
            .order_by("decision__item_id", "-decision__created_at", "-decision_id")
            .values_list("decision__item_id", "decision_id", "label_id"))
