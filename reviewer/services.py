"""Writes for the review queue: leases, decisions, skips, undo, consensus (exports: ``reviewer.export.runs``).

Claiming is a short transaction that writes a lease on the item row; no lock is held while a
person looks at the image. A decision is a compare-and-set on that lease: a stale or foreign
lease stores nothing (``LeaseLost``, HTTP 409), and the unique lease token on ``Decision`` makes a
double submit store one decision.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Sequence
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, JSONField, OuterRef, Q, Subquery, UUIDField, Value, When
from django.db.models.functions import JSONObject
from django.utils import timezone

from classify import events
from classify.models import Item, Label, Prediction, Project
from classify.retrain.runs import schedule_refit_check
from classify.selectors import LATEST_FIRST, is_project_admin, latest_prediction, projects_for
from classify.services import learning
from classify.services.lifecycle import transition

from . import selectors
from .models import Decision

CLAIM_TRIES = 8


class ReviewError(Exception):
    """A review action that cannot be done; the message is for the person."""

    status = 400


class LeaseLost(ReviewError):
    """The lease ran out, or belongs to someone else, or was used already."""

    status = 409


class DecisionRefused(ReviewError):
    status = 400


# --- Claiming --------------------------------------------------------------------------------


def claim_many(*, project: Project, reviewer, limit: int, top_label: str | None = None,
               exclude: Sequence[int] = ()) -> list[Item]:
    """Lease up to ``limit`` items at once (prefetching, grid mode), with the database's best way:
    ``claim_skip_locked`` on PostgreSQL, ``claim_conditional`` elsewhere."""
    claim = claim_skip_locked if connection.features.has_select_for_update_skip_locked else claim_conditional
    return claim(project=project, reviewer=reviewer, limit=limit, top_label=top_label, exclude=exclude)


def claim_skip_locked(*, project: Project, reviewer, limit: int, top_label: str | None = None,
                      exclude: Sequence[int] = ()) -> list[Item]:
    """``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL): concurrent reviewers pass each other by,
    and the locked rows are leased in the same short transaction."""
    with transaction.atomic():
        for pivot in _pivots(project):
            candidates = _candidates(project, reviewer, top_label, exclude, pivot)
            locked = list(candidates.select_for_update(skip_locked=True, of=("self",))[:limit])
            if locked:
                return _lease(locked, project, reviewer)
    return []


def claim_conditional(*, project: Project, reviewer, limit: int, top_label: str | None = None,
                      exclude: Sequence[int] = ()) -> list[Item]:
    """A conditional UPDATE per candidate (any database; SQLite serialises writers anyway): a
    candidate a colleague leased first is passed over, and the search runs again, up to
    ``CLAIM_TRIES`` times."""
    pivot = _pivots(project)[0]
    claimed: list[Item] = []
    for attempt in range(CLAIM_TRIES):
        pivot = pivot if attempt == 0 else None
        found = list(_candidates(project, reviewer, top_label, exclude, pivot)[: limit - len(claimed)])
        if not found and pivot is not None:
            continue
        if not found:
            break
        claimed += _lease(found, project, reviewer)
        if len(claimed) >= limit:
            break
    return claimed


def _pivots(project: Project) -> list[str | None]:
    """Random order: start at a random point of the content-hash order (an index walk), wrapping
    round when nothing lies after it, instead of ORDER BY random() over every waiting item."""
    return [secrets.token_hex(32), None] if project.review_order == Project.ReviewOrder.RANDOM else [None]


def _candidates(project: Project, reviewer, top_label: str | None, exclude: Sequence[int], pivot: str | None):
    queryset = selectors.reviewable_items(project, reviewer).filter(project__in=projects_for(reviewer))
    if top_label is not None:
        queryset = queryset.filter(top_label=top_label).order_by("-top_score", "pk")
    if exclude:
        queryset = queryset.exclude(pk__in=exclude)
    if pivot is not None:
        queryset = queryset.filter(sha256__gte=pivot)
    return queryset


def _lease(items: list[Item], project: Project, reviewer) -> list[Item]:
    """Lease candidates read a moment ago, each with its own token, in one conditional UPDATE
    (still waiting, still free); the objects get their lease, not a second read. Returns the
    ones leased: all of them when this transaction locked them (PostgreSQL), else those no
    colleague took in between (one more query only then)."""
    now = timezone.now()
    expires = now + timedelta(seconds=project.lease_seconds)
    tokens = {item.pk: uuid.uuid4() for item in items}
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    leased = Item.objects.filter(free, pk__in=tokens, status=Item.Status.NEEDS_REVIEW).update(
        lease_owner=reviewer, lease_expires_at=expires,
        lease_token=Case(*[When(pk=pk, then=Value(token)) for pk, token in tokens.items()], output_field=UUIDField()),
    )
    if leased < len(items):
        mine = set(Item.objects.filter(lease_token__in=tokens.values()).values_list("pk", flat=True))
        items = [item for item in items if item.pk in mine]
    for item in items:
        item.lease_owner, item.lease_token, item.lease_expires_at = reviewer, tokens[item.pk], expires
        item.project = project
    return items


def renew(*, tokens: Sequence[str], reviewer) -> list[str]:
    """Extend the reviewer's live leases; returns the tokens that are still theirs (a lease in a
    project they no longer belong to is not)."""
    kept = []
    for token in tokens:
        item = (Item.objects.filter(lease_token=_uuid(token), lease_owner=reviewer, project__in=projects_for(reviewer))
                .select_related("project").first())
        if item is None or item.status != Item.Status.NEEDS_REVIEW:
            continue
        expires = timezone.now() + timedelta(seconds=item.project.lease_seconds)
        if Item.objects.filter(pk=item.pk, lease_token=item.lease_token).update(lease_expires_at=expires):
            kept.append(str(token))
    return kept


def release(*, token: str, reviewer) -> bool:
    """Give a leased item back to the queue without deciding (grid mode's flagged items)."""
    return bool(_held(token, reviewer).update(lease_owner=None, lease_token=None, lease_expires_at=None))


def _uuid(token) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(token))
    except ValueError:
        return None


