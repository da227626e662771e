"""Request-level limits that must act before Django reads a body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


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
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse({"error": message}, status=413)
        else:
            response = render(request, "error.html", {"status": 413, "message": message}, status=413)
        response["Connection"] = "close"  # the unread body must not be taken for the next request
        return response
