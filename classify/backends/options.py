"""Reading a backend's settings (``Project.backend_config``): values that are wrong raise a
non-retryable ``BackendError`` naming the backend, the key and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .base import BackendError


def number(config: Mapping[str, Any], key: str, default: float, *, backend: str, low: float = 0.0,
           high: float = math.inf, integer: bool = False) -> float:
    """A number within [low, high] (a whole one with ``integer``); absent means ``default``."""
    value = config.get(key)
    if value is None:
        return default
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or not low <= value <= high or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        limits = f"from {low:g} to {high:g}" if math.isfinite(high) else f"of at least {low:g}"
        raise BackendError(f"{backend}: {key} must be {kind} {limits}", retryable=False)
    return float(value)


def optional_text(config: Mapping[str, Any], key: str, *, backend: str) -> str | None:
    """A string, or None when absent or empty."""
    value = config.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BackendError(f"{backend}: {key} must be a string", retryable=False)
    return value