def _held(token: str, reviewer):
    """The item this live lease is on, if the lease is the reviewer's and they are still a member
    of the item's project (membership is checked on every lease operation, not only at claim)."""
    return Item.objects.filter(lease_token=_uuid(token), lease_owner=reviewer, project__in=projects_for(reviewer),
                               lease_expires_at__gte=timezone.now(), status=Item.Status.NEEDS_REVIEW)


# --- Deciding --------------------------------------------------------------------------------


def record_decision(*, token: str, reviewer, labels: Sequence[Label], seconds_spent: float | None = None) -> Decision:
    """Store a person's label(s) for the item they hold, and move the item on.

    With consensus, the item stays in review until ``reviews_needed`` people have decided; if they
    agree it is ``reviewed``, if not it is escalated to a project admin, whose decision is final.
    The returned decision's ``item.status`` is where the item stands now. A fixed handful of
    statements whatever the backlog; the refit check runs on the training worker after commit.
    """
    refused: ReviewError | None = None
    try:
        with transaction.atomic():
            item = _with_shown_prediction(_held(token, reviewer).select_for_update(of=("self",))
                                          .select_related("project")).first()
            if item is None:
                refused = LeaseLost("This item is no longer yours to decide (the lease ran out or a colleague has it).")
            else:
                try:
                    labels = _valid_labels(item, labels)
                except DecisionRefused as exc:
                    refused = exc
                else:
                    decision = _store(item, reviewer, Decision.Kind.LABEL, token, labels=labels,
                                      seconds_spent=seconds_spent)
                    _settle(item, reviewer, decision, labels)
    except IntegrityError:  # the lease's one decision exists already (a double submit)
        raise LeaseLost("This decision was stored already.") from None
    if refused is not None:
        raise refused
    decision.item = item
    return decision


