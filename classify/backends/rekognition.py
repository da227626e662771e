"""Amazon Rekognition DetectLabels: generic labels ("Cat", "Bicycle", "Pizza") mapped to classes.

Each project class maps to one or more Rekognition label names (``Label.mappings["rekognition"]``,
matched case-insensitively). A returned label counts for a class when its ``Name`` or one of its
``Aliases`` is mapped, or when one of its ``Parents`` is: a "Tabby Cat" under "Cat" counts for a
class mapped to "Cat". For a parent match the parent's own confidence is used when the parent is in
the response (it is then matched by name anyway), else the child's: a child implies its parent, so
its confidence is a lower bound of the parent's.

A class scores the **highest** confidence among its matched labels, divided by 100, not their sum:
Rekognition's confidences are independent per label and hierarchical ("Animal" ⊃ "Pet" ⊃ "Cat" all
describe the same pixels), so adding them would count the same evidence several times. The classes
then go through ``base.distribution``: scaled down if they add up to more than 1, unknown taking
the rest. ``min_confidence`` defaults to 1 (DetectLabels' own default, 55, would hide every weak
label and with it most of the distribution).

``Categories`` and bounding boxes (``Instances``) are not used. The image goes as JPEG bytes, at most
5 MB (re-encoded smaller, then downscaled, when needed). One call is one billed image.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from .. import aws
from ..images import jpeg_bytes
from .base import BackendError, ClassSpec, ModelArtifact, Scores, distribution
from .options import number, region

SERVICE = "rekognition"
VERSION_PREFIX = "rekognition-detect-labels"
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # DetectLabels' limit for image bytes (the service model's maximum)
DEFAULT_PRICE_PER_CALL = 0.001  # USD, DetectLabels' first pricing tier (first million images a month)
# AWS's default DetectLabels quota per account and region (Service Quotas, adjustable on request):
# 50 transactions per second in the largest regions, 5 in the others (docs/backends.md). The
# calls of every worker process and project in one region share it, so they share one count.
REGION_DEFAULT_TPS = {"us-east-1": 50.0, "us-west-2": 50.0, "eu-west-1": 50.0}
OTHER_REGIONS_DEFAULT_TPS = 5.0


def default_tps(region_name: str | None) -> float:
    """The default DetectLabels quota of the region, the rate Loupe keeps to unless ``max_tps`` says otherwise."""
    return REGION_DEFAULT_TPS.get(region_name or "", OTHER_REGIONS_DEFAULT_TPS)
JPEG_QUALITIES = (90, 80, 70)
RAW_LABELS = 20


# --- Images, shared with custom_labels ---------------------------------------------


def jpeg_within(image: Image.Image, max_bytes: int) -> bytes:
    """The image as JPEG bytes of at most ``max_bytes``: lower quality first, then smaller sizes.

    Each downscale shrinks by the square root of the overshoot (JPEG size grows about with the pixel
    count), with a margin, so even a very noisy image needs only a few rounds.
    """
    stored = jpeg_bytes(image)
    if len(stored) <= max_bytes:
        return stored  # the stored derivative as it is: no second encoding
    current = image if image.mode == "RGB" else image.convert("RGB")
    while True:
        for quality in JPEG_QUALITIES:
            buffer = io.BytesIO()
            current.save(buffer, format="JPEG", quality=quality)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue()
        scale = min(0.9, math.sqrt(max_bytes / buffer.tell()) * 0.95)
        current = current.resize((max(1, int(current.width * scale)), max(1, int(current.height * scale))),
                                 Image.Resampling.LANCZOS)


def short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


# --- The backend ------------------------------------------------------------------------------------


class RekognitionBackend:
    name = "rekognition"

    def __init__(
        self, *, classes: Sequence[ClassSpec], config: Mapping[str, Any], model: ModelArtifact | None = None
    ) -> None:
        self.classes = tuple(classes)
        self.region = region(config, backend=self.name)
        self.min_confidence = number(config, "min_confidence", 1.0, backend=self.name, high=100.0)
        self.max_labels = number(config, "max_labels", 100, backend=self.name, low=1, high=1000,
                                         integer=True)
        self.max_tps = number(config, "max_tps", None, backend=self.name)  # None: the region's default quota
        self.price = number(config, "price_per_call", DEFAULT_PRICE_PER_CALL, backend=self.name)
        self.names = {spec.name: self._mapped_names(spec) for spec in self.classes if not spec.is_unknown}

    def _mapped_names(self, spec: ClassSpec) -> frozenset[str]:
        names = frozenset(name.strip().casefold() for name in spec.mapping if isinstance(name, str) and name.strip())
        if not names:
            raise BackendError(f"class {spec.name!r} has no Rekognition label names: map it in the class's admin "
                               f"page (e.g. {{\"rekognition\": [\"Cat\"]}})", retryable=False)
        return names

    @property
    def model_version(self) -> str:
        """Known before the call, so identical images can reuse scores: the mapping and the settings
        that change the scores. The label model Rekognition used (``LabelModelVersion``, only known
        after a call) is kept in each prediction's raw response."""
        settings = {"names": {name: sorted(names) for name, names in self.names.items()},
                    "min_confidence": self.min_confidence, "max_labels": self.max_labels}
        return f"{VERSION_PREFIX}/{short_hash(settings)}"

    def classify(self, image: Image.Image) -> Scores:
        client = aws.lazy_client(SERVICE, self.region)
        data = jpeg_within(image, MAX_IMAGE_BYTES)
        region_name = client.meta.region_name  # this setting's, else boto3's (environment, profile)
        aws.pace(f"{self.name}:{region_name}", default_tps(region_name) if self.max_tps is None else self.max_tps)
        response = aws.call(SERVICE, client.detect_labels, Image={"Bytes": data}, MaxLabels=self.max_labels,
                            MinConfidence=self.min_confidence)
        labels = [trimmed(label) for label in response.get("Labels") or []]
        known, matched = class_scores(labels, self.names)
        raw = {"LabelModelVersion": response.get("LabelModelVersion"), "Labels": kept(labels, matched),
               "label_count": len(labels), "matched": matched,
               "RequestId": response.get("ResponseMetadata", {}).get("RequestId")}
        return Scores(distribution(known, self.classes), self.model_version, raw=raw, cost_usd=self.price)


