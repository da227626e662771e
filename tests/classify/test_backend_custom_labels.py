"""The Rekognition Custom Labels backend, against botocore's Stubber on the real client."""

from __future__ import annotations

import io
from decimal import Decimal

import numpy as np
import pytest
from botocore.stub import ANY
from PIL import Image

from classify import aws
from classify.backends import get_backend
from classify.backends.base import BackendError, ClassSpec
from classify.backends.custom_labels import MAX_IMAGE_BYTES, CustomLabelsBackend
from classify.models import Item, Label, Prediction, Project
from classify.services import intake, projects
from tests.base import photo_bytes
from tests.classify.test_backend_rekognition import JpegUnder

pytestmark = pytest.mark.django_db

REGION = "us-east-1"
ARN = "arn:aws:rekognition:us-east-1:123456789012:project/vehicles/version/vehicles.2026-11-21T10.00.00/1763719200000"
CLASSES = (
    ClassSpec("bicycle"),
    ClassSpec("car"),
    ClassSpec("bus", mapping=("coach",)),  # the model calls it "coach"
    ClassSpec("unknown", is_unknown=True),
)
NOT_RUNNING = f"ProjectVersion arn {ARN} is not in RUNNING state"


def detect_custom_labels(**confidences: float) -> dict:
    return {"CustomLabels": [{"Name": name, "Confidence": value} for name, value in confidences.items()]}


def expected(**overrides) -> dict:
    return {"ProjectVersionArn": ARN, "Image": {"Bytes": ANY}, "MinConfidence": 0, **overrides}


def backend(classes=CLASSES, **config) -> CustomLabelsBackend:
    return CustomLabelsBackend(classes=classes, config={"project_version_arn": ARN, **config})


def rgb(size=(120, 90)) -> Image.Image:
    return Image.new("RGB", size, (90, 90, 90))


class DetectCustomLabelsScoringTests:
    def test_each_class_scores_its_labels_confidence_and_unknown_takes_the_rest(self, rekognition_stub):
        rekognition_stub.add_response("detect_custom_labels", detect_custom_labels(bicycle=91.25, car=6.5, coach=0.75),
                             expected())
        scores = backend().classify(rgb())
        assert scores.scores == {"bicycle": 0.9125, "car": 0.065, "bus": 0.0075, "unknown": 0.015}
        assert scores.cost_usd == 0.0
        assert scores.raw["CustomLabels"][0] == {"Name": "bicycle", "Confidence": 91.25}

    def test_names_match_case_insensitively(self, rekognition_stub):
        rekognition_stub.add_response("detect_custom_labels", detect_custom_labels(Bicycle=80.0, CAR=10.0, Coach=1.0),
                             expected())
        assert backend().classify(rgb()).scores == {"bicycle": 0.8, "car": 0.1, "bus": 0.01, "unknown": 0.09}

    def test_model_labels_that_are_no_class_are_ignored_and_classes_the_model_lacks_are_noted(self, rekognition_stub):
        rekognition_stub.add_response("detect_custom_labels", detect_custom_labels(bicycle=70.0, tram=25.0), expected())
        scores = backend().classify(rgb())
        assert scores.scores == {"bicycle": 0.7, "car": 0.0, "bus": 0.0, "unknown": 0.3}
        assert scores.raw["not_in_model"] == ["bus", "car"]

    def test_a_model_none_of_whose_labels_is_a_class_is_an_error_naming_them(self, rekognition_stub):
        rekognition_stub.add_response("detect_custom_labels", detect_custom_labels(tram=60.0, ferry=40.0), expected())
        with pytest.raises(BackendError) as error:
            backend().classify(rgb())
        assert not error.value.retryable
        assert "none of the model's labels (ferry, tram) is a class of this project" in str(error.value)

    def test_an_empty_answer_means_everything_is_unknown(self, rekognition_stub):
        rekognition_stub.add_response("detect_custom_labels", {"CustomLabels": []}, expected())
        assert backend().classify(rgb()).scores == {"bicycle": 0.0, "car": 0.0, "bus": 0.0, "unknown": 1.0}

    def test_a_configured_price_per_call_is_the_cost(self, rekognition_stub):
        rekognition_stub.add_response("detect_custom_labels", detect_custom_labels(bicycle=99.0), expected())
        assert backend(price_per_call=0.0011).classify(rgb()).cost_usd == 0.0011

    def test_the_model_not_running_is_a_clear_error_that_retrying_cannot_fix(self, rekognition_stub):
        rekognition_stub.add_client_error("detect_custom_labels", "ResourceNotReadyException", NOT_RUNNING, 400,
                                 expected_params=expected())
        with pytest.raises(BackendError) as error:
            backend().classify(rgb())
        assert not error.value.retryable
        assert str(error.value) == (f"rekognition ResourceNotReadyException: {NOT_RUNNING} (the model is not running: "
                                    "start the model version (StartProjectVersion) and try again)")


