"""Pages: the project list, a project's upload page and items, one item, its image."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from . import bakeoff, health, selectors
from .auth import issue_token, revoke_token, token_or_session
from .backends.imagenet import suggest
from .forms import ApiTokenForm, BakeoffForm, BudgetForm, CustomLabelsTrainingForm, OverBudgetForm, ProjectForm
from .models import Item, TrainingRun
from .responses import error_response, stored_image_response
from .retrain.runs import DecisionError, decide, start_custom_labels_training, start_local_training, step_titles
from .services import budgets, classification, learning, scoring
from .services.projects import create_project

PAGE_SIZE = 200
log = logging.getLogger(__name__)


def home(request: HttpRequest) -> HttpResponse:
    projects = list(selectors.projects_for(request.user))
    counts = selectors.status_counts_of(projects)
    projects = [(project, counts[project.pk]) for project in projects]
    return render(request, "classify/home.html", {"projects": projects})


@require_http_methods(["GET", "POST"])
def project_create(request: HttpRequest) -> HttpResponse:
    """The new-project form. Asked for JSON (the page's script does when example pictures are
    chosen), it answers with where to send each class's exemplars instead of a redirect: the
    script then uploads them one per request through the API, whose every exemplar queues the
    cold-start check (``retrain.runs.train_from_exemplars``: the first head trains as soon as
    every class has 3), and goes to the project page."""
    if not request.user.is_staff:
        raise PermissionDenied("Only admins create projects.")
    wants_json = request.headers.get("Accept", "").startswith("application/json")
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = create_project(
            slug=form.cleaned_data["slug"], name=form.cleaned_data["name"], labels=form.cleaned_data["labels"],
            backend=form.cleaned_data["backend"], created_by=request.user,
        )
        _say_mappings(request, project)
        if wants_json:
            return JsonResponse({"project": project.slug, "url": reverse("classify:project", args=[project.slug]),
                                 "exemplar_urls": {label.name: reverse("api:class_exemplars", args=[project.slug, label.pk])
                                                   for label in project.labels.filter(is_unknown=False)}}, status=201)
        return redirect("classify:project", slug=project.slug)
    if request.method == "POST" and wants_json:
        return JsonResponse({"errors": {field: [str(error) for error in errors] for field, errors in form.errors.items()}},
                            status=400)
    return render(request, "classify/project_create.html", {"form": form})


def _say_mappings(request: HttpRequest, project) -> None:
    """The creation message: what each class's ImageNet mapping covers, unmapped classes loudly."""
    if project.backend != "local":
        messages.success(request, f"Project {project.name} created. Set up its backend and classes in the admin.")
        return
    known = [label for label in project.labels.all() if not label.is_unknown]
    missing = [label.name for label in known if not label.mappings.get("local")]
    if missing:
        messages.error(request, f"No ImageNet mapping for {', '.join(missing)}: the local model scores "
                                f"{'it' if len(missing) == 1 else 'them'} 0 until you choose ImageNet classes in the admin "
                                "or add exemplars (under Classes, below).")
    mapped = len(known) - len(missing)
    messages.success(request, f"Project {project.name} created: {mapped} of {len(known)} classes start with suggested "
                              "ImageNet classes (see what each covers under Classes). Tune thresholds in the admin.")


@require_http_methods(["GET"])
def project_suggestions(request: HttpRequest) -> HttpResponse:
    """The new-project form's preview: the ImageNet classes each typed class name would start with."""
    if not request.user.is_staff:
        raise PermissionDenied("Only admins create projects.")
    names = list(dict.fromkeys(name.strip() for name in request.GET.get("labels", "").split(",") if name.strip()))
    rows = [suggest(name) for name in names[:50] if name.lower() != "unknown"]
    return render(request, "classify/_suggestions.html", {"suggestions": rows})


