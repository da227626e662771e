"""The JSON API (v1). A public interface: documented in docs/api.md, kept stable.

- ``POST /api/v1/projects/<slug>/items/``: multipart field ``image`` → 201 with the item; an
  ``Idempotency-Key`` header makes a retry return the first upload's item.
- ``GET  /api/v1/projects/<slug>/items/?ids=1,2&status=needs_review&limit=100``: items, newest first.
- ``GET  /api/v1/items/<id>/``: one item with its status, scores and routing decision.
- ``POST /api/v1/projects/<slug>/classes/<label_id>/exemplars/``: multipart field ``image`` → 201
  with the new exemplar (project admins); ``DELETE /api/v1/exemplars/<id>/`` removes one.
- ``GET  /api/v1/projects/<slug>/learning/``: the learning loop's state: mode, active model,
  refits, per-class thresholds, holds and audited precision.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.urls import reverse

from . import health, selectors
from .auth import api_error, api_view
from .images import ImageRejected
from .models import Exemplar, Item, ModelVersion, TrainingRun
from .retrain.runs import schedule_refit_check
from .services import intake, learning
from .services.exemplars import add_exemplar, remove_exemplar

log = logging.getLogger(__name__)
MAX_LIST = 500


def item_json(item: Item) -> dict:
    """The item as the API and the upload page's live status see it."""
    prediction = selectors.latest_prediction(item)
    return {
        "id": item.pk,
        "project": item.project.slug,
        "status": item.status,
        "status_display": item.get_status_display(),
        "status_reason": item.status_reason,
        "label": item.label.name if item.label else None,
        "filename": item.original_filename,
        "width": item.width,
        "height": item.height,
        "sha256": item.sha256,
        "attempts": item.attempts,
        "source_format": item.source_format,
        "duplicate_of": item.duplicate_of_id,
        "near_duplicate_of": item.near_duplicate_of_id,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        "image_url": reverse("classify:item_image", args=[item.pk]),
        "page_url": reverse("classify:item_detail", args=[item.project.slug, item.pk]),
        "scores": prediction.scores if prediction else None,
        "decision": None if prediction is None else {
            "outcome": prediction.decision,
            "reason": prediction.reason,
            "top_label": prediction.top_label,
            "top_score": prediction.top_score,
            "margin": prediction.margin,
            "thresholds": prediction.thresholds,
            "backend": prediction.backend,
            "model_version": prediction.model_version,
            "latency_ms": prediction.latency_ms,
            "reused_from_item": prediction.reused_from.item_id if prediction.reused_from else None,
            "created_at": prediction.created_at.isoformat(),
        },
    }


@api_view(methods=("GET", "POST"))
def project_items(request: HttpRequest, slug: str) -> JsonResponse:
    project = selectors.project_for(request.user, slug)
    if request.method == "POST":
        return _upload(request, project)
    items = selectors.items_for(request.user).filter(project=project)
    if ids := request.GET.get("ids"):
        try:
            items = items.filter(pk__in=[int(part) for part in ids.split(",") if part])
        except ValueError:
            return api_error(400, "ids must be a comma-separated list of integers.")
    if status := request.GET.get("status"):
        if status not in Item.Status.values:
            return api_error(400, f"Unknown status {status!r}.", allowed=Item.Status.values)
        items = items.filter(status=status)
    limit = min(_int(request.GET.get("limit"), 100), MAX_LIST)
    items_page = [item_json(item) for item in items[:limit]]
    return JsonResponse({"items": items_page, "counts": selectors.status_counts(project),
                         "stall": health.classification_stall(project)})


def _int(raw: str | None, default: int) -> int:
    try:
        return max(1, int(raw)) if raw else default
    except ValueError:
        return default


def _one_file(request: HttpRequest):
    """The single uploaded file of the multipart field ``image``, or the JSON error to answer."""
    try:
        files = request.FILES.getlist("image")
    except RequestDataTooBig:
        return api_error(413, "The request is too large.")
    except SuspiciousOperation as exc:  # e.g. more files than DATA_UPLOAD_MAX_NUMBER_FILES
        return api_error(400, f"The upload was refused: {exc}")
    if oversized := getattr(request, "oversized_uploads", []):
        limit = intake.human_size(settings.LOUPE_MAX_UPLOAD_BYTES)
        return api_error(400, f"The file is larger than the limit of {limit}.",
                         filename=intake.clean_filename(oversized[0] or ""))
    if len(files) != 1:
        return api_error(400, "Send exactly one file in the multipart field 'image'.")
    return files[0]


def _upload(request: HttpRequest, project) -> JsonResponse:
    upload = _one_file(request)
    if isinstance(upload, JsonResponse):
        return upload
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 255 and key.isprintable()):
        return api_error(400, "Idempotency-Key must be 1 to 255 printable characters.")
    try:
        intake.check_upload_size(upload.size or 0)  # before reading it into memory
        item, replayed = _ingest(request, project, upload, key)
    except ImageRejected as exc:
        return api_error(400, str(exc), filename=intake.clean_filename(upload.name or ""))
    except DatabaseError:
        log.warning("upload to %s not stored: database error", project.slug, exc_info=True)
        return api_error(503, "The database is unavailable; nothing was stored. Try again.")
    response = JsonResponse(_stored_item_json(request, item), status=201)
    if replayed:
        response["Idempotent-Replayed"] = "true"
    return response


