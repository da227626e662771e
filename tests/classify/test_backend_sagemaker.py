"""The SageMaker endpoint backend: request, every response shape, validation, errors, the task path.

AWS is stubbed at the outer boundary only: botocore's Stubber on the real sagemaker-runtime client
that the backend gets from ``aws.client``.
"""

from __future__ import annotations

import io
import json
from decimal import Decimal
from unittest import mock

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from PIL import Image

from classify import aws
from classify.backends import get_backend
from classify.backends.base import BackendError, ClassSpec
from classify.backends.sagemaker import SageMakerBackend
from classify.models import Item, Label, Project
from classify.services import intake, projects
from tests.base import solid_image

REGION = "us-east-1"
ENDPOINT = "pets-classifier"
CLASSES = (ClassSpec("cat"), ClassSpec("dog"), ClassSpec("unknown", is_unknown=True))
CONFIG = {"endpoint_name": ENDPOINT, "region": REGION}


class JpegBytes:
    """Matches request bytes that are a JPEG (of at most ``max_side`` pixels a side)."""

    def __eq__(self, other) -> bool:
        return isinstance(other, bytes) and other[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(other)).mode == "RGB"


@pytest.fixture
def stub(aws_env):
    with Stubber(aws.client("sagemaker-runtime", REGION)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def response(value, *, variant: str = "AllTraffic") -> dict:
    data = value if isinstance(value, bytes) else json.dumps(value).encode()
    return {"Body": StreamingBody(io.BytesIO(data), len(data)), "ContentType": "application/json",
            "InvokedProductionVariant": variant}


def request(**extra) -> dict:
    return {"EndpointName": ENDPOINT, "Body": JpegBytes(), "ContentType": "application/x-image",
            "Accept": "application/json", **extra}


def backend(classes=CLASSES, **config) -> SageMakerBackend:
    return SageMakerBackend(classes=classes, config={**CONFIG, **config})


def image() -> Image.Image:
    return Image.new("RGB", (64, 48), (200, 30, 30))


class SageMakerResponseShapeTests:
    @pytest.mark.parametrize("body", [
        pytest.param([0.7, 0.2], id="built-in algorithm: a list in class-index order"),
        pytest.param([[0.7, 0.2]], id="a batch of one"),
        pytest.param({"predictions": [0.7, 0.2]}, id="predictions: a list"),
        pytest.param({"predictions": [[0.7, 0.2]]}, id="predictions: TF Serving, one instance"),
        pytest.param({"predictions": [{"label": "cat", "score": 0.7}, {"label": "dog", "score": 0.2}]},
                     id="predictions: label/score dicts"),
        pytest.param({"predictions": [{"class": "dog", "probability": 0.2}, {"class": "cat", "probability": 0.7}]},
                     id="predictions: class/probability dicts"),
        pytest.param({"predictions": [{"probabilities": [0.7, 0.2]}]}, id="predictions: named outputs"),
        pytest.param({"prediction": [0.7, 0.2]}, id="prediction (jsonlines style)"),
        pytest.param({"probabilities": [0.7, 0.2]}, id="probabilities"),
        pytest.param({"probabilities": [0.2, 0.7], "labels": ["dog", "cat"], "predicted_label": "cat"},
                     id="JumpStart verbose: the endpoint names its classes"),
        pytest.param([{"label": "cat", "score": 0.7}, {"label": "dog", "score": 0.2}], id="Hugging Face pipeline"),
        pytest.param({"cat": 0.7, "dog": 0.2}, id="a name to score map"),
        pytest.param(b'{"prediction": [0.7, 0.2]}\n{"prediction": [0.1, 0.1]}\n', id="jsonlines: the first line"),
    ])
    def test_it_reads_every_common_shape_into_a_full_distribution(self, stub, body):
        stub.add_response("invoke_endpoint", response(body), request())
        scores = backend().classify(image())
        assert scores.scores == {"cat": 0.7, "dog": 0.2, "unknown": 0.1}
        assert scores.model_version == backend().model_version
        assert scores.raw["endpoint"] == ENDPOINT and scores.raw["variant"] == "AllTraffic"
        assert scores.raw["model_scores"] == {"cat": 0.7, "dog": 0.2}
        assert scores.cost_usd == 0.0

    def test_several_model_classes_add_up_to_one_project_class_and_the_rest_is_unknown(self, stub):
        classes = (ClassSpec("cat", mapping=("tabby", "siamese")), ClassSpec("dog"),
                   ClassSpec("unknown", is_unknown=True, mapping=("background",)))
        stub.add_response("invoke_endpoint", response([0.3, 0.25, 0.1, 0.2, 0.15]), request())
        scores = backend(classes, class_order=["tabby", "siamese", "dog", "car", "background"]).classify(image())
        assert scores.scores == {"cat": 0.55, "dog": 0.1, "unknown": pytest.approx(0.35)}

    def test_model_classes_mapped_to_unknown_count_as_recognised_names(self, stub):
        classes = (ClassSpec("cat"), ClassSpec("dog"), ClassSpec("unknown", is_unknown=True, mapping=("background",)))
        stub.add_response("invoke_endpoint", response([{"label": "background", "score": 0.9}]), request())
        assert backend(classes, class_order=["cat", "dog", "background"]).classify(image()).scores == {
            "cat": 0.0, "dog": 0.0, "unknown": 1.0}

    def test_softmax_outputs_a_hair_over_one_are_accepted(self, stub):
        stub.add_response("invoke_endpoint", response([1.0000001, 0.0]), request())
        assert backend().classify(image()).scores == {"cat": 1.0, "dog": 0.0, "unknown": 0.0}

    def test_a_big_model_keeps_only_its_top_classes_in_raw(self, stub):
        order = ["cat", "dog"] + [f"other-{n}" for n in range(998)]
        stub.add_response("invoke_endpoint", response([0.5, 0.3] + [0.2 / 998] * 998), request())
        scores = backend(class_order=order).classify(image())
        assert scores.raw["n_model_classes"] == 1000 and len(scores.raw["model_scores"]) == 20
        assert scores.scores["cat"] == 0.5

    def test_it_sends_the_configured_content_type_accept_and_variant(self, stub):
        config = {"content_type": "image/jpeg", "accept": "application/json;verbose", "target_variant": "blue"}
        stub.add_response("invoke_endpoint", response([0.1, 0.9], variant="blue"), request(
            ContentType="image/jpeg", Accept="application/json;verbose", TargetVariant="blue"))
        assert backend(**config).classify(image()).raw["variant"] == "blue"

    def test_a_greyscale_image_is_sent_as_an_rgb_jpeg(self, stub):
        stub.add_response("invoke_endpoint", response([0.1, 0.9]), request())
        backend().classify(Image.new("L", (32, 32), 128))

    def test_it_keeps_under_the_configured_rate(self, stub):
        stub.add_response("invoke_endpoint", response([0.1, 0.9]), request())
        with mock.patch("classify.aws.pace") as pace:
            backend(max_tps=5).classify(image())
        pace.assert_called_once_with(f"sagemaker:{ENDPOINT}", 5.0)

    def test_a_per_call_price_becomes_the_cost(self, stub):
        stub.add_response("invoke_endpoint", response([0.1, 0.9]), request())
        assert backend(price_per_call=0.0004).classify(image()).cost_usd == 0.0004


class SageMakerBadResponseTests:
    @pytest.mark.parametrize("body,words", [
        ([0.1, 0.2, 0.3, 0.2, 0.2], "the endpoint returned 5 probabilities but class_order lists 4 classes"),
        ([0.5, "high", 0.1, 0.1], "non-numeric score 'high' for class 'dog'"),
        ([0.5, None, 0.1, 0.1], "non-numeric score None for class 'dog'"),
        ([0.5, True, 0.1, 0.1], "non-numeric score True"),
        (b"[NaN, 0.5, 0.1, 0.1]", "NaN for class 'cat'"),
        ([-0.1, 0.5, 0.1, 0.1], "a score of -0.1 for class 'cat'"),
        ([3.2, -1.5, 0.4, 0.0], "a score of 3.2 for class 'cat'; scores must be probabilities in 0..1 (does the "
                                "model return logits"),
        ({"cat": 1.7}, "a score of 1.7 for class 'cat'"),
        ({"predictions": [{"label": "cat"}]}, "prediction for 'cat' has no score"),
        ({"probabilities": [0.5, 0.5], "labels": ["cat", "dog", "cow"]}, "returned 2 probabilities but 3 labels"),
        (b"<html>Internal error</html>", "the endpoint's response is not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("hello", "a shape Loupe does not read"),
        ([], "a shape Loupe does not read"),
        ([0.5, [0.2]], "a shape Loupe does not read"),
        ([[0.1, 0.9], [0.5, 0.5]], "the endpoint returned 2 predictions for one image"),
        ({"Cat": 0.9, "Dog": 0.1}, "none of the endpoint's class names (Cat, Dog) is a project class"),
    ])
    def test_a_response_that_breaks_its_contract_is_a_clear_non_retryable_error(self, stub, body, words):
        stub.add_response("invoke_endpoint", response(body), request())
        with pytest.raises(BackendError) as error:
            backend(class_order=["cat", "dog", "horse", "cow"]).classify(image())
        assert words in str(error.value) and not error.value.retryable


class SageMakerErrorTests:
    @pytest.mark.parametrize("code,status", [
        ("ServiceUnavailable", 503), ("ModelNotReadyException", 429), ("InternalFailure", 500),
        ("InternalDependencyException", 530), ("ThrottlingException", 400),
    ])
    def test_outages_and_throttling_are_retryable(self, stub, code, status):
        stub.add_client_error("invoke_endpoint", code, "try later", status, expected_params=request())
        with pytest.raises(BackendError, match=code) as error:
            backend().classify(image())
        assert error.value.retryable

    def test_a_model_error_carries_the_containers_own_message_and_is_not_retried(self, stub):
        stub.add_client_error(
            "invoke_endpoint", "ModelError", 'Received client error (400) from primary with message "bad input"', 424,
            expected_params=request(),
            modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "unsupported image size",
                            "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x"},
        )
        with pytest.raises(BackendError) as error:
            backend().classify(image())
        message = str(error.value)
        assert not error.value.retryable
        assert message.startswith('sagemaker-runtime ModelError: Received client error (400) from primary with message '
                                  '"bad input" (the endpoint\'s model raised an error on this image)')
        assert "OriginalMessage: unsupported image size" in message and "LogStreamArn: arn:aws:logs" in message

    def test_no_region_anywhere_says_where_to_set_one(self, aws_env, monkeypatch):
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        monkeypatch.delenv("AWS_REGION", raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        with pytest.raises(BackendError, match='set "region" in the backend settings') as error:
            SageMakerBackend(classes=CLASSES, config={"endpoint_name": ENDPOINT}).classify(image())
        assert not error.value.retryable


class SageMakerSettingsTests:
    @pytest.mark.parametrize("config,words", [
        ({}, "set endpoint_name"),
        ({"endpoint_name": "arn:aws:sagemaker:us-east-1:1:endpoint/x"}, "not a SageMaker endpoint name"),
        ({**CONFIG, "endpoint": "x"}, "unknown setting(s) endpoint"),
        ({**CONFIG, "content_type": "image/png"}, "content_type must be one of application/x-image, image/jpeg"),
        ({**CONFIG, "accept": "text/csv"}, "accept must be a JSON media type"),
        ({**CONFIG, "class_order": "cat,dog"}, "class_order must be a non-empty list"),
        ({**CONFIG, "class_order": ["cat", "cat", "dog"]}, "class_order lists a class name twice"),
        ({**CONFIG, "class_order": ["cat", "horse"]}, "class_order does not list dog"),
        ({**CONFIG, "max_tps": -1}, "'max_tps' must be a number of at least 0"),
        ({**CONFIG, "price_per_call": "free"}, "'price_per_call' must be a number"),
        ({**CONFIG, "region": 1}, "sagemaker backend setting 'region' must be an AWS region such as 'eu-west-1', not 1"),
        ({**CONFIG, "region": "Ireland"}, "'region' must be an AWS region such as 'eu-west-1'"),
        ({**CONFIG, "model_revision": "x" * 41}, "model_revision must be at most 40 characters"),
    ])
    def test_bad_settings_are_refused_up_front_with_what_to_fix(self, config, words):
        with pytest.raises(BackendError) as error:
            SageMakerBackend(classes=CLASSES, config=config)
        assert words in str(error.value) and not error.value.retryable

    def test_one_model_class_cannot_stand_for_two_project_classes(self):
        classes = (ClassSpec("cat", mapping=("pet",)), ClassSpec("dog", mapping=("pet",)),
                   ClassSpec("unknown", is_unknown=True))
        with pytest.raises(BackendError, match="'pet' is mapped to both 'cat' and 'dog'"):
            backend(classes)

    def test_the_default_class_order_is_the_projects_classes_with_their_mappings(self):
        classes = (ClassSpec("cat", mapping=("tabby", "siamese")), ClassSpec("dog"), ClassSpec("unknown", is_unknown=True))
        assert backend(classes).class_order == ("tabby", "siamese", "dog")

    def test_the_model_version_is_known_before_any_call_and_tracks_what_changes_the_scores(self):
        with mock.patch("classify.aws.client") as client:
            version = backend().model_version
        client.assert_not_called()
        assert version.startswith(f"sagemaker/{ENDPOINT}/") and version == backend().model_version
        others = {backend(endpoint_name="other").model_version, backend(class_order=["dog", "cat"]).model_version,
                  backend(target_variant="blue").model_version, backend(model_revision="2024-06").model_version,
                  backend(content_type="image/jpeg").model_version}
        assert len(others) == 5 and version not in others
        assert backend(target_variant="blue", model_revision="r2").model_version.startswith(
            f"sagemaker/{ENDPOINT}/variant=blue/rev=r2/")
        assert backend(max_tps=3, price_per_call=0.1).model_version == version  # pacing and price do not score

    def test_it_is_registered(self):
        assert isinstance(get_backend("sagemaker", classes=CLASSES, config=CONFIG), SageMakerBackend)


# --- Through the task path: ingest → eager Celery task → prediction or review ----------------------


@pytest.fixture
def project(db):
    project = projects.create_project(slug="pets", labels=["cat", "dog"], backend="sagemaker")
    Label.objects.filter(project=project).update(audit_rate=0.0, accept_threshold=0.6)
    Project.objects.filter(pk=project.pk).update(
        backend_config={**CONFIG, "price_per_call": 0.0004}, min_sharpness=0)
    project.refresh_from_db()
    return project


def ingest(project, django_capture_on_commit_callbacks) -> Item:
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=solid_image((200, 30, 30)), filename="cat.png")
    item.refresh_from_db()
    return item


@pytest.mark.django_db
class SageMakerTaskTests:
    def test_a_scored_item_is_routed_and_its_prediction_records_scores_raw_and_cost(
        self, stub, project, django_capture_on_commit_callbacks
    ):
        stub.add_response("invoke_endpoint", response([0.9, 0.05]), request())
        item = ingest(project, django_capture_on_commit_callbacks)
        prediction = item.predictions.get()
        assert item.status == Item.Status.AUTO_ACCEPTED and item.label.name == "cat" and item.attempts == 1
        assert prediction.backend == "sagemaker" and prediction.model_version.startswith(f"sagemaker/{ENDPOINT}/")
        assert prediction.scores == {"cat": 0.9, "dog": 0.05, "unknown": 0.05}
        assert prediction.raw["endpoint"] == ENDPOINT
        assert prediction.cost_usd == Decimal("0.0004")

    @pytest.mark.parametrize("code,status", [("ServiceUnavailable", 503), ("ModelNotReadyException", 429)])
    def test_an_outage_is_retried_by_the_task_then_scores(
        self, stub, project, code, status, django_capture_on_commit_callbacks
    ):
        stub.add_client_error("invoke_endpoint", code, "not now", status, expected_params=request())
        stub.add_response("invoke_endpoint", response([0.9, 0.05]), request())
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.AUTO_ACCEPTED and item.attempts == 2
        assert item.predictions.get().cost_usd == Decimal("0.0004")

    def test_when_retries_run_out_the_item_goes_to_review_as_backend_unavailable(
        self, stub, project, settings, django_capture_on_commit_callbacks
    ):
        settings.LOUPE_BACKEND_RETRIES = 2
        for _ in range(3):
            stub.add_client_error("invoke_endpoint", "ServiceUnavailable", "endpoint overloaded", 503,
                                  expected_params=request())
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 3
        assert item.status_reason == "Backend unavailable: sagemaker-runtime ServiceUnavailable"
        assert item.error_detail == "Backend unavailable: sagemaker-runtime ServiceUnavailable: endpoint overloaded"
        assert not item.predictions.exists()

    @pytest.mark.parametrize("code,status,message,advice", [
        ("AccessDeniedException", 403, "User: arn:aws:iam::1:user/loupe is not authorized to perform: "
         "sagemaker:InvokeEndpoint", "lack permission for this call (see docs/backends.md for the IAM policy)"),
        ("ValidationError", 400, f"Endpoint {ENDPOINT} of account 123456789012 not found.",
         "check the backend settings (endpoint name, content type)"),
        ("ModelError", 424, 'Received client error (415) from primary with message "unsupported content type"',
         "the endpoint's model raised an error on this image"),
    ])
    def test_each_non_retryable_error_sends_the_item_to_review_at_once_with_its_message(
        self, stub, project, code, status, message, advice, django_capture_on_commit_callbacks
    ):
        stub.add_client_error("invoke_endpoint", code, message, status, expected_params=request())
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 1
        assert item.status_reason.startswith(f"Backend error: sagemaker-runtime {code} (")
        assert advice in item.status_reason and message not in item.status_reason
        assert item.error_detail.startswith(f"Backend error: sagemaker-runtime {code}: {message}")

    def test_a_response_that_breaks_its_contract_goes_to_review_at_once(
        self, stub, project, django_capture_on_commit_callbacks
    ):
        stub.add_response("invoke_endpoint", response([0.2, 0.3, 0.5]), request())
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 1
        assert item.status_reason == ("Backend error: sagemaker: the endpoint returned 3 probabilities but class_order "
                                      "lists 2 classes (set class_order to the model's class names in index order)")

    def test_missing_settings_send_items_to_review_with_what_to_set(self, aws_env, project, django_capture_on_commit_callbacks):
        Project.objects.filter(pk=project.pk).update(backend_config={"region": REGION})
        project.refresh_from_db()
        item = ingest(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW
        assert item.status_reason == ("Backend error: sagemaker: set endpoint_name in the backend settings to the name "
                                      "of the SageMaker endpoint")
