"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` with the endpoint's secret.

The header is ``Loupe-Signature: t=<unix seconds>,v1=<hex digest>``. A receiver recomputes the
digest over the raw body, compares in constant time, and refuses timestamps older than a few
minutes so a captured request cannot be replayed later. ``clients/loupe_client.py`` has the same
check for receivers (kept in step by a test).
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Loupe-Signature"
TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    pass


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Loupe-Signature`` header value for ``body`` sent now (or at ``timestamp``)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str, *, tolerance: int = TOLERANCE_SECONDS, now: float | None = None) -> int:
    """Check a signature header; returns its timestamp or raises ``InvalidSignature``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        raise InvalidSignature("no timestamp in the signature header") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("the timestamp is too old (or in the future): a replay?")
    if not hmac.compare_digest(_digest(secret, timestamp, body), parts.get("v1", "")):
        raise InvalidSignature("the signature does not match the body")
    return timestamp
