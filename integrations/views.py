"""The Integrations page (project admins): webhooks, results to S3, imports from S3; and the
API description (``/api/v1/schema/``) with its reference page (``/api/docs/``)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from classify import selectors
from classify.auth import api_view
from classify.services import classification

from . import deliveries, openapi, s3import
from .forms import EndpointForm, S3ImportForm
from .models import Delivery, Endpoint, S3Import
from .tasks import queue_deliveries, queue_import

RECENT_DELIVERIES = 50


def _admin_project(request: HttpRequest, slug: str):
    project = selectors.project_for(request.user, slug)
    if not selectors.is_project_admin(request.user, project):
        raise PermissionDenied("Only project admins manage integrations.")
    return project


@require_http_methods(["GET", "POST"])
def integrations_page(request: HttpRequest, slug: str) -> HttpResponse:
    project = _admin_project(request, slug)
    action = request.POST.get("action")
    endpoint_form = EndpointForm(request.POST if action == "add_endpoint" else None, project=project)
    import_form = S3ImportForm(request.POST if action == "import" else None, project=project)
    if action == "add_endpoint" and endpoint_form.is_valid():
        data = endpoint_form.cleaned_data
        endpoint = deliveries.create_endpoint(project=project, url=data["url"], description=data["description"],
                                              event_types=data["event_types"], user=request.user)
        messages.success(request, f"Endpoint {endpoint.url} added. Send it a test event to check it.")
        return redirect("integrations:page", slug=project.slug)
    if action == "import" and import_form.is_valid():
        job = s3import.start_import(project=project, source=import_form.cleaned_data["source"], user=request.user)
        transaction.on_commit(lambda: queue_import(job.pk))
        messages.success(request, f"Import #{job.pk} of {job.source} queued.")
        return redirect("integrations:page", slug=project.slug)
    context = {
        "project": project, "endpoint_form": endpoint_form, "import_form": import_form,
        "endpoints": project.endpoints.all(),
        "deliveries": Delivery.objects.filter(endpoint__project=project).select_related("endpoint", "event")
        [:RECENT_DELIVERIES],
        "imports": project.s3_imports.select_related("created_by")[:10],
        "import_estimate": classification.estimate_per_item(project),
    }
    return render(request, "integrations/page.html", context)


@require_POST
def endpoint_action(request: HttpRequest, slug: str, endpoint_id: int) -> HttpResponse:
    """Send a test event, pause/resume, or delete one endpoint."""
    project = _admin_project(request, slug)
    endpoint = get_object_or_404(Endpoint, pk=endpoint_id, project=project)
    action = request.POST.get("action")
    if action == "test":
        delivery = deliveries.send_test_event(endpoint=endpoint, user=request.user)
        transaction.on_commit(lambda: queue_deliveries([delivery.pk]))
        messages.success(request, f"Test event sent to {endpoint.url}: see the delivery log below.")
    elif action == "toggle":
        waiting = deliveries.set_active(endpoint=endpoint, active=not endpoint.is_active)
        transaction.on_commit(lambda: queue_deliveries(waiting))
        messages.success(request, f"{endpoint.url} {'paused' if endpoint.is_active else 'resumed'}.")
    elif action == "delete":
        endpoint.delete()
        messages.success(request, f"{endpoint.url} deleted.")
    return redirect("integrations:page", slug=project.slug)


@require_POST
def retry_delivery(request: HttpRequest, slug: str, delivery_id: int) -> HttpResponse:
    project = _admin_project(request, slug)
    delivery = get_object_or_404(Delivery, pk=delivery_id, endpoint__project=project)
    if deliveries.retry_now(delivery=delivery):
        transaction.on_commit(lambda: queue_deliveries([delivery.pk]))
        messages.success(request, f"Delivery #{delivery.pk} will be tried again now.")
    return redirect("integrations:page", slug=project.slug)


def import_status(request: HttpRequest, slug: str, import_id: int) -> JsonResponse:
    """An import's progress for the page's progress bar."""
    project = _admin_project(request, slug)
    job = get_object_or_404(S3Import, pk=import_id, project=project)
    return JsonResponse({
        "id": job.pk, "state": job.state, "state_display": job.get_state_display(), "listed": job.listed,
        "listing_done": job.listing_done, "processed": job.processed, "imported": job.imported,
        "duplicates": job.duplicates, "skipped": job.skipped, "failed": job.failed, "error": job.error,
    })


@api_view(methods=("GET",))
def api_schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi.schema(), json_dumps_params={"indent": 1})


def api_docs(request: HttpRequest) -> HttpResponse:
    """The API reference, rendered on the server from the same description."""
    return render(request, "integrations/api_docs.html", {
        "operations": openapi.operations(), "info": openapi.schema()["info"],
        "schemas": [(name, json.dumps(schema, indent=1)) for name, schema in openapi.SCHEMAS.items()]})
