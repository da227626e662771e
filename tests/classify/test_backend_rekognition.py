"""The Rekognition DetectLabels backend, against botocore's Stubber on the real client.

The Stubber checks every request against Rekognition's service model and returns the canned
responses in order; each test ends with none left over.
"""

from __future__ import annotations

import io
import math
from decimal import Decimal
from unittest import mock

import numpy as np
import pytest
from botocore.stub import ANY
from PIL import Image

from classify import aws
from classify.backends import get_backend
from classify.backends.base import BackendError, ClassSpec
from classify.backends.rekognition import MAX_IMAGE_BYTES, RekognitionBackend
from classify.models import Item, Label, Prediction, Project
from classify.services import intake, projects
from tests.base import photo_bytes

pytestmark = pytest.mark.django_db

REGION = "us-east-1"
CLASSES = (
    ClassSpec("cat", mapping=("Cat",)),
    ClassSpec("dog", mapping=("Dog", "Puppy")),
    ClassSpec("person", mapping=("human",)),  # Rekognition's "Person" has the alias "Human"
    ClassSpec("unknown", is_unknown=True),
)
DENIED = "User: arn:aws:iam::123456789012:user/loupe is not authorized to perform: rekognition:DetectLabels"


def label(name: str, confidence: float | None, *, parents=(), aliases=(), categories=("Animals and Pets",)) -> dict:
    """One entry of DetectLabels' ``Labels``, shaped as the service returns it."""
    entry = {"Name": name, "Instances": [], "Parents": [{"Name": parent} for parent in parents],
             "Aliases": [{"Name": alias} for alias in aliases], "Categories": [{"Name": c} for c in categories]}
    if confidence is not None:
        entry["Confidence"] = confidence
    return entry


def detect_labels(*labels: dict) -> dict:
    return {"Labels": list(labels), "LabelModelVersion": "3.0", "OrientationCorrection": "ROTATE_0"}


# What DetectLabels says about scikit-image's "chelsea" (a tabby cat), trimmed to a few labels.
CAT_PHOTO = detect_labels(
    label("Animal", 99.24),
    label("Mammal", 99.24, parents=["Animal"]),
    label("Pet", 99.24, parents=["Animal"]),
    label("Cat", 98.71, parents=["Mammal", "Pet", "Animal"]),
    label("Abyssinian", 61.4, parents=["Cat", "Mammal", "Pet", "Animal"]),
    label("Kitten", 55.02, parents=["Cat", "Mammal", "Pet", "Animal"], aliases=["Kitty"]),
    label("Whiskers", 12.5, parents=["Animal"]),
)


def expected(**overrides) -> dict:
    return {"Image": {"Bytes": ANY}, "MaxLabels": 100, "MinConfidence": 1.0, **overrides}


def rgb(size=(120, 90)) -> Image.Image:
    return Image.new("RGB", size, (120, 100, 80))


def backend(classes=CLASSES, **config) -> RekognitionBackend:
    return RekognitionBackend(classes=classes, config={"region": REGION, **config})


