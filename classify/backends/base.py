"""The one small protocol every classification backend implements.

A backend is constructed with the project's classes and its own settings, scores an RGB Pillow
image over every class (the project's unknown/other class included), and never touches the ORM.
Failures are ``BackendError`` with ``retryable`` saying whether trying again may help. A backend
that can score many images at once for less (the local model) also offers ``classify_batch``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image


@dataclass(frozen=True)
class ClassSpec:
    """One project class as a backend sees it.

    ``mapping`` holds the backend's own class names this class stands for (for ``local``, ImageNet
    classes; for Rekognition, label names), taken from ``Label.mappings[backend_name]``.
    """

    name: str
    is_unknown: bool = False
    description: str = ""
    mapping: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelArtifact:
    """A fitted model the project has activated for this backend (e.g. the local trained head)."""

    version: str
    data: bytes


@dataclass(frozen=True)
class Scores:
    """A full distribution over the project's classes (names → 0..1, summing to 1)."""

    scores: dict[str, float]
    model_version: str
    embedding: bytes | None = None
    raw: dict[str, Any] | None = field(default=None, compare=False)
    cost_usd: float = 0.0


class BackendError(Exception):
    """The backend could not score the image. ``retryable``: throttling, timeouts, 5xx.

    ``str(error)`` is the full detail (for project admins and logs: it may name ARNs, accounts,
    endpoints); ``summary`` is the short reason any member may see (the message itself when none
    is given). ``cost_usd``: what the failed attempt was billed all the same (Bedrock's tokens of
    two unusable replies), counted against the budgets."""

    def __init__(self, message: str, *, retryable: bool, summary: str = "", cost_usd: float = 0.0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.summary = summary or message
        self.cost_usd = cost_usd


class Backend(Protocol):
    name: str

    def __init__(
        self, *, classes: Sequence[ClassSpec], config: Mapping[str, Any], model: ModelArtifact | None = None
    ) -> None: ...

    @property
    def model_version(self) -> str:
        """What determines the scores: the same version on the same pixels gives the same scores."""
        ...

    def classify(self, image: Image.Image) -> Scores: ...


def classify_batch(backend: Backend, images: Sequence[Image.Image]) -> list[Scores]:
    """Scores for several images: in one call when the backend has ``classify_batch`` (the local
    model: one forward pass for the batch), else one ``classify`` per image. A backend's
    ``classify_batch`` returns one ``Scores`` per image, in order, or raises for the whole batch."""
    batched = getattr(backend, "classify_batch", None)
    if batched is not None:
        return list(batched(images))
    return [backend.classify(image) for image in images]


def unknown_name(classes: Sequence[ClassSpec]) -> str:
    return next(spec.name for spec in classes if spec.is_unknown)


def distribution(known: Mapping[str, float], classes: Sequence[ClassSpec]) -> dict[str, float]:
    """Turn per-class scores into a distribution over every class, unknown taking the rest.

    Missing classes score 0; NaN and negative scores count as 0; if the known classes add up to
    more than 1 they are scaled down to sum to 1 (and unknown gets 0).
    """
    clean = {}
    for spec in classes:
        if spec.is_unknown:
            continue
        value = float(known.get(spec.name, 0.0))
        clean[spec.name] = value if math.isfinite(value) and value > 0 else 0.0
    total = sum(clean.values())
    if total > 1.0:
        clean = {name: value / total for name, value in clean.items()}
        total = 1.0
    clean[unknown_name(classes)] = max(0.0, 1.0 - total)
    return {spec.name: round(clean[spec.name], 6) for spec in classes}
