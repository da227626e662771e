"""API authentication: ``Authorization: Token <key>`` or the browser session (with CSRF).

Keys are random and only their SHA-256 is stored, so a database leak leaks no usable key.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from .models import ApiToken


def issue_token(user) -> str:
    """Create a new API key for ``user`` and return it (the only time it is visible)."""
    key = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_hash(key), prefix=key[:8])
    return key


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def user_for_token(key: str):
    token = ApiToken.objects.select_related("user").filter(key_hash=_hash(key)).first()
    if token is None or not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user


def api_error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    check = CsrfViewMiddleware(lambda req: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {})


def api_view(methods: tuple[str, ...]) -> Callable:
    """Wrap a JSON API view: method check, token or session auth, CSRF for session writes.

    Errors are JSON with a message (401, 403, 405), never an HTML login redirect.
    """

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return api_error(405, f"Method {request.method} not allowed.", allowed=list(methods))
            header = request.headers.get("Authorization", "")
            if header.startswith("Token "):
                user = user_for_token(header.removeprefix("Token ").strip())
                if user is None:
                    return api_error(401, "Invalid or revoked API token.")
                request.user = user
            elif not request.user.is_authenticated:
                return api_error(401, "Authentication required: send 'Authorization: Token <key>' or log in.")
            elif request.method not in ("GET", "HEAD", "OPTIONS") and _csrf_failure(request) is not None:
                return api_error(403, "CSRF check failed: send the X-CSRFToken header with session requests.")
            return view(request, *args, **kwargs)

        wrapped.csrf_exempt = True  # CSRF is enforced above for session auth only
        return login_not_required(wrapped)

    return decorate