def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """The upload area and the item list, newest first, PAGE_SIZE at a time. Pages are keyset
    pages (``?before=<id>``: the items older than that one), so a page deep in a million-item
    project costs what the first one does (an OFFSET would read every row before it)."""
    project = selectors.project_for(request.user, slug)
    status = request.GET.get("status", "")
    if status not in Item.Status.values:
        status = ""
    before = request.GET.get("before", "")
    page = selectors.item_page(project, status=status, before=int(before) if before.isdigit() else None,
                               size=PAGE_SIZE + 1)
    labels = list(project.labels.all())
    cards = selectors.class_cards(project, labels, selectors.number_keys(labels))
    counts = selectors.status_counts(project)
    context = {
        "project": project,
        "items": page[:PAGE_SIZE],
        "older": page[PAGE_SIZE - 1].pk if len(page) > PAGE_SIZE else None,
        "paged": before.isdigit(),
        "counts": counts,
        "statuses": Item.Status.choices,
        "status": status,
        "labels": labels,
        "cards": cards,
        "unmapped": [card.label for card in cards if card.unmapped],
        "is_admin": selectors.is_project_admin(request.user, project),
        "classes_open": not sum(counts.values()) or any(card.unmapped for card in cards),
        "stall": health.classification_stall(project),
        "budget_alerts": budgets.alerts(project),
    }
    return render(request, "classify/project_detail.html", context)


@require_http_methods(["GET", "POST"])
def backends_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Costs per day and the backend bake-off, for project admins."""
    project = selectors.project_for(request.user, slug)
    if not selectors.is_project_admin(request.user, project):
        raise PermissionDenied("Only project admins compare backends.")
    action = request.POST.get("action", "bakeoff")
    if request.method == "POST" and action != "bakeoff":
        return _budget_action(request, project, action)
    form = BakeoffForm(request.POST or None, project=project, trusted=request.user.is_superuser)
    if request.method == "POST" and form.is_valid():
        bakeoff.start_bakeoff(project=project, backends=form.cleaned_data["backends"],
                               configs=form.cleaned_data["configs"], sample=form.cleaned_data["sample"],
                               user=request.user)
        messages.success(request, "Bake-off queued: results appear below when the worker has run it.")
        return redirect("classify:backends", slug=project.slug)
    runs = list(project.bakeoffs.all()[:10])
    context = {
        "project": project, "form": form, "runs": runs, "days": selectors.cost_by_day(project),
        "totals": selectors.cost_totals(project), "other_spend": selectors.spend_by_kind(project),
        "refresh": any(run.state in ("queued", "running") for run in runs),
        "budgets": [budgets.status_of(budget, timezone.now()) for budget in budgets.covering(project)],
        "budget_form": BudgetForm(), "over_budget_form": OverBudgetForm(
            initial={"over_budget": project.over_budget, "cascade": project.cascade}),
        "cascade": selectors.cascade_counts(project),
        "estimate": bakeoff.estimate(project), "budget_alerts": budgets.alerts(project),
    }
    return render(request, "classify/backends.html", context)


@require_http_methods(["GET", "POST"])
def reclassify_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Re-classify a project's items with its current backend (after switching backends), for
    project admins: the estimate (items, cost, the budget it would cross) first, then the start."""
    project = selectors.project_for(request.user, slug)
    if not selectors.is_project_admin(request.user, project):
        raise PermissionDenied("Only project admins re-classify items.")
    scope = (request.POST or request.GET).get("scope", "")
    if scope and scope not in classification.RECLASSIFY_SCOPES:
        messages.error(request, "Choose which items to re-classify.")
        return redirect("classify:reclassify", slug=project.slug)
    if request.method == "POST" and scope:
        count = classification.start_reclassify(project=project, scope=scope)
        done = (f"{count:,} item(s) will be re-classified with {project.backend}: they are re-queued in the "
                "background, each with the reason.")
        messages.success(request, done if count else "No item to re-classify: nothing was queued.")
        return redirect("classify:project", slug=project.slug)
    context = {"project": project, "scopes": classification.RECLASSIFY_SCOPES.items(), "scope": scope,
               "estimate": classification.estimate_reclassify(project, scope) if scope else None,
               "budget_alerts": budgets.alerts(project)}
    return render(request, "classify/reclassify.html", context)


