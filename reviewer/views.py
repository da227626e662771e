"""Review pages: the single-item screen and grid mode. Both are shells; their scripts drive the
JSON review API (reviewer/api.py) with the session, so pages and API follow the same rules."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from classify import selectors as classify_selectors
from classify.auth import token_or_session
from classify.models import Exemplar, Project
from classify.responses import NO_STORE, stored_file_headers, stored_image_response
from classify.selectors import number_keys

from . import selectors
from .export.runs import default_source_prefix, start_export
from .forms import ExportForm


def _context(request: HttpRequest, slug: str) -> dict:
    project = classify_selectors.project_for(request.user, slug)
    labels = list(project.labels.all())
    return {
        "project": project,
        "labels": labels,
        "keys": number_keys(labels),
        "remaining": selectors.remaining(project, request.user),
        "pace_today": selectors.pace_today(request.user, project),
    }


def review(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "reviewer/review.html", _context(request, slug))


def grid(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "reviewer/grid.html", _context(request, slug))


@token_or_session
def exemplar_image(request: HttpRequest, exemplar_id: int) -> HttpResponse:
    """An exemplar's re-encoded JPEG, to members of its project only (session or API token)."""
    exemplar = Exemplar.objects.select_related("label").filter(
        pk=exemplar_id, label__project__in=classify_selectors.projects_for(request.user)
    ).first()
    if exemplar is None or not exemplar.image:
        raise Http404("No such exemplar.")
    return stored_image_response(exemplar.image)


def _admin_project(request: HttpRequest, slug: str) -> Project:
    """404 for a project the user cannot see, 403 for one they see but do not administer."""
    project = classify_selectors.project_for(request.user, slug)
    if not classify_selectors.is_project_admin(request.user, project):
        raise PermissionDenied("Only project admins export.")
    return project


@require_http_methods(["GET", "POST"])
def export_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Start an export; see the running one's progress and every past one's counts and report."""
    project = _admin_project(request, slug)
    form = ExportForm(request.POST or None, project=project,
                      initial={"multi_label": project.multi_label, "s3_url": default_source_prefix(project)})
    if request.method == "POST" and form.is_valid():
        target, options = form.target_and_options(default_source_prefix(project))
        export = start_export(project=project, user=request.user, target=target, options=options)
        messages.success(request, f"Export #{export.pk} queued: its progress and report appear below.")
        return redirect("reviewer:export", slug=project.slug)
    exports = list(project.exports.select_related("created_by")[:20])
    context = {"project": project, "form": form, "exports": exports,
               "default_prefix": default_source_prefix(project),
               "refresh": any(not export.is_finished for export in exports)}
    return render(request, "reviewer/export.html", context)


@require_GET
def export_download(request: HttpRequest, slug: str, export_id: int) -> HttpResponse:
    """A finished export's zip, to the project's admins, as an attachment that is never rendered."""
    project = _admin_project(request, slug)
    export = project.exports.filter(pk=export_id, state="done").exclude(file="").first()
    if export is None:
        raise Http404("No such export.")
    response = FileResponse(export.file.open("rb"), as_attachment=True, content_type="application/zip",
                            filename=f"loupe-{project.slug}-export-{export.pk}.zip")
    return stored_file_headers(response, cache=NO_STORE)