SHOWN_FIELDS = ("scores", "backend", "model_version", "decision", "reason")


def _with_shown_prediction(items):
    """The item's latest prediction, in the same query as the item (one JSON subquery): what the
    reviewer was shown, kept on the decision, and what the ``item.settled`` event reports."""
    latest = Prediction.objects.filter(item=OuterRef("pk")).order_by(*LATEST_FIRST)
    shown = latest.annotate(shown=JSONObject(id="pk", **{name: name for name in SHOWN_FIELDS})).values("shown")[:1]
    return items.annotate(shown_prediction=Subquery(shown, output_field=JSONField()))


def _shown_prediction(item: Item) -> Prediction | None:
    """The prediction ``_with_shown_prediction`` read with the item (an unsaved copy of the fields it
    names), or one query for an item read without it."""
    if not hasattr(item, "shown_prediction"):
        return latest_prediction(item)
    shown = item.shown_prediction
    if isinstance(shown, str):  # a JSON subquery can come back as text (SQLite)
        shown = json.loads(shown)
    if not shown:
        return None
    if isinstance(shown["scores"], str):  # SQLite nests the JSON column as text
        shown["scores"] = json.loads(shown["scores"])
    return Prediction(pk=shown["id"], item_id=item.pk, **{name: shown[name] for name in SHOWN_FIELDS})


def _valid_labels(item: Item, labels: Sequence[Label]) -> list[Label]:
    labels = list(dict.fromkeys(labels))
    if not labels:
        raise DecisionRefused("Pick a class.")
    if any(label.project_id != item.project_id for label in labels):
        raise DecisionRefused("That class belongs to another project.")
    if len(labels) > 1 and not item.project.multi_label:
        raise DecisionRefused("This project takes one class per image.")
    if len(labels) > 1 and any(label.is_unknown for label in labels):
        raise DecisionRefused("Unknown/other cannot be combined with other classes.")
    return labels


def _store(item: Item, reviewer, kind: str, token, *, labels=(), seconds_spent=None, supersedes=None) -> Decision:
    """The decision row and its labels (two INSERTs). The prediction shown comes from
    ``_with_shown_prediction`` when the item was read with it, else one query. Callers run it in
    their transaction and turn an ``IntegrityError`` (a second decision on one lease) into
    ``LeaseLost``."""
    prediction = _shown_prediction(item)
    prediction_id, scores = (prediction.pk, prediction.scores) if prediction else (None, None)
    decision = Decision.objects.create(
        item=item, reviewer=reviewer, kind=kind, label=labels[0] if labels else None, prediction_id=prediction_id,
        scores_shown=scores, lease_token=_uuid(token) if token else None, seconds_spent=seconds_spent,
        audit=item.audit, supersedes=supersedes,
    )
    if labels:
        Decision.labels.through.objects.bulk_create(
            [Decision.labels.through(decision_id=decision.pk, label_id=label.pk) for label in labels])
    return decision


def _settle(item: Item, reviewer, decision: Decision, labels: list[Label]) -> None:
    """Release the lease and, once enough people have decided, finish the item. With one review
    needed (the usual case) this decision is the final one: no other decision is read."""
    release_fields = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}
    if item.reviews_needed <= 1 and not item.escalated:
        _finish(item, [(decision, frozenset(labels))], reviewer, release_fields)
        return
    live = [(d, frozenset(d.labels.all())) for d in
            Decision.objects.filter(item=item, kind=Decision.Kind.LABEL, undone=False).select_related("reviewer")
            .prefetch_related("labels").order_by("created_at", "pk")]
    if item.escalated and is_project_admin(reviewer, item.project):
        _finish(item, live, reviewer, release_fields)
    elif len(live) < item.reviews_needed:
        Item.objects.filter(pk=item.pk).update(**release_fields)
    elif len({given for _, given in live}) == 1:
        _finish(item, live, reviewer, release_fields)
    else:
        Item.objects.filter(pk=item.pk).update(
            escalated=True, status_reason="Reviewers disagreed: a project admin decides.", **release_fields
        )
        item.escalated = True