def _budget_action(request: HttpRequest, project, action: str) -> HttpResponse:
    """The backends page's budget forms: add or change a budget, remove one, choose what waits."""
    if action == "budget":
        form = BudgetForm(request.POST)
        if form.is_valid():
            budgets.set_budget(project=project, **form.cleaned_data)
            messages.success(request, "Budget saved.")
        else:
            messages.error(request, "Budget not saved: " + "; ".join(
                f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()))
    elif action == "delete_budget":
        raw = request.POST.get("budget", "")
        if budgets.delete_budget(project=project, budget_id=int(raw) if raw.isdigit() else 0):
            messages.success(request, "Budget removed.")
        else:
            messages.error(request, "No such budget in this project: nothing removed.")
    elif action == "over_budget":
        form = OverBudgetForm(request.POST)
        if form.is_valid():
            budgets.set_cost_options(project=project, **form.cleaned_data)
            messages.success(request, f"Over budget: {project.get_over_budget_display()}. Cheap path first: "
                                      f"{'on' if project.cascade else 'off'}.")
    return redirect("classify:backends", slug=project.slug)


def _admin_project(request: HttpRequest, slug: str):
    project = selectors.project_for(request.user, slug)
    if not selectors.is_project_admin(request.user, project):
        raise PermissionDenied("Only project admins retrain and switch models.")
    return project