class ImageBytesTests:
    def test_a_large_noisy_image_is_made_smaller_until_it_is_under_4_mb(self, rekognition_stub):
        noise = np.random.default_rng(1).integers(0, 256, (3000, 3000, 3), dtype=np.uint8)
        sent = JpegUnder(MAX_IMAGE_BYTES)
        rekognition_stub.add_response("detect_custom_labels", detect_custom_labels(bicycle=50.0),
                             expected(Image={"Bytes": sent}))
        backend().classify(Image.fromarray(noise))
        width, height = Image.open(io.BytesIO(sent.seen)).size
        assert len(sent.seen) < 4_000_000 and width == height and 1500 < width < 3000

    def test_an_ordinary_photo_goes_at_full_size(self, rekognition_stub):
        sent = JpegUnder(MAX_IMAGE_BYTES)
        rekognition_stub.add_response("detect_custom_labels", detect_custom_labels(bicycle=50.0),
                             expected(Image={"Bytes": sent}))
        photo = Image.open(io.BytesIO(photo_bytes("rocket"))).convert("RGB")
        backend().classify(photo)
        assert Image.open(io.BytesIO(sent.seen)).size == photo.size == (640, 427)


class SettingsTests:
    @pytest.mark.parametrize("config,words", [
        ({}, "'project_version_arn' is missing (it looks like arn:aws:rekognition:"),
        ({"project_version_arn": "vehicles.2026-11-21"}, "is not a project version ARN: 'vehicles.2026-11-21'"),
        ({"project_version_arn": ARN.rsplit("/version/", 1)[0]}, "is not a project version ARN"),
        ({"project_version_arn": ARN, "region": "eu-west-1"},
         "'region' is 'eu-west-1' but the project version is in 'us-east-1': remove 'region' or make it match"),
        ({"project_version_arn": ARN, "max_tps": -2}, "'max_tps' must be a number of at least 0"),
        ({"project_version_arn": ARN, "price_per_call": "free"}, "'price_per_call' must be a number"),
    ])
    def test_a_wrong_setting_is_refused_with_a_message_naming_it(self, config, words):
        with pytest.raises(BackendError) as error:
            CustomLabelsBackend(classes=CLASSES, config=config)
        assert words in str(error.value) and not error.value.retryable

    def test_two_classes_claiming_one_model_label_are_refused(self):
        classes = (ClassSpec("bicycle"), ClassSpec("bike", mapping=("Bicycle",)), ClassSpec("unknown", is_unknown=True))
        with pytest.raises(BackendError, match="classes 'bicycle' and 'bike' both stand for the Custom Labels label"):
            backend(classes)

    def test_the_region_comes_from_the_arn_and_no_client_is_made_before_the_first_image(self, aws_env):
        built = get_backend("custom_labels", classes=CLASSES, config={"project_version_arn": ARN})
        assert built.region == "us-east-1" and built.price == 0.0
        assert aws.client.cache_info().currsize == 0

    def test_the_version_names_the_project_version_and_changes_with_the_arn_or_the_names(self):
        version = backend().model_version
        assert version.startswith("custom-labels/vehicles.2026-11-21T10.00.00:")
        assert backend().model_version == version
        other_project = ARN.replace("project/vehicles/", "project/boats/")
        assert backend(project_version_arn=other_project).model_version != version
        renamed = (ClassSpec("bicycle", mapping=("bike",)),) + CLASSES[1:]
        assert backend(renamed).model_version != version
        assert len(backend(project_version_arn=ARN.replace("vehicles.2026", "v" * 240)).model_version) <= 200


