"""Request-level guards: limits that must act before Django reads a body, and the answer to a
request the database could not serve."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse

from .responses import error_response

log = logging.getLogger(__name__)


class RequestSizeLimitMiddleware:
    """Refuse a request whose declared body exceeds ``LOUPE_MAX_REQUEST_BYTES`` with 413, before a
    byte of it is read or spooled. (A body sent without a length, chunked, is not read by Django
    at all; the per-file limit and ``DATA_UPLOAD_MAX_NUMBER_FILES`` bound what one request holds.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.LOUPE_MAX_REQUEST_BYTES:
            return self.too_large(request)
        return self.get_response(request)

    @staticmethod
    def too_large(request: HttpRequest) -> HttpResponse:
        limit = settings.LOUPE_MAX_REQUEST_BYTES
        size = f"{limit:,} bytes" if limit < 2**20 else f"{limit / 2**20:,.0f} MB"
        message = f"The request is larger than the limit of {size}; send fewer or smaller files at once."
        response = error_response(request, 413, message)
        response["Connection"] = "close"  # the unread body must not be taken for the next request
        return response


class DatabaseTroubleMiddleware:
    """A request the database could not serve for a passing reason (a deadlock, a serialization
    failure, a dropped or refused connection: Django's ``OperationalError``) is answered 503 with
    ``Retry-After``, never 500. The request's transaction was rolled back by the database, so
    nothing of it is stored and trying again is safe. Other database errors (an integrity or a
    programming error) are bugs and stay 500s."""

    RETRY_AFTER_SECONDS = 2
    MESSAGE = "The database could not finish this request (busy or briefly unavailable); nothing was stored. Try again."

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError):
            return None
        log.warning("database trouble on %s %s: %s", request.method, request.path, exception)
        try:  # the page's frame may read the database too: when it cannot, plain text
            response = error_response(request, 503, self.MESSAGE)
        except Exception:
            response = HttpResponse(self.MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(self.RETRY_AFTER_SECONDS)
        return response

