"""Review pages: the single-item screen and grid mode. Both are shells; their scripts drive the
JSON review API (reviewer/api.py) with the session, so pages and API follow the same rules."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from classify import selectors as classify_selectors
from classify.models import Exemplar

from . import selectors


def _context(request: HttpRequest, slug: str) -> dict:
    project = classify_selectors.project_for(request.user, slug)
    return {
        "project": project,
        "labels": list(project.labels.all()),
        "remaining": selectors.remaining(project, request.user),
        "pace_today": selectors.pace_today(request.user),
    }


def review(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "reviewer/review.html", _context(request, slug))


def grid(request: HttpRequest, slug: str) -> HttpResponse:
    return render(request, "reviewer/grid.html", _context(request, slug))


def exemplar_image(request: HttpRequest, exemplar_id: int) -> HttpResponse:
    """An exemplar's re-encoded JPEG, to members of its project only."""
    exemplar = Exemplar.objects.select_related("label").filter(
        pk=exemplar_id, label__project__in=classify_selectors.projects_for(request.user)
    ).first()
    if exemplar is None or not exemplar.image:
        raise Http404("No such exemplar.")
    response = FileResponse(exemplar.image.open("rb"), content_type="image/jpeg")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