def _ingest(request: HttpRequest, project, upload, key: str | None) -> tuple[Item, bool]:
    data, name = upload.read(), upload.name or ""
    if key is None:
        return intake.ingest_upload(project=project, data=data, filename=name, uploaded_by=request.user), False
    return intake.ingest_upload_once(project=project, data=data, filename=name, uploaded_by=request.user, key=key)


def _stored_item_json(request: HttpRequest, item: Item) -> dict:
    """The stored item as the API shows it. The upload is stored whatever happens now: a database
    error while reading it back is retried on a new connection, then answered from what this
    request already knows (never a 500 for a stored upload)."""
    for _ in range(2):
        try:
            return item_json(selectors.item_for(request.user, item.pk))
        except DatabaseError:
            connection.close()
    log.warning("item %s stored, but could not be read back", item.pk)
    return {**_known_fields(item), "status_display": item.get_status_display()}


def _known_fields(item: Item) -> dict:
    return {
        "id": item.pk, "project": item.project.slug, "status": item.status, "status_reason": item.status_reason,
        "label": None, "filename": item.original_filename, "width": item.width, "height": item.height,
        "sha256": item.sha256, "attempts": item.attempts, "source_format": item.source_format,
        "duplicate_of": item.duplicate_of_id, "near_duplicate_of": item.near_duplicate_of_id,
        "created_at": item.created_at.isoformat(), "updated_at": item.updated_at.isoformat(),
        "image_url": reverse("classify:item_image", args=[item.pk]),
        "page_url": reverse("classify:item_detail", args=[item.project.slug, item.pk]),
        "scores": None, "decision": None,
    }


@api_view(methods=("GET",))
def item_detail(request: HttpRequest, item_id: int) -> JsonResponse:
    return JsonResponse(item_json(selectors.item_for(request.user, item_id)))


def exemplar_json(exemplar: Exemplar) -> dict:
    return {"id": exemplar.pk, "label": exemplar.label.name, "label_id": exemplar.label_id,
            "image_url": reverse("reviewer:exemplar_image", args=[exemplar.pk])}


def _administered(request: HttpRequest, project) -> JsonResponse | None:
    if not selectors.is_project_admin(request.user, project):
        return api_error(403, "Only project admins change a class's exemplars.")
    return None


@api_view(methods=("POST",))
def class_exemplars(request: HttpRequest, slug: str, label_id: int) -> JsonResponse:
    """Add one exemplar to a class: the same checks as any upload; 400 with the reason if refused."""
    project = selectors.project_for(request.user, slug)
    if refused := _administered(request, project):
        return refused
    label = project.labels.filter(pk=label_id, is_unknown=False).first()
    if label is None:
        return api_error(404, "No such class in this project.")
    upload = _one_file(request)
    if isinstance(upload, JsonResponse):
        return upload
    try:
        intake.check_upload_size(upload.size or 0)
        exemplar = add_exemplar(label=label, data=upload.read())
    except ImageRejected as exc:
        return api_error(400, str(exc), filename=intake.clean_filename(upload.name or ""))
    schedule_refit_check(project, exemplar=True)  # the first head, once every class has enough
    return JsonResponse(exemplar_json(exemplar), status=201)


@api_view(methods=("DELETE",))
def exemplar_detail(request: HttpRequest, exemplar_id: int) -> JsonResponse:
    exemplar = Exemplar.objects.select_related("label__project").filter(
        pk=exemplar_id, label__project__in=selectors.projects_for(request.user)).first()
    if exemplar is None:
        return api_error(404, "No such exemplar.")
    if refused := _administered(request, exemplar.label.project):
        return refused
    remove_exemplar(exemplar=exemplar)
    return JsonResponse({"removed": exemplar_id})
@api_view(("GET",))
def learning_state(request: HttpRequest, slug: str) -> JsonResponse:
    """Where the learning loop stands, for dashboards and scripts (members may read it)."""
    project = selectors.project_for(request.user, slug)
    active = ModelVersion.objects.filter(project=project, backend=project.backend, is_active=True).first()
    runs = TrainingRun.objects.filter(project=project).order_by("-pk")[:10]
    live = learning.live_precision(project)
    return JsonResponse({
        "project": project.slug, "mode": project.learning_mode, "target_precision": project.target_precision,
        "backend": project.backend,
        "active_model": None if active is None else {
            "version": active.version, "coverage": active.coverage, "provenance": active.provenance,
            "human_labels_seen": active.human_labels_seen, "created_at": active.created_at.isoformat()},
        "refit_running": any(run.is_open for run in runs),
        "runs": [{"id": run.pk, "kind": run.kind, "state": run.state, "step": run.step, "reason": run.reason,
                  "candidate": run.candidate.version if run.candidate else None,
                  "coverage": run.candidate.coverage if run.candidate else None,
                  "labels": run.candidate.human_labels_seen if run.candidate else None,
                  "seconds": None if run.is_open else round((run.updated_at - run.created_at).total_seconds(), 1),
                  "created_at": run.created_at.isoformat()} for run in runs],
        "classes": [{"name": label.name, "threshold": label.accept_threshold, "margin": label.margin,
                     "hold": label.hold, "calibration": label.calibration or None, "live": live[label.name]}
                    for label in project.labels.filter(is_unknown=False)],
    })
