"""The headers of every response that hands out a stored file (an item's or exemplar's image, an
export's zip), in one place: never sniffed into another type, never run as a page, cached only
by the browser of the person allowed to see it."""

from __future__ import annotations

from django.http import HttpResponse

IMAGE_CACHE = "private, max-age=3600"
NO_STORE = "private, no-store"


def stored_file_headers(response: HttpResponse, *, cache: str = IMAGE_CACHE) -> HttpResponse:
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = cache
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