# --- Through the real task path (eager Celery) -------------------------------------------------


def make_vehicles_project(**config) -> Project:
    project = projects.create_project(slug="vehicles", labels=["rocket", "car"], backend="custom_labels")
    Label.objects.filter(project=project).update(audit_rate=0)
    Project.objects.filter(pk=project.pk).update(backend_config={"project_version_arn": ARN, **config},
                                                 min_sharpness=0)
    project.refresh_from_db()
    return project


def upload(project, django_capture_on_commit_callbacks) -> Item:
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=photo_bytes("rocket"), filename="rocket.jpg")
    item.refresh_from_db()
    return item


class TaskPathTests:
    def test_a_throttled_call_is_retried_and_the_item_is_auto_accepted_with_its_cost(
        self, rekognition_stub, django_capture_on_commit_callbacks
    ):
        project = make_vehicles_project(price_per_call=0.002)
        rekognition_stub.add_client_error("detect_custom_labels", "ThrottlingException", "Slow down", 400,
                                 expected_params=expected())
        rekognition_stub.add_response("detect_custom_labels", detect_custom_labels(rocket=97.0, car=2.0), expected())
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.AUTO_ACCEPTED and item.label.name == "rocket" and item.attempts == 2
        prediction = item.predictions.get()
        assert prediction.backend == "custom_labels"
        assert prediction.model_version.startswith("custom-labels/vehicles.2026-11-21T10.00.00:")
        assert prediction.scores == {"rocket": 0.97, "car": 0.02, "unknown": 0.01}
        assert prediction.cost_usd == Decimal("0.002")

    def test_throttling_that_outlasts_the_retries_sends_the_item_to_review(
        self, rekognition_stub, settings, django_capture_on_commit_callbacks
    ):
        settings.LOUPE_BACKEND_RETRIES = 1
        project = make_vehicles_project()
        for _ in range(2):
            rekognition_stub.add_client_error("detect_custom_labels", "ProvisionedThroughputExceededException", "Too many", 400)
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 2
        assert item.status_reason.startswith("Backend unavailable: rekognition ProvisionedThroughputExceededException")

    @pytest.mark.parametrize("code,status,message,advice", [
        ("ResourceNotReadyException", 400, NOT_RUNNING,
         "the model is not running: start the model version (StartProjectVersion) and try again"),
        ("ResourceNotFoundException", 400, "ProjectVersion not found",
         "the model, endpoint or project version named in the backend settings does not exist in this region"),
        ("AccessDeniedException", 403, "not authorized to perform: rekognition:DetectCustomLabels",
         "the AWS credentials lack permission for this call (see docs/backends.md for the IAM policy)"),
        ("InvalidParameterException", 400, "Request has invalid parameters",
         "a parameter was refused: check the backend settings"),
    ])
    def test_an_error_retrying_cannot_fix_sends_the_item_to_review_at_once_with_advice(
        self, rekognition_stub, django_capture_on_commit_callbacks, code, status, message, advice
    ):
        project = make_vehicles_project()
        rekognition_stub.add_client_error("detect_custom_labels", code, message, status)
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 1
        assert item.status_reason == f"Backend error: rekognition {code} ({advice})"
        assert item.error_detail.startswith(f"Backend error: rekognition {code}: ")
        assert not Prediction.objects.exists()

    def test_a_missing_arn_sends_items_to_review_with_what_to_set(self, rekognition_stub, django_capture_on_commit_callbacks):
        project = make_vehicles_project()
        Project.objects.filter(pk=project.pk).update(backend_config={})
        project.refresh_from_db()
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW
        assert item.status_reason.startswith("Backend error: custom_labels backend setting 'project_version_arn' is missing")