@require_http_methods(["GET", "POST"])
def models_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Model versions and training runs: every step with its status and reason, the comparison
    of a candidate with the current model, and the approve/reject decision."""
    project = _admin_project(request, slug)
    if request.method == "POST" and request.POST.get("action") in LEARNING_ACTIONS:
        return LEARNING_ACTIONS[request.POST["action"]](request, project)
    form = CustomLabelsTrainingForm(request.POST if request.POST.get("kind") == "custom_labels" else None,
                                    project=project)
    if request.method == "POST" and request.POST.get("kind") == "local":
        run = start_local_training(project=project, user=request.user)
        if run is None:
            messages.error(request, "A local refit is already queued or running: one at a time.")
        else:
            messages.success(request, f"Training run #{run.pk} queued: the local head retrains on the human labels.")
        return redirect("classify:models", slug=project.slug)
    if request.method == "POST" and form.is_valid():
        run = start_custom_labels_training(project=project, user=request.user, **form.cleaned_data)
        messages.success(request, f"Training run #{run.pk} queued on Rekognition Custom Labels.")
        return redirect("classify:models", slug=project.slug)
    runs = list(project.training_runs.select_related("candidate", "decided_by", "created_by")[:20])
    for run in runs:
        run.titles = step_titles(run.kind)
    context = {
        "project": project, "form": form, "runs": runs,
        "versions": project.model_versions.defer("artifact")[:30],
        "hosted": _hosted_models(project),
        "idle_minutes": settings.LOUPE_MODEL_IDLE_MINUTES,
        "refresh": any(run.is_open for run in runs) and "suggest" not in request.GET,
        **learning_context(project, suggest="suggest" in request.GET),
    }
    return render(request, "classify/models.html", context)


def learning_context(project, *, suggest: bool) -> dict:
    """The Models page's learning section: per class its threshold, where it came from, the
    evidence, holds and pauses, the audited precision; the audit log; a suggestion on request."""
    live = learning.live_precision(project)
    labels = list(project.labels.filter(is_unknown=False))
    for label in labels:
        label.live = live[label.name]
    backend, version = _current_model(project)
    return {
        "classes": labels, "changes": project.threshold_changes.select_related("user")[:20],
        "active": project.model_versions.filter(backend=project.backend, is_active=True).defer("artifact").first(),
        "suggestion": learning.suggest_thresholds(project, backend=backend, model_version=version) if suggest else None,
        "current_model": version,
    }


def _current_model(project) -> tuple[str, str]:
    """The backend and model version new items are scored with now."""
    try:
        return project.backend, scoring.build_backend(project, list(project.labels.all())).model_version
    except Exception:  # settings or a stored model that no longer load must not take the page down
        log.warning("project %s: its backend could not be built", project.slug, exc_info=True)
        return project.backend, ""


def _apply_suggestion(request: HttpRequest, project) -> HttpResponse:
    backend, version = _current_model(project)
    calibration = learning.suggest_thresholds(project, backend=backend, model_version=version)
    change = learning.apply_calibration(project=project, calibration=calibration.as_dict(), backend=backend,
                                        model_version=version, user=request.user)
    messages.success(request, change.summary)
    return redirect("classify:models", slug=project.slug)


def _resume(request: HttpRequest, project) -> HttpResponse:
    label = project.labels.filter(pk=request.POST.get("label"), is_unknown=False).first()
    if label is None:
        raise Http404("No such class.")
    learning.resume(label=label, user=request.user)
    messages.success(request, f"Auto-accept of {label.name} resumed.")
    return redirect("classify:models", slug=project.slug)


LEARNING_ACTIONS = {"apply_suggestion": _apply_suggestion, "resume": _resume}


def _hosted_models(project) -> list:
    """The Custom Labels models Loupe started for the project, each with its hours billed so far."""
    now = timezone.now()
    hosted = list(project.hosted_models.all())
    for row in hosted:
        row.hours = row.inference_hours(now)
    return hosted


@require_http_methods(["POST"])
def decide_run(request: HttpRequest, slug: str, run_id: int) -> HttpResponse:
    project = _admin_project(request, slug)
    run = TrainingRun.objects.filter(project=project, pk=run_id).first()
    if run is None:
        raise Http404("No such training run.")
    approve = request.POST.get("decision") == "approve"
    try:
        decide(run=run, approve=approve, user=request.user, apply_thresholds=bool(request.POST.get("apply_thresholds")))
    except DecisionError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run #{run.pk} {'approved: the candidate is active' if approve else 'rejected'}.")
    return redirect("classify:models", slug=project.slug)


def item_detail(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    item = selectors.item_for(request.user, item_id)
    if item.project.slug != slug:
        raise Http404("No such item.")
    predictions = list(item.predictions.all())
    # People's decisions (the reviewer app's rows, through the reverse relation), undone ones kept.
    decisions = item.decisions.select_related("reviewer").prefetch_related("labels").order_by("created_at", "pk")
    context = {"item": item, "project": item.project, "prediction": predictions[0] if predictions else None,
               "history": predictions[1:], "decisions": list(decisions),
               "is_admin": selectors.is_project_admin(request.user, item.project)}
    return render(request, "classify/item_detail.html", context)


@token_or_session
def item_image(request: HttpRequest, item_id: int) -> HttpResponse:
    """The re-encoded JPEG, only to members of the item's project (session or API token); S3 media
    via a presigned URL."""
    item = selectors.item_for(request.user, item_id)
    if not item.image:
        raise Http404("This item has no image.")
    return stored_image_response(item.image)


@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    """The user's page: their API tokens (scope, read-only, expiry, last use), a form for a new one
    (its key is shown once, in this response only) and a revoke button per token."""
    form = ApiTokenForm(request.POST if request.POST.get("action") == "create" else None, user=request.user)
    new_key = None
    if request.method == "POST" and request.POST.get("action") == "revoke":
        if revoke_token(user=request.user, token_id=_int_or_none(request.POST.get("token"))):
            messages.success(request, "Token revoked: it no longer works.")
        return redirect("classify:account")
    if request.method == "POST" and form.is_valid():
        new_key = issue_token(request.user, **form.token_options())
        form = ApiTokenForm(user=request.user)
    tokens = request.user.api_tokens.select_related("project")
    response = render(request, "classify/account.html", {"form": form, "tokens": tokens, "new_key": new_key,
                                                         "now": timezone.now()})
    response["Cache-Control"] = "private, no-store"  # the page may show a new key
    return response


def _int_or_none(raw: str | None) -> int | None:
    try:
        return int(raw or "")
    except ValueError:
        return None


@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """The whole truth for monitors: database, broker, live workers, the age of the oldest
    waiting and classifying item; 503 with the problems listed when anything is wrong."""
    report = health.health_report()
    return JsonResponse(report.as_dict(), status=200 if report.ok else 503)


@login_not_required
def livez(request: HttpRequest) -> JsonResponse:
    """Liveness of this web process only (docker-compose's check of the web container): it
    answers and reaches the database. Workers and the broker are /healthz's business."""
    try:
        connection.ensure_connection()
    except Exception:
        return JsonResponse({"ok": False, "database": "unreachable"}, status=503)
    return JsonResponse({"ok": True})


# --- Error pages: JSON under /api/, a plain page elsewhere (responses.error_response) ----------


@login_not_required
def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 400, "The request could not be understood.")


@login_not_required
def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 403, "You do not have access to this.")


@login_not_required
def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(request, 404, "Not found (or not yours to see).")


@login_not_required
def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(request, 500, "Something went wrong on our side; it has been logged.")
