"""The review queue over JSON: the same rules as the pages (which use these endpoints).

- ``POST /api/v1/projects/<slug>/review/claim/`` → 200 a leased item with scores, the model's
  ``top`` class (unknown included), candidates (by score, each with its class's fixed number
  ``key``) and exemplar URLs; 204 when the queue is empty. ``?count=3`` leases several (prefetching).
- ``POST /api/v1/projects/<slug>/review/grid/claim/`` → up to ``grid_size`` items the model put in
  one class (``label`` in the body, else the class with most waiting items), best first.
- ``POST /api/v1/reviews/<token>/decision/`` ``{"labels": ["cat"], "seconds_spent": 2.5}`` → 201;
  409 for a stale, foreign or used lease; 400 for a bad label.
- ``POST /api/v1/reviews/<token>/skip/`` and ``/release/``; ``POST /api/v1/reviews/renew/``
  ``{"tokens": [...]}``; ``POST /api/v1/projects/<slug>/review/undo/`` → the undone item, leased again.
- ``GET /api/v1/projects/<slug>/review/stats/`` → remaining, your labels in the project today, and
  what is hidden from you (your recent skips, colleagues' holds, decisions awaiting consensus).
"""

from __future__ import annotations

import json
import math

from django.http import HttpRequest, HttpResponse, JsonResponse

from classify import selectors as classify_selectors
from classify.api import item_json
from classify.auth import api_error, api_view
from classify.models import Item, Label, Project
from classify.selectors import UNKNOWN_KEY, number_keys

from . import selectors, services

MAX_PREFETCH = 5


def _body(request: HttpRequest) -> dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}", parse_constant=_no_constants)
        except ValueError:
            raise services.DecisionRefused("The body is not valid JSON.") from None
        return data if isinstance(data, dict) else {}
    return {key: request.POST.getlist(key) if key in ("labels", "tokens") else request.POST[key]
            for key in request.POST}


def _no_constants(name: str):
    """JSON has no NaN or Infinity (Python's parser accepts them): refuse them as invalid JSON."""
    raise ValueError(f"{name} is not JSON")


MAX_SECONDS_SPENT = 86_400.0


def _seconds_spent(raw) -> float | None:
    """A reviewer's time on an item: empty, or a finite number of seconds from 0 to a day."""
    if raw in (None, "", []):
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise services.DecisionRefused("seconds_spent must be a number of seconds.")
    try:
        seconds = float(raw)
    except ValueError:
        raise services.DecisionRefused("seconds_spent must be a number of seconds.") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS_SPENT:
        raise services.DecisionRefused(f"seconds_spent must be between 0 and {MAX_SECONDS_SPENT:,.0f}.")
    return seconds


def claim_json(item: Item, reviewer, *, labels: list[Label], exemplars: dict[int, selectors.Pictures]) -> dict:
    """One claim as the API answers it. ``labels`` (the project's classes) and ``exemplars``
    (``selectors.exemplar_urls``) are read once per request; the item's latest prediction comes
    attached (``selectors.with_latest_predictions``)."""
    project = item.project
    scores = selectors.item_scores(item)
    unknown = next(label for label in labels if label.is_unknown)
    payload = item_json(item)
    if item.audit:
        payload["status_reason"] = ""  # an auto-accept check is not announced to the reviewer
    keys = number_keys(labels)
    candidates = selectors.candidates_for(item, labels, project.review_candidates, exemplars=exemplars)
    return {
        "lease": {"token": str(item.lease_token), "expires_at": item.lease_expires_at.isoformat()},
        "item": payload,
        "candidates": [
            {"key": keys.get(c.label.pk), "label": c.label.name, "label_id": c.label.pk, "score": c.score,
             "exemplars": c.pictures.urls, "exemplars_auto": c.pictures.auto}
            for c in candidates
        ],
        "unknown": {"label": unknown.name, "label_id": unknown.pk, "score": scores.get(unknown.name),
                    "key": UNKNOWN_KEY},
        "top": max(scores, key=scores.get) if scores else None,
        "labels": [{"id": label.pk, "name": label.name, "is_unknown": label.is_unknown, "key": keys.get(label.pk)}
                   for label in labels],
        "multi_label": project.multi_label,
    }


def claims_json(project: Project, items: list[Item], reviewer, *, labels: list[Label] | None = None) -> list[dict]:
    """Several claims in a constant number of queries: the classes, the latest predictions and
    the exemplars once for all of them."""
    labels = list(project.labels.all()) if labels is None else labels
    exemplars = selectors.exemplar_urls(project, labels)
    return [claim_json(item, reviewer, labels=labels, exemplars=exemplars)
            for item in selectors.with_latest_predictions(items)]


def stats_json(project: Project, reviewer, *, explain: bool = False,
               counters: tuple[dict[str, int], int] | None = None) -> dict:
    """The counters every answer carries, in one query whatever the backlog (``selectors.counters``:
    the backlog counts the database keeps and the reviewer's labels today; ``counters`` when read
    already). ``explain`` adds what is hidden from this reviewer and why (the stats call the empty
    review screen makes), kept off the claim and decision path."""
    counts, pace = selectors.counters(project, reviewer) if counters is None else counters
    stats = {"remaining": selectors.remaining(project, reviewer, counts=counts),
             "pace_today": pace,
             "by_class": selectors.waiting_by_class(project, reviewer, counts=counts)}
    if explain:
        stats["hidden"] = selectors.hidden_from(project, reviewer)
    return stats


