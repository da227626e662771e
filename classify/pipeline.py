"""The classification pipeline as plain functions: preprocess → classify → route.

No Celery, no ORM: each step takes plain values, so a test calls it with a Pillow image.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image

from . import images
from .backends import Backend, Scores


@dataclass(frozen=True)
class PreparedImage:
    """An upload made safe: upright RGB pixels (bounded), their hashes, the re-encoded JPEG we
    store, the original's upright size and its real format."""

    image: Image.Image
    jpeg: bytes
    sha256: str
    phash: int
    grey: Image.Image  # the small greyscale analysis copy (quality checks, perceptual hash)
    width: int
    height: int
    format: str


def preprocess(data: bytes, *, max_pixels: int, max_bytes: int | None = None) -> PreparedImage:
    """Validate and normalise uploaded bytes; raises ``images.ImageRejected`` with the reason.
    ``max_bytes``: the decode memory budget (``images.decode``)."""
    decoded = images.decode(data, max_pixels=max_pixels, max_side=images.DERIVATIVE_MAX_SIDE, max_bytes=max_bytes)
    derivative = images.bounded(decoded.image)
    jpeg = images.encode_jpeg(derivative)
    grey = images.analysis_copy(derivative)
    return PreparedImage(
        image=derivative,
        jpeg=jpeg,
        sha256=images.derivative_sha256(jpeg),
        phash=images.perceptual_hash(grey),
        grey=grey,
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
    )


def check_quality(prepared: PreparedImage, *, rules: images.QualityRules) -> list[str]:
    """The reasons (if any) not to spend a backend call on this image."""
    return images.quality_problems(prepared.grey, width=prepared.width, height=prepared.height, rules=rules)


def classify(image: Image.Image, backend: Backend) -> tuple[Scores, float]:
    """Score one image; returns the scores and the backend call's latency in milliseconds."""
    started = time.perf_counter()
    scores = backend.classify(image)
    return scores, (time.perf_counter() - started) * 1000.0


@dataclass(frozen=True)
class Rule:
    """A class's accept threshold and its required lead over the runner-up; ``hold`` (a reason)
    keeps the class in review whatever it scores (paused by audits, or not calibrated enough)."""

    threshold: float
    margin: float
    hold: str = ""


@dataclass(frozen=True)
class Routing:
    decision: str  # "auto_accepted" or "needs_review" (Prediction.Decision values)
    reason: str
    top_label: str
    top_score: float
    margin: float


def route(scores: Mapping[str, float], *, rules: Mapping[str, Rule], unknown: str) -> Routing:
    """Auto-accept only when the top class is not unknown, scores at least its threshold, and
    leads the runner-up by at least its margin; everything else goes to a person.

    Ties go to the class listed first in ``scores``, so the outcome never depends on luck.
    """
    ranked = sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
    top_label, top_score = ranked[0]
    margin = top_score - (ranked[1][1] if len(ranked) > 1 else 0.0)
    routing = {"top_label": top_label, "top_score": top_score, "margin": round(margin, 6)}
    if top_label == unknown:
        return Routing("needs_review", f"The model's best guess is {unknown} ({top_score:.0%}).", **routing)
    rule = rules[top_label]
    if rule.hold:
        return Routing("needs_review", f"{rule.hold} ({top_label} scored {top_score:.0%}.)"[:500], **routing)
    if top_score < rule.threshold:
        reason = f"{top_label} scored {top_score:.0%}, below its accept threshold of {rule.threshold:.0%}."
        return Routing("needs_review", reason, **routing)
    if margin < rule.margin:
        reason = f"{top_label} leads the runner-up by {margin:.0%}, less than the required {rule.margin:.0%}."
        return Routing("needs_review", reason, **routing)
    reason = f"{top_label} scored {top_score:.0%} (threshold {rule.threshold:.0%}, margin {margin:.0%})."
    return Routing("auto_accepted", reason, **routing)
