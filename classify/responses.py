"""The headers of every response that hands out a stored file (an item's or exemplar's image, an
export's zip), in one place: never sniffed into another type, never run as a page, cached only
by the browser of the person allowed to see it. And the one shape of an error answer."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render

IMAGE_CACHE = "private, max-age=3600"
NO_STORE = "private, no-store"


def stored_file_headers(response: HttpResponse, *, cache: str = IMAGE_CACHE) -> HttpResponse:
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = cache
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def stored_image_response(image) -> HttpResponse:
    """A stored JPEG (a FieldFile) with those headers. From local storage it may be cached for an
    hour; from S3 it is a redirect to a presigned URL, cached for half the URL's life so a cached
    redirect never points at an expired signature. A file gone from local storage (deleted by hand,
    a restored database without its media) is a 404, never a 500."""
    url = image.url
    if url.startswith(("https://", "http://")):
        lifetime = int(getattr(image.storage, "querystring_expire", 0) or 0)
        return stored_file_headers(HttpResponseRedirect(url), cache=f"private, max-age={lifetime // 2}")
    try:
        handle = image.open("rb")
    except FileNotFoundError:
        raise Http404("The stored image is missing.")
    return stored_file_headers(FileResponse(handle, content_type="image/jpeg"))


def error_response(request: HttpRequest, status: int, message: str) -> HttpResponse:
    """An error as the client reads it: ``{"error": ...}`` under /api/, the error page elsewhere
    (the handlers in views.py and the request guards in middleware.py); never a stack trace."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": message}, status=status)
    return render(request, "error.html", {"status": status, "message": message}, status=status)