def _error(exc: services.ReviewError) -> JsonResponse:
    return api_error(exc.status, str(exc))


@api_view(methods=("POST",))
def claim(request: HttpRequest, slug: str) -> HttpResponse:
    project = classify_selectors.project_for(request.user, slug)
    try:
        count = min(max(int(request.GET.get("count", 1)), 1), MAX_PREFETCH)
    except ValueError:
        return api_error(400, "count must be a number.")
    items = services.claim_many(project=project, reviewer=request.user, limit=count)
    if not items:
        return HttpResponse(status=204)
    claims = claims_json(project, items, request.user)
    body = claims[0] if count == 1 else {"claims": claims}
    return JsonResponse({**body, **stats_json(project, request.user)})


@api_view(methods=("POST",))
def grid_claim(request: HttpRequest, slug: str) -> HttpResponse:
    project = classify_selectors.project_for(request.user, slug)
    try:
        body = _body(request)
        exclude = [int(pk) for pk in body.get("exclude") or []][:500]  # items this page flagged already
    except (TypeError, ValueError):
        return api_error(400, "exclude must be a list of item ids.")
    except services.ReviewError as exc:
        return _error(exc)
    labels, counters = list(project.labels.all()), selectors.counters(project, request.user)
    wanted = [body["label"]] if body.get("label") else busiest_classes(labels, counters[0])
    for label in wanted:
        items = services.claim_many(project=project, reviewer=request.user, limit=project.grid_size, top_label=label,
                                    exclude=exclude)
        if items:  # leases do not change the backlog counts read above
            return JsonResponse({"label": label, "claims": claims_json(project, items, request.user, labels=labels),
                                 **stats_json(project, request.user, counters=counters)})
    return HttpResponse(status=204)


def busiest_classes(labels: list[Label], counts: dict[str, int]) -> list[str]:
    """The classes (unknown aside) with waiting items, most first, from the backlog counts: the
    grid tries them in turn, since the busiest may hold only items this reviewer cannot take."""
    unknown = {label.name for label in labels if label.is_unknown}
    return [name for name in selectors.waiting_by_class(None, None, counts=counts) if name not in unknown]


@api_view(methods=("POST",))
def decision(request: HttpRequest, token: str) -> HttpResponse:
    try:
        body = _body(request)
        seconds = _seconds_spent(body.get("seconds_spent"))
        labels = _labels(request, token, body.get("labels") or [])
        stored = services.record_decision(token=token, reviewer=request.user, labels=labels, seconds_spent=seconds)
    except services.ReviewError as exc:
        return _error(exc)
    return JsonResponse({"decision": stored.pk, "item": stored.item_id, "status": stored.item.status,
                         "labels": [label.name for label in labels],
                         **stats_json(stored.item.project, request.user)}, status=201)


def _labels(request: HttpRequest, token: str, wanted) -> list[Label]:
    """Labels by name or id, from the project of the item this lease is on (if it is the user's):
    one query for the classes, through the lease."""
    classes = list(Label.objects.filter(project__items__lease_token=services._uuid(token),
                                        project__items__lease_owner=request.user))
    if not classes:
        raise services.LeaseLost("This item is no longer yours to decide (the lease ran out or a colleague has it).")
    if isinstance(wanted, (str, int)):
        wanted = [wanted]
    by_name = {label.name: label for label in classes}
    by_id = {str(label.pk): label for label in classes}
    found = []
    for value in wanted:
        label = by_name.get(str(value)) or by_id.get(str(value))
        if label is None:
            raise services.DecisionRefused(f"No class {value!r} in this project.")
        found.append(label)
    return found


@api_view(methods=("POST",))
def skip(request: HttpRequest, token: str) -> HttpResponse:
    try:
        skipped = services.skip(token=token, reviewer=request.user)
    except services.ReviewError as exc:
        return _error(exc)
    return JsonResponse({"skipped": True, **stats_json(skipped.item.project, request.user)})


@api_view(methods=("POST",))
def release(request: HttpRequest, token: str) -> HttpResponse:
    if not services.release(token=token, reviewer=request.user):
        return api_error(409, "This item is no longer yours.")
    return JsonResponse({"released": True})


@api_view(methods=("POST",))
def renew(request: HttpRequest) -> HttpResponse:
    try:
        tokens = _body(request).get("tokens") or []
    except services.ReviewError as exc:
        return _error(exc)
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        return api_error(400, 'tokens must be a list of lease tokens, e.g. {"tokens": ["3f2b6c8e-..."]}.')
    kept = services.renew(tokens=tokens[:100], reviewer=request.user)
    return JsonResponse({"renewed": kept, "lost": [token for token in tokens if token not in kept]})


@api_view(methods=("POST",))
def undo(request: HttpRequest, slug: str) -> HttpResponse:
    project = classify_selectors.project_for(request.user, slug)
    try:
        item = services.undo_last(project=project, reviewer=request.user)
    except services.ReviewError as exc:
        return _error(exc)
    return JsonResponse({**claims_json(project, [item], request.user)[0], **stats_json(project, request.user)})


@api_view(methods=("GET",))
def stats(request: HttpRequest, slug: str) -> HttpResponse:
    project = classify_selectors.project_for(request.user, slug)
    return JsonResponse(stats_json(project, request.user, explain=True))