def confidence(value: Any) -> float:
    """A 0..100 confidence; missing, NaN or out of range counts as 0 (or 100 at most)."""
    try:
        given = float(value)
    except (TypeError, ValueError):
        return 0.0
    return min(100.0, given) if math.isfinite(given) and given > 0 else 0.0


def trimmed(label: Mapping[str, Any]) -> dict[str, Any]:
    """What matters of a returned label (no bounding boxes, no categories)."""
    return {
        "Name": label.get("Name", ""),
        "Confidence": round(confidence(label.get("Confidence")), 3),
        "Parents": [parent.get("Name", "") for parent in label.get("Parents") or []],
        "Aliases": [alias.get("Name", "") for alias in label.get("Aliases") or []],
    }


def kept(labels: Sequence[dict[str, Any]], matched: Mapping[str, str]) -> list[dict[str, Any]]:
    """The labels worth storing with the prediction: the strongest ``RAW_LABELS`` (what Rekognition
    saw, to help fix a mapping) and every label that scored a class (up to 100 labels of every
    image would otherwise add ~10 KB to each prediction)."""
    ranked = sorted(labels, key=lambda label: label["Confidence"], reverse=True)
    used = set(matched.values())
    return [label for rank, label in enumerate(ranked) if rank < RAW_LABELS or label["Name"] in used]


def class_scores(labels: Sequence[Mapping[str, Any]], names: Mapping[str, frozenset[str]]
                 ) -> tuple[dict[str, float], dict[str, str]]:
    """Per class, the best matched confidence / 100, and the label that gave it (for the raw record)."""
    present = {label["Name"].casefold(): label["Confidence"] for label in labels}
    known: dict[str, float] = {}
    matched: dict[str, str] = {}
    for class_name, mapped in names.items():
        best, source = 0.0, ""
        for label in labels:
            own = {label["Name"], *label["Aliases"]}
            if any(name.casefold() in mapped for name in own):
                score = label["Confidence"]
            elif parents := [parent for parent in label["Parents"] if parent.casefold() in mapped]:
                # A present parent is matched by name on its own: only an absent one borrows the child's.
                if any(parent.casefold() in present for parent in parents):
                    continue
                score = label["Confidence"]
            else:
                continue
            if score > best:
                best, source = score, label["Name"]
        known[class_name] = best / 100.0
        if source:
            matched[class_name] = source
    return known, matched
