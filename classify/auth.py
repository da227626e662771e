"""API authentication: ``Authorization: Token <key>`` or the browser session (with CSRF).

Keys are random and only their SHA-256 is stored, so a database leak leaks no usable key. A token
may be narrowed to one project, to reading, and in time (``ApiToken``): the user it returns
carries the token as ``user.api_token``, which ``selectors.projects_for`` and ``api_view`` obey.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from .models import ApiToken


def issue_token(user, *, name: str = "", project=None, read_only: bool = False, expires_at=None) -> str:
    """Create a new API key for ``user`` and return it (the only time it is visible). A ``project``
    must be one the user is a member of."""
    if project is not None and not user.is_superuser and not project.memberships.filter(user=user).exists():
        raise ValueError(f"{user} is not a member of {project}")
    key = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=_hash(key), prefix=key[:8], name=name, project=project,
                            read_only=read_only, expires_at=expires_at)
    return key


def revoke_token(*, user, token_id: int) -> bool:
    """Delete one of the user's tokens; False when there is no such token of theirs."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return bool(deleted)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# How stale a token's "last used" time may get: writing it on every request put a row write
# (and its lock) in front of every API call of a busy client.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def user_for_token(key: str):
    """The token's user, carrying the token (``user.api_token``); None for an unknown, revoked or
    expired key or an inactive user."""
    token = ApiToken.objects.select_related("user").filter(key_hash=_hash(key)).first()
    now = timezone.now()
    if token is None or not token.user.is_active or token.is_expired(now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.user.api_token = token
    return token.user


def api_error(status: int, message: str, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    check = CsrfViewMiddleware(lambda req: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {})


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def authenticate(request: HttpRequest) -> HttpResponse | None:
    """Token or session authentication for ``request``; the error response, or None when it may go on."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Token "):
        user = user_for_token(header.removeprefix("Token ").strip())
        if user is None:
            return api_error(401, "Invalid, expired or revoked API token.")
        if user.api_token.read_only and request.method not in SAFE_METHODS:
            return api_error(403, "This API token is read-only.")
        request.user = user
    elif not request.user.is_authenticated:
        return api_error(401, "Authentication required: send 'Authorization: Token <key>' or log in.")
    elif request.method not in SAFE_METHODS and _csrf_failure(request) is not None:
        return api_error(403, "CSRF check failed: send the X-CSRFToken header with session requests.")
    return None


def api_view(methods: tuple[str, ...]) -> Callable:
    """Wrap a JSON API view: method check, token or session auth, CSRF for session writes.

    Errors are JSON with a message (401, 403, 405), never an HTML login redirect. A multipart body
    Django cannot parse (a part header over 1 KB, e.g. a file name of ~1,000 bytes) is a 400 that
    says so.
    """

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return api_error(405, f"Method {request.method} not allowed.", allowed=list(methods))
            try:
                return authenticate(request) or view(request, *args, **kwargs)
            except MultiPartParserError:
                return api_error(400, "The upload could not be read: a file name is too long (keep it under "
                                      "900 bytes) or the multipart body is malformed.")

        wrapped.csrf_exempt = True  # CSRF is enforced above for session auth only
        return login_not_required(wrapped)

    return decorate


def token_or_session(view: Callable) -> Callable:
    """For a page view that API clients fetch too (an item's image): a token in the Authorization
    header authenticates like on the API; otherwise the session, as everywhere. GET and HEAD only."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return api_error(405, f"Method {request.method} not allowed.", allowed=["GET", "HEAD"])
        if not request.headers.get("Authorization", "").startswith("Token ") and not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return authenticate(request) or view(request, *args, **kwargs)

    return login_not_required(wrapped)
