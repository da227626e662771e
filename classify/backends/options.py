"""Reading a backend's settings (``Project.backend_config``): the one set of helpers every backend
uses. A wrong value is a non-retryable ``BackendError`` naming the backend, the key, what is
allowed and what was given."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .base import BackendError

REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def refused(backend: str, key: str, expected: str, value: Any) -> BackendError:
    return BackendError(f"{backend} backend setting {key!r} must be {expected}, not {value!r}", retryable=False)


def known(config: Mapping[str, Any] | None, settings, *, backend: str) -> dict[str, Any]:
    """The settings as a dict, refusing any key not in ``settings``: a misspelt key would
    otherwise be ignored and its default used without a word."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(settings))
    if unknown:
        raise BackendError(f"{backend}: unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(settings)}",
                           retryable=False)
    return config


def number(config: Mapping[str, Any], key: str, default: float | None, *, backend: str, low: float = 0.0,
           high: float = math.inf, integer: bool = False) -> float | int | None:
    """A number within [low, high] (a whole one, returned as an int, with ``integer``); absent
    means ``default``."""
    value = config.get(key)
    if value is None:
        return default
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or not low <= value <= high or (integer and value != int(value)):
        kind = "a whole number" if integer else "a number"
        limits = f"from {low:g} to {high:g}" if math.isfinite(high) else f"of at least {low:g}"
        raise refused(backend, key, f"{kind} {limits}", value)
    return int(value) if integer else float(value)


def optional_text(config: Mapping[str, Any], key: str, *, backend: str) -> str | None:
    """A string, or None when absent or empty."""
    value = config.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise refused(backend, key, "a string", value)
    return value


def region(config: Mapping[str, Any], *, backend: str, default: str | None = None) -> str | None:
    """``region``: an AWS region name such as "eu-west-1"; absent means ``default`` (None: boto3's own)."""
    value = config.get("region") or default
    if value is not None and (not isinstance(value, str) or not REGION.match(value)):
        raise refused(backend, "region", "an AWS region such as 'eu-west-1'", value)
    return value
