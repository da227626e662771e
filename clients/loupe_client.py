"""loupe_client: a small Python client for Loupe's API v1, and webhook verification.

One file, standard library only: copy it into your project. The API it speaks is described at
``/api/v1/schema/`` (OpenAPI 3.1) and in docs/api.md; examples in docs/integrations.md.

    client = LoupeClient("https://loupe.example.com", token="...")
    item = client.upload("pets", "cat.jpg")
    item = client.wait_for_item(item["id"])          # until it leaves received/queued/classifying
    claim = client.claim("pets")                     # None when the review queue is empty
    client.decide(claim["lease"]["token"], ["cat"])

    event = verify_webhook(secret, request_body, request_headers["Loupe-Signature"])
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mimetypes
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

__all__ = ["LoupeClient", "LoupeError", "InvalidSignature", "verify_webhook", "SETTLED", "TRANSIENT"]

TRANSIENT = frozenset({"received", "queued", "classifying"})
SETTLED = frozenset({"auto_accepted", "reviewed", "rejected", "failed"})
SIGNATURE_TOLERANCE_SECONDS = 300


class LoupeError(Exception):
    """An error answer from Loupe: ``status`` (HTTP) and ``message`` (its ``error`` text)."""

    def __init__(self, status: int, message: str, body: dict | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.body = status, message, body or {}


class InvalidSignature(Exception):
    """A webhook request that did not come from Loupe (or is too old: a replay)."""


class LoupeClient:
    """Calls to one Loupe installation with one API token (``manage.py api_token <user>``)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout

    # --- Items --------------------------------------------------------------------------------

    def upload(self, project: str, image: str | Path | bytes, filename: str = "") -> dict:
        """Upload one image (a path or bytes); returns the item (usually ``queued``)."""
        if isinstance(image, (str, Path)):
            filename = filename or Path(image).name
            image = Path(image).read_bytes()
        body, content_type = _multipart("image", filename or "upload", image)
        return self._call("POST", f"/api/v1/projects/{_q(project)}/items/", body=body, content_type=content_type)

    def item(self, item_id: int) -> dict:
        return self._call("GET", f"/api/v1/items/{int(item_id)}/")

    def items(self, project: str, *, status: str | None = None, ids: list[int] | None = None, limit: int = 100) -> dict:
        """``{"items": [...], "counts": {...}}``, newest first."""
        query = {"limit": limit, **({"status": status} if status else {}),
                 **({"ids": ",".join(str(i) for i in ids)} if ids else {})}
        return self._call("GET", f"/api/v1/projects/{_q(project)}/items/?{urllib.parse.urlencode(query)}")

    def wait_for_item(self, item_id: int, *, timeout: float = 120.0, interval: float = 1.0) -> dict:
        """Poll until the item leaves received/queued/classifying; TimeoutError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.item(item_id)
            if item["status"] not in TRANSIENT:
                return item
            if time.monotonic() >= deadline:
                raise TimeoutError(f"item {item_id} still {item['status']} after {timeout:g} s")
            time.sleep(interval)

    # --- The review queue ---------------------------------------------------------------------

    def claim(self, project: str) -> dict | None:
        """Lease the next item to review (a claim with ``lease.token``), or None when none is left."""
        return self._call("POST", f"/api/v1/projects/{_q(project)}/review/claim/")

    def decide(self, lease_token: str, labels: list[str], *, seconds_spent: float | None = None) -> dict:
        """Label the leased item; ``LoupeError`` 409 when the lease is no longer yours."""
        return self._call("POST", f"/api/v1/reviews/{_q(lease_token)}/decision/",
                          json_body={"labels": labels, "seconds_spent": seconds_spent})

    def skip(self, lease_token: str) -> dict:
        return self._call("POST", f"/api/v1/reviews/{_q(lease_token)}/skip/")

    def release(self, lease_token: str) -> dict:
        return self._call("POST", f"/api/v1/reviews/{_q(lease_token)}/release/")

    def stats(self, project: str) -> dict:
        return self._call("GET", f"/api/v1/projects/{_q(project)}/review/stats/")

    def schema(self) -> dict:
        """The OpenAPI description of this installation's API."""
        return self._call("GET", "/api/v1/schema/")

    # --- Plumbing -----------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, body: bytes | None = None, content_type: str = "",
              json_body: dict | None = None) -> dict | None:
        if json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json"
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        request.add_header("Authorization", f"Token {self.token}")
        request.add_header("Accept", "application/json")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
                return json.loads(data) if data else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": raw.decode("utf-8", "replace")[:200]}
            raise LoupeError(exc.code, payload.get("error", ""), payload) from None


def verify_webhook(secret: str, body: bytes, signature: str, *, tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
                   now: float | None = None) -> dict:
    """Check a webhook request and return its event (``id``, ``type``, ``created_at``, ``project``,
    ``data``). ``body`` is the raw request body, ``signature`` the ``Loupe-Signature`` header
    (``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``). Raises ``InvalidSignature`` for a
    wrong signature or a timestamp more than ``tolerance`` seconds away (a replay). Deliveries are
    at least once: skip an event whose ``id`` you have handled already."""
    parts = dict(part.split("=", 1) for part in signature.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        raise InvalidSignature("no timestamp in the signature") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise InvalidSignature("the timestamp is too far from now: a replayed request?")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        raise InvalidSignature("the signature does not match")
    return json.loads(body)


def _q(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{safe_name}\"\r\n"
            f"Content-Type: {mime}\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
