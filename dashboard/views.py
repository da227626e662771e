"""Pages: the project dashboard, one plot (HTML fragment or CSV), and /metrics for Prometheus."""

from __future__ import annotations

import csv
import hmac
import ipaddress

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from classify.selectors import is_project_admin, project_for

from . import metrics, selectors
from .charts import render as render_chart
from .selectors.rollups import Plot, span_for

DEFAULT_DAYS = 7


def _days(request: HttpRequest) -> int:
    try:
        days = int(request.GET.get("days", DEFAULT_DAYS))
    except ValueError:
        return DEFAULT_DAYS
    return days if days in selectors.WINDOWS else DEFAULT_DAYS


@require_GET
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_for(request.user, slug)
    days = _days(request)
    context = {"project": project, "days": days, "windows": selectors.WINDOWS, "sections": selectors.SECTIONS,
               "is_admin": is_project_admin(request.user, project)}
    return render(request, "dashboard/dashboard.html", context)


@require_GET
def plot(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """One plot: its charts, alerts and table as an HTML fragment, or ``?format=csv``."""
    project = project_for(request.user, slug)
    build = selectors.PLOTS.get(name)
    if build is None:
        raise Http404("No such plot.")
    days = _days(request)
    result = build(project, span_for(days))
    if request.GET.get("format") == "csv":
        return _csv(result, f"loupe-{project.slug}-{name}-{days}d.csv")
    charts = [mark_safe(render_chart(chart, ident=f"{name}-{index}")) for index, chart in enumerate(result.charts)]
    return render(request, "dashboard/_plot.html", {"plot": result, "charts": charts, "project": project, "days": days})


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv(result: Plot, filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    lines = (writer.writerow(row) for row in [result.headers, *result.rows])
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_not_required
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for a bearer token (LOUPE_METRICS_TOKEN) or an allowed address
    (LOUPE_METRICS_ALLOW). Anyone else gets a plain 404: the endpoint does not advertise itself."""
    if not metrics_allowed(request):
        raise Http404("No such page.")
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


def metrics_allowed(request: HttpRequest) -> bool:
    token = settings.LOUPE_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.LOUPE_METRICS_ALLOW)