class JpegUnder:
    """Matches image bytes that are a JPEG no larger than ``limit``; remembers what it saw."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen = limit, None

    def __eq__(self, other) -> bool:
        self.seen = other
        return isinstance(other, bytes) and other[:3] == b"\xff\xd8\xff" and len(other) <= self.limit

    def __repr__(self) -> str:
        return f"<a JPEG of at most {self.limit} bytes>"


class DetectLabelsScoringTests:
    def test_a_cat_photo_scores_the_cat_class_with_the_cat_labels_confidence(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", CAT_PHOTO, expected())
        scores = backend().classify(rgb())
        assert scores.scores == {"cat": 0.9871, "dog": 0.0, "person": 0.0, "unknown": 0.0129}
        assert scores.cost_usd == 0.001

    def test_the_raw_record_keeps_names_confidences_parents_aliases_and_the_label_model_version(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", {**CAT_PHOTO, "ResponseMetadata": {"RequestId": "req-1"}}, expected())
        raw = backend().classify(rgb()).raw
        assert raw["LabelModelVersion"] == "3.0" and raw["RequestId"] == "req-1"
        assert raw["matched"] == {"cat": "Cat"}
        assert raw["Labels"][5] == {"Name": "Kitten", "Confidence": 55.02,
                                    "Parents": ["Cat", "Mammal", "Pet", "Animal"], "Aliases": ["Kitty"]}
        assert all(set(entry) == {"Name", "Confidence", "Parents", "Aliases"} for entry in raw["Labels"])

    def test_the_raw_record_keeps_the_strongest_labels_and_every_label_that_scored(self, rekognition_stub):
        scenery = [label(f"Thing {n}", 90.0 - n, categories=[]) for n in range(30)]
        rekognition_stub.add_response("detect_labels", detect_labels(*scenery, label("Cat", 3.0)), expected())
        raw = backend().classify(rgb()).raw
        assert raw["label_count"] == 31
        assert [entry["Name"] for entry in raw["Labels"]] == [f"Thing {n}" for n in range(20)] + ["Cat"]

    def test_a_mapped_name_matches_a_labels_alias_case_insensitively(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(
            label("Person", 97.5, aliases=["Human"], categories=["Person Description"]),
            label("Adult", 90.1, parents=["Person"]),
        ), expected())
        scores = backend().classify(rgb())
        assert scores.scores["person"] == 0.975 and scores.raw["matched"] == {"person": "Person"}

    def test_a_child_counts_for_its_mapped_parent_with_its_own_confidence_when_the_parent_is_absent(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(
            label("Labrador Retriever", 88.0, parents=["Dog", "Pet", "Animal", "Mammal"]),
        ), expected())
        scores = backend().classify(rgb())
        assert scores.scores["dog"] == 0.88 and scores.raw["matched"] == {"dog": "Labrador Retriever"}

    def test_a_present_parent_scores_with_its_own_confidence_not_its_childs(self, rekognition_stub):
        vehicles = (ClassSpec("vehicle", mapping=("Vehicle",)), ClassSpec("unknown", is_unknown=True))
        rekognition_stub.add_response("detect_labels", detect_labels(
            label("Sports Car", 96.0, parents=["Car", "Vehicle", "Transportation"], categories=["Vehicles"]),
            label("Vehicle", 80.0, parents=["Transportation"], categories=["Vehicles"]),
        ), expected())
        scores = backend(vehicles).classify(rgb())
        assert scores.scores == {"vehicle": 0.8, "unknown": 0.2}

    def test_classes_over_one_in_total_are_scaled_and_unknown_gets_nothing(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(label("Cat", 90.0), label("Puppy", 60.0)), expected())
        scores = backend().classify(rgb()).scores
        assert scores == {"cat": 0.6, "dog": 0.4, "person": 0.0, "unknown": 0.0}

    def test_no_labels_at_all_means_everything_is_unknown(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(), expected())
        scores = backend().classify(rgb())
        assert scores.scores == {"cat": 0.0, "dog": 0.0, "person": 0.0, "unknown": 1.0}
        assert scores.raw["matched"] == {}

    def test_labels_outside_the_mapping_are_ignored(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(
            label("Furniture", 99.0, categories=["Home and Indoors"]), label("Chair", 97.0, parents=["Furniture"]),
        ), expected())
        assert backend().classify(rgb()).scores["unknown"] == 1.0

    def test_a_missing_or_nan_confidence_counts_as_zero(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(label("Cat", None), label("Dog", math.nan)), expected())
        scores = backend().classify(rgb())
        assert scores.scores["unknown"] == 1.0
        assert [entry["Confidence"] for entry in scores.raw["Labels"]] == [0.0, 0.0]

    def test_the_settings_go_into_the_request(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(), expected(MaxLabels=25, MinConfidence=40.0))
        backend(min_confidence=40, max_labels=25).classify(rgb())

    def test_the_call_is_paced_with_the_configured_rate(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(), expected())
        with mock.patch.object(aws, "pace") as pace:
            backend(max_tps=5).classify(rgb())
        pace.assert_called_once_with("rekognition:us-east-1", 5.0)

    def test_the_price_per_call_can_be_set(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", detect_labels(), expected())
        assert backend(price_per_call=0.0008).classify(rgb()).cost_usd == 0.0008


class ImageBytesTests:
    def test_a_small_image_goes_at_full_size(self, rekognition_stub):
        sent = JpegUnder(MAX_IMAGE_BYTES)
        rekognition_stub.add_response("detect_labels", detect_labels(), expected(Image={"Bytes": sent}))
        backend().classify(rgb((640, 480)))
        assert Image.open(io.BytesIO(sent.seen)).size == (640, 480)

    def test_an_image_too_large_as_jpeg_is_made_smaller_until_it_fits_in_5_mb(self, rekognition_stub):
        noise = np.random.default_rng(0).integers(0, 256, (3500, 3500, 3), dtype=np.uint8)
        sent = JpegUnder(MAX_IMAGE_BYTES)
        rekognition_stub.add_response("detect_labels", detect_labels(), expected(Image={"Bytes": sent}))
        backend().classify(Image.fromarray(noise))
        width, height = Image.open(io.BytesIO(sent.seen)).size
        assert len(sent.seen) <= 5 * 1024 * 1024 and width == height and 1500 < width < 3500


class SettingsTests:
    def test_a_class_without_label_names_is_refused_with_where_to_fix_it(self):
        classes = (ClassSpec("cat", mapping=("Cat",)), ClassSpec("dog"), ClassSpec("unknown", is_unknown=True))
        with pytest.raises(BackendError) as error:
            backend(classes)
        assert not error.value.retryable
        assert "class 'dog' has no Rekognition label names: map it in the class's admin page" in str(error.value)

    @pytest.mark.parametrize("config,words", [
        ({"min_confidence": 150}, "'min_confidence' must be a number from 0 to 100, not 150"),
        ({"min_confidence": "high"}, "'min_confidence' must be a number"),
        ({"max_labels": 0}, "'max_labels' must be a whole number from 1 to 1000"),
        ({"max_labels": 2.5}, "'max_labels' must be a whole number"),
        ({"max_tps": "fast"}, "'max_tps' must be a number of at least 0"),
        ({"price_per_call": -1}, "'price_per_call' must be a number of at least 0"),
        ({"price_per_call": True}, "'price_per_call' must be a number"),
        ({"region": "Ireland"}, "'region' must be an AWS region such as 'eu-west-1'"),
    ])
    def test_a_wrong_setting_is_refused_with_a_message_naming_it(self, config, words):
        with pytest.raises(BackendError, match="rekognition backend setting") as error:
            backend(**config)
        assert words in str(error.value) and not error.value.retryable

    def test_the_defaults_show_the_whole_distribution_at_the_public_price(self):
        built = RekognitionBackend(classes=CLASSES, config={})
        assert (built.region, built.min_confidence, built.max_labels, built.max_tps, built.price) == (
            None, 1.0, 100, None, 0.001)

    def test_no_client_is_made_before_the_first_image(self, aws_env):
        get_backend("rekognition", classes=CLASSES, config={"region": REGION})
        assert aws.client.cache_info().currsize == 0

    def test_no_region_anywhere_is_an_error_that_says_so(self, aws_env, monkeypatch):
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        with pytest.raises(BackendError, match="[Rr]egion") as error:
            RekognitionBackend(classes=CLASSES, config={}).classify(rgb())
        assert not error.value.retryable

    def test_the_version_is_known_before_a_call_and_follows_the_mapping_and_settings(self):
        version = backend().model_version
        assert version.startswith("rekognition-detect-labels/")
        assert backend().model_version == version
        assert backend(min_confidence=50).model_version != version
        assert backend(max_labels=10).model_version != version
        remapped = (ClassSpec("cat", mapping=("Cat", "Kitten")),) + CLASSES[1:]
        assert backend(remapped).model_version != version

    def test_the_scores_carry_the_same_version_whatever_label_model_answered(self, rekognition_stub):
        rekognition_stub.add_response("detect_labels", {**detect_labels(), "LabelModelVersion": "3.1"}, expected())
        built = backend()
        assert built.classify(rgb()).model_version == built.model_version


# --- Through the real task path (eager Celery) -------------------------------------------------


def make_pets_project(**config) -> Project:
    project = projects.create_project(slug="pets", labels=["cat", "dog"], backend="rekognition")
    Label.objects.filter(project=project, name="cat").update(mappings={"rekognition": ["Cat"]}, audit_rate=0)
    Label.objects.filter(project=project, name="dog").update(mappings={"rekognition": ["Dog"]}, audit_rate=0)
    Project.objects.filter(pk=project.pk).update(backend_config={"region": REGION, **config}, min_sharpness=0)
    project.refresh_from_db()
    return project


def upload(project, django_capture_on_commit_callbacks, data: bytes | None = None) -> Item:
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=data or photo_bytes("chelsea"), filename="chelsea.jpg")
    item.refresh_from_db()
    return item


class TaskPathTests:
    def test_a_throttled_call_is_retried_and_the_item_is_auto_accepted_with_its_cost(
        self, rekognition_stub, django_capture_on_commit_callbacks
    ):
        project = make_pets_project()
        rekognition_stub.add_client_error("detect_labels", "ThrottlingException", "Rate exceeded", 400, expected_params=expected())
        rekognition_stub.add_response("detect_labels", CAT_PHOTO, expected())
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.AUTO_ACCEPTED and item.label.name == "cat"
        assert item.attempts == 2
        prediction = item.predictions.get()
        assert prediction.backend == "rekognition" and prediction.model_version.startswith("rekognition-detect-labels/")
        assert prediction.scores == {"cat": 0.9871, "dog": 0.0, "unknown": 0.0129}
        assert prediction.cost_usd == Decimal("0.001")
        assert prediction.raw["LabelModelVersion"] == "3.0"

    def test_throttling_that_outlasts_the_retries_sends_the_item_to_review(
        self, rekognition_stub, settings, django_capture_on_commit_callbacks
    ):
        settings.LOUPE_BACKEND_RETRIES = 2
        project = make_pets_project()
        for _ in range(3):
            rekognition_stub.add_client_error("detect_labels", "ThrottlingException", "Rate exceeded", 400)
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 3
        assert item.status_reason == "Backend unavailable: rekognition ThrottlingException"
        assert item.error_detail == "Backend unavailable: rekognition ThrottlingException: Rate exceeded"
        assert not Prediction.objects.exists()

    @pytest.mark.parametrize("code,status,message,advice", [
        ("AccessDeniedException", 403, DENIED,
         "the AWS credentials lack permission for this call (see docs/backends.md for the IAM policy)"),
        ("InvalidParameterException", 400, "Request has invalid parameters",
         "a parameter was refused: check the backend settings"),
        ("ValidationException", 400, "1 validation error detected",
         "the request was refused as invalid: check the backend settings"),
        ("InvalidImageFormatException", 400, "Request has unsupported image format",
         "the service could not read the image"),
    ])
    def test_an_error_retrying_cannot_fix_sends_the_item_to_review_at_once_with_advice(
        self, rekognition_stub, django_capture_on_commit_callbacks, code, status, message, advice
    ):
        project = make_pets_project()
        rekognition_stub.add_client_error("detect_labels", code, message, status)
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 1
        assert item.status_reason == f"Backend error: rekognition {code} ({advice})"  # members: no ARN, no account
        assert item.error_detail == f"Backend error: rekognition {code}: {message} ({advice})"  # admins and logs
        assert not Prediction.objects.exists()

    def test_a_class_left_unmapped_sends_items_to_review_without_a_call(self, rekognition_stub, django_capture_on_commit_callbacks):
        project = make_pets_project()
        Label.objects.filter(project=project, name="dog").update(mappings={})
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW
        assert item.status_reason.startswith("Backend error: class 'dog' has no Rekognition label names")

    def test_an_identical_image_reuses_the_scores_and_is_not_sent_or_billed_again(
        self, rekognition_stub, django_capture_on_commit_callbacks
    ):
        project = make_pets_project()
        rekognition_stub.add_response("detect_labels", CAT_PHOTO, expected())
        first = upload(project, django_capture_on_commit_callbacks)
        second = upload(project, django_capture_on_commit_callbacks)
        reused = second.predictions.get()
        assert reused.reused_from == first.predictions.get()
        assert (reused.cost_usd, reused.saved_usd) == (Decimal("0"), Decimal("0.001"))
        assert second.status == Item.Status.AUTO_ACCEPTED