def _finish(item: Item, live: list[tuple[Decision, frozenset]], reviewer, release_fields: dict) -> None:
    """The item is reviewed with the last decision's labels (``live``: the live decisions, oldest
    first, each with its labels); in consensus, each decision is marked agreeing or not."""
    final, final_labels = live[-1]
    if len(live) > 1:
        for decision, given in live:
            Decision.objects.filter(pk=decision.pk).update(agrees=given == final_labels)
    names = ", ".join(sorted(label.name for label in final_labels))
    reason, now = f"Labelled {names} by {reviewer}.", timezone.now()
    if transition(
        item.pk, to=Item.Status.REVIEWED, reason=reason, label=final.label, labelled_by=reviewer, labelled_at=now,
        updated_at=now, escalated=False, **release_fields,
    ):
        # The event from what is in hand: the item as this UPDATE left it, the prediction read with it.
        item.status, item.status_reason, item.label, item.updated_at = Item.Status.REVIEWED, reason[:500], final.label, now
        item.escalated = False
        events.settled_event(item, prediction=_shown_prediction(item), by=reviewer,
                             answers=[human_answer(decision, given) for decision, given in live])
    if item.audit and item.top_label:
        learning.check_live_precision(project=item.project, label_name=item.top_label)
    schedule_refit_check(item.project)


def human_answer(decision: Decision, labels: frozenset) -> dict:
    """One decision (with its labels) as the ``item.settled`` event lists it (who, what, when, how long)."""
    return {"reviewer": decision.reviewer.get_username(), "labels": sorted(label.name for label in labels),
            "at": decision.created_at.isoformat(), "seconds_spent": decision.seconds_spent}


def skip(*, token: str, reviewer) -> Decision:
    """Pass on an item: it goes back to the queue, and not to this reviewer for an hour."""
    try:
        with transaction.atomic():
            item = _held(token, reviewer).select_for_update().first()
            if item is None:
                raise LeaseLost("This item is no longer yours to skip.")
            decision = _store(item, reviewer, Decision.Kind.SKIP, token)
            Item.objects.filter(pk=item.pk).update(lease_owner=None, lease_token=None, lease_expires_at=None)
    except IntegrityError:
        raise LeaseLost("This decision was stored already.") from None
    return decision


def undo_last(*, project: Project, reviewer) -> Item:
    """Take back the reviewer's last label or skip in this project (a new revision, never a
    delete) and lease the item to them again so they can decide anew."""
    with transaction.atomic():
        last = selectors.last_undoable(project, reviewer)
        if last is None or not projects_for(reviewer).filter(pk=project.pk).exists():
            raise ReviewError("Nothing to undo.")
        item = Item.objects.select_for_update(of=("self",)).select_related("project").get(pk=last.item_id)
        if item.lease_owner_id not in (None, reviewer.pk) and item.lease_expires_at and item.lease_expires_at > timezone.now():
            raise LeaseLost("A colleague is looking at that item now.")
        later = Decision.objects.filter(item=item, kind=Decision.Kind.LABEL, undone=False, pk__gt=last.pk)
        if later.exists():
            raise LeaseLost("A colleague has decided that item since.")
        Decision.objects.filter(pk=last.pk).update(undone=True)
        token = uuid.uuid4()
        _store(item, reviewer, Decision.Kind.UNDO, None, supersedes=last)
        fields = {"lease_owner": reviewer, "lease_token": token,
                  "lease_expires_at": timezone.now() + timedelta(seconds=project.lease_seconds)}
        if item.status == Item.Status.REVIEWED:
            transition(item.pk, to=Item.Status.NEEDS_REVIEW, reason="Decision undone.",
                                         label=None, labelled_by=None, labelled_at=None, **fields)
        else:
            Item.objects.filter(pk=item.pk).update(**fields)
    return Item.objects.select_related("project").get(pk=item.pk)
