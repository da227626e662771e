"""Amazon Rekognition Custom Labels (DetectCustomLabels): a model trained on the project's own classes.

The model version is named by ``project_version_arn``; it must be running (StartProjectVersion),
else the call fails with ResourceNotReadyException, a non-retryable error that tells the admin so.

Each project class is the Custom Labels label of the same name (matched case-insensitively), or
the names in ``Label.mappings["custom_labels"]`` when set (several names: the highest confidence).
Scores are Confidence / 100; unknown takes the rest (``base.distribution``). ``MinConfidence`` is
always 0: without it each label's "assumed threshold" filters the response, hiding the scores of
every class but the winner.

Custom Labels bills per inference-unit hour while the model runs, not per call, so
``price_per_call`` defaults to 0; set it to the hourly cost divided by the calls an hour if you want
per-item costs on the dashboard. Image bytes must be smaller than 4 MB: the image is re-encoded,
then downscaled, until it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from .. import aws
from .base import BackendError, ClassSpec, ModelArtifact, Scores, distribution
from .options import number, region
from .rekognition import confidence, jpeg_within, short_hash

SERVICE = "rekognition"
VERSION_PREFIX = "custom-labels"
# "Images passed as image bytes must be smaller than 4.0 MB": the stricter, decimal reading.
MAX_IMAGE_BYTES = 4_000_000 - 1
PROJECT_VERSION_ARN = re.compile(
    r"^arn:[a-z\d-]+:rekognition:(?P<region>[a-z\d-]+):\d{12}:project/(?P<project>[a-zA-Z0-9_.\-]{1,255})"
    r"/version/(?P<version>[a-zA-Z0-9_.\-]{1,255})/[0-9]+$"
)
ARN_EXAMPLE = "arn:aws:rekognition:eu-west-1:123456789012:project/vehicles/version/vehicles.2026-11-21/1763719200000"


class CustomLabelsBackend:
    name = "custom_labels"

    def __init__(
        self, *, classes: Sequence[ClassSpec], config: Mapping[str, Any], model: ModelArtifact | None = None
    ) -> None:
        self.classes = tuple(classes)
        self.arn, arn = project_version_arn(config)
        self.version_name = arn["version"]
        self.region = region(config, backend=self.name, default=arn["region"])
        if self.region != arn["region"]:
            raise BackendError(f"custom_labels backend setting 'region' is {self.region!r} but the project version "
                               f"is in {arn['region']!r}: remove 'region' or make it match", retryable=False)
        self.max_tps = number(config, "max_tps", None, backend=self.name)
        self.price = number(config, "price_per_call", 0.0, backend=self.name)
        self.class_of = model_label_names(self.classes)

    @property
    def model_version(self) -> str:
        """The project version's name, plus a hash of its full ARN and the class names, so that
        another project's "v1", a retrained version, or a new mapping never reuses old scores. (A
        version name may be 255 characters; ``Prediction.model_version`` holds 200: the name is cut,
        the hash still tells versions apart.)"""
        return f"{VERSION_PREFIX}/{self.version_name[:160]}:{short_hash({'arn': self.arn, 'names': self.class_of})}"

    def classify(self, image: Image.Image) -> Scores:
        client = aws.lazy_client(SERVICE, self.region)
        data = jpeg_within(image, MAX_IMAGE_BYTES)
        aws.pace(f"{self.name}:{self.arn}", self.max_tps)  # a model's capacity: its own inference units
        response = aws.call(SERVICE, client.detect_custom_labels, ProjectVersionArn=self.arn,
                            Image={"Bytes": data}, MinConfidence=0)
        labels = [{"Name": label.get("Name", ""), "Confidence": round(confidence(label.get("Confidence")), 3)}
                  for label in response.get("CustomLabels") or []]
        known: dict[str, float] = {}
        for label in labels:
            class_name = self.class_of.get(label["Name"].casefold())
            if class_name is not None:
                known[class_name] = max(known.get(class_name, 0.0), label["Confidence"] / 100.0)
        if labels and not known:
            raise BackendError(
                f"custom_labels: none of the model's labels ({', '.join(sorted(label['Name'] for label in labels))}) "
                "is a class of this project: name the classes as in the model, or map them in each class's admin "
                "page", retryable=False,
            )
        raw = {"CustomLabels": labels, "not_in_model": sorted(set(self.class_of.values()) - set(known)),
               "RequestId": response.get("ResponseMetadata", {}).get("RequestId")}
        return Scores(distribution(known, self.classes), self.model_version, raw=raw, cost_usd=self.price)


def project_version_arn(config: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """The required ``project_version_arn`` setting and its parts (region, project, version)."""
    arn = config.get("project_version_arn")
    match = PROJECT_VERSION_ARN.match(arn.strip()) if isinstance(arn, str) else None
    if match is None:
        given = "is missing" if not arn else f"is not a project version ARN: {arn!r}"
        raise BackendError(f"custom_labels backend setting 'project_version_arn' {given} (it looks like "
                           f"{ARN_EXAMPLE}; copy it from the model's page in the Rekognition console)",
                           retryable=False)
    return arn.strip(), match.groupdict()


def model_label_names(classes: Sequence[ClassSpec]) -> dict[str, str]:
    """Custom Labels label name (casefolded) → project class; two classes may not claim one label."""
    class_of: dict[str, str] = {}
    for spec in classes:
        if spec.is_unknown:
            continue
        names = [name.strip() for name in spec.mapping if isinstance(name, str) and name.strip()] or [spec.name]
        for name in names:
            other = class_of.setdefault(name.casefold(), spec.name)
            if other != spec.name:
                raise BackendError(f"classes {other!r} and {spec.name!r} both stand for the Custom Labels label "
                                   f"{name!r}: change one mapping in the class's admin page", retryable=False)
    return class_of
