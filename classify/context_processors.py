"""Template context every page gets."""

from __future__ import annotations

from django.http import HttpRequest

from . import health


def service_notices(request: HttpRequest) -> dict:
    """For signed-in users: processes bin/up restarted in the last 15 minutes (a file read only
    when that file changed recently)."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {"service_notices": []}
    return {"service_notices": health.recent_restarts()}
