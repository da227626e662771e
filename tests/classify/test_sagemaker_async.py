"""SageMaker asynchronous endpoints (``invocation: async``): the image staged on S3 under the
project's own prefix, InvokeEndpointAsync, the answer read back from OutputLocation with backoff,
FailureLocation as a clear error, every S3 location confined to the project.

S3 is moto; sagemaker-runtime is botocore's Stubber on the real client ``aws.client`` hands out.
"""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber

from classify import aws
from classify.backends import sagemaker
from classify.backends.base import BackendError, ClassSpec
from classify.backends.sagemaker import SageMakerBackend
from classify.models import Item, Label, Project
from classify.services import intake, projects
from classify.services.scoring import build_backend
from tests.base import solid_image
from tests.classify.test_backend_sagemaker import image

REGION = "us-east-1"
BUCKET = "loupe-data"
ENDPOINT = "pets-async"
PREFIX = f"s3://{BUCKET}/loupe/pets/"
OUTPUT_KEY = "loupe/pets/async-out/abc.out"
FAILURE_KEY = "loupe/pets/async-failures/abc.err"
CLASSES = (ClassSpec("cat"), ClassSpec("dog"), ClassSpec("unknown", is_unknown=True))
CONFIG = {"endpoint_name": ENDPOINT, "region": REGION, "invocation": "async"}


class StagedUnder:
    """Matches an InputLocation that is a new .jpg under ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __eq__(self, other) -> bool:
        return isinstance(other, str) and other.startswith(self.prefix) and other.endswith(".jpg")


def request(prefix: str = f"{PREFIX}sagemaker-async/") -> dict:
    return {"EndpointName": ENDPOINT, "InputLocation": StagedUnder(prefix), "ContentType": "application/x-image",
            "Accept": "application/json", "InferenceId": Anything()}


class Anything:
    def __eq__(self, other) -> bool:
        return True


def answer(output_key: str = OUTPUT_KEY, failure_key: str | None = FAILURE_KEY) -> dict:
    value = {"OutputLocation": f"s3://{BUCKET}/{output_key}", "InferenceId": "abc"}
    if failure_key:
        value["FailureLocation"] = f"s3://{BUCKET}/{failure_key}"
    return value


@pytest.fixture
def s3(moto_s3, settings):
    settings.LOUPE_S3_ROOTS = [f"s3://{BUCKET}/loupe"]
    moto_s3.create_bucket(Bucket=BUCKET)
    return moto_s3


@pytest.fixture
def stub(s3):
    with Stubber(aws.client("sagemaker-runtime", REGION)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


class Waits(list):
    then: dict

    def __init__(self) -> None:
        super().__init__()
        self.then = {}


@pytest.fixture
def sleeps(monkeypatch):
    """The backoff's waits, recorded instead of slept; ``then[n]`` runs at the n-th wait."""
    waits = Waits()

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        waits.then.get(len(waits), lambda: None)()

    monkeypatch.setattr(sagemaker.time, "sleep", sleep)
    return waits


def backend(**config) -> SageMakerBackend:
    return SageMakerBackend(classes=CLASSES, config={**CONFIG, "s3_prefixes": [PREFIX], **config})


def staged(s3) -> list[str]:
    return [entry["Key"] for entry in s3.list_objects_v2(Bucket=BUCKET, Prefix="loupe/pets/sagemaker-async/")
            .get("Contents", [])]


class SageMakerAsyncTests:
    def test_the_answer_is_read_back_after_backoff_and_the_staged_input_deleted(self, s3, stub, sleeps):
        stub.add_response("invoke_endpoint_async", answer(), request())
        seen_staged = []
        sleeps.then[1] = lambda: seen_staged.extend(staged(s3))
        sleeps.then[3] = lambda: s3.put_object(Bucket=BUCKET, Key=OUTPUT_KEY, Body=json.dumps([0.8, 0.15]).encode())
        scores = backend().classify(image())
        assert scores.scores == {"cat": 0.8, "dog": 0.15, "unknown": pytest.approx(0.05)}
        assert sleeps == [1.0, 2.0, 4.0]  # polled at 0, 1, 3 and 7 s: found at the fourth look
        assert len(seen_staged) == 1 and staged(s3) == []  # staged while waiting, gone after

    def test_the_backoff_is_capped_and_bounded_by_async_timeout_then_retryable(self, s3, stub, sleeps):
        stub.add_response("invoke_endpoint_async", answer(), request())
        with pytest.raises(BackendError, match="no answer from the asynchronous endpoint pets-async within 40 s") as raised:
            backend(async_timeout=40).classify(image())
        assert raised.value.retryable and sleeps == [1.0, 2.0, 4.0, 8.0, 15.0]
        assert staged(s3) == []

    def test_a_failure_location_is_a_non_retryable_error_with_its_first_line(self, s3, stub, sleeps):
        stub.add_response("invoke_endpoint_async", answer(), request())
        sleeps.then[1] = lambda: s3.put_object(Bucket=BUCKET, Key=FAILURE_KEY,
                                               Body=b"ModelError: unsupported image size\nTraceback ...")
        with pytest.raises(BackendError) as raised:
            backend().classify(image())
        assert not raised.value.retryable
        assert str(raised.value) == ("sagemaker: the asynchronous endpoint failed on this image: "
                                     "ModelError: unsupported image size")

    def test_an_output_location_outside_the_projects_prefix_is_refused_unread(self, s3, stub, sleeps):
        s3.put_object(Bucket=BUCKET, Key="elsewhere/abc.out", Body=b"[0.8, 0.15]")
        stub.add_response("invoke_endpoint_async", answer("elsewhere/abc.out"), request())
        with pytest.raises(BackendError, match="must be under s3://loupe-data/loupe/pets/.*S3OutputPath") as raised:
            backend().classify(image())
        assert not raised.value.retryable and staged(s3) == []

    @pytest.mark.parametrize("config,prefixes", [
        ({"input_location": f"s3://{BUCKET}/other-project/"}, [PREFIX]),
        ({}, []),  # no LOUPE_S3_ROOTS: nowhere to stage
    ])
    def test_staging_outside_the_projects_prefixes_is_refused_before_any_call(self, s3, stub, config, prefixes):
        with pytest.raises(BackendError, match="input_location of the asynchronous SageMaker endpoint") as raised:
            backend(**config, s3_prefixes=prefixes).classify(image())
        assert not raised.value.retryable
        assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0

    def test_an_input_location_inside_the_prefix_is_used(self, s3, stub, sleeps):
        stub.add_response("invoke_endpoint_async", answer(), request(f"{PREFIX}staging/"))
        s3.put_object(Bucket=BUCKET, Key=OUTPUT_KEY, Body=json.dumps({"cat": 0.1, "dog": 0.9}).encode())
        assert backend(input_location=f"{PREFIX}staging").classify(image()).scores["dog"] == 0.9
        assert sleeps == []

    @pytest.mark.parametrize("config,message", [
        ({"invocation": "batch"}, "invocation must be one of realtime, async"),
        ({"invocation": "realtime", "input_location": PREFIX}, "settings of invocation: async"),
    ])
    def test_bad_settings_are_refused(self, config, message):
        with pytest.raises(BackendError, match=message):
            SageMakerBackend(classes=CLASSES, config={**CONFIG, **config})


@pytest.mark.django_db
class SageMakerAsyncTaskTests:
    @pytest.fixture
    def project(self, db):
        project = projects.create_project(slug="pets", labels=["cat", "dog"], backend="sagemaker")
        Label.objects.filter(project=project).update(audit_rate=0.0, accept_threshold=0.6)
        # A project admin cannot widen the confinement by naming prefixes in the settings.
        Project.objects.filter(pk=project.pk).update(
            backend_config={**CONFIG, "s3_prefixes": ["s3://loupe-data/"]}, min_sharpness=0)
        project.refresh_from_db()
        return project

    def test_the_backend_is_given_the_projects_own_prefixes_only(self, s3, project):
        assert build_backend(project, list(project.labels.all())).s3_prefixes == (PREFIX,)

    def test_an_upload_is_classified_through_the_asynchronous_endpoint(
        self, s3, stub, sleeps, project, django_capture_on_commit_callbacks
    ):
        stub.add_response("invoke_endpoint_async", answer(), request())
        s3.put_object(Bucket=BUCKET, Key=OUTPUT_KEY, Body=json.dumps({"predictions": [0.9, 0.05]}).encode())
        with django_capture_on_commit_callbacks(execute=True):
            item = intake.ingest_upload(project=project, data=solid_image((200, 30, 30)), filename="cat.png")
        item.refresh_from_db()
        assert item.status == Item.Status.AUTO_ACCEPTED and item.label.name == "cat"
        assert item.predictions.get().scores == {"cat": 0.9, "dog": 0.05, "unknown": pytest.approx(0.05)}
        assert staged(s3) == []

    def test_each_asynchronous_invocation_counts_against_the_budget_a_failed_one_too_and_the_next_waits(
        self, s3, stub, sleeps, project, monkeypatch, django_capture_on_commit_callbacks
    ):
        from decimal import Decimal

        from classify.models import Budget, Spend
        from classify.services import queueing

        later = []
        monkeypatch.setattr(queueing, "hand_to_queue_later", lambda item_id, countdown: later.append(item_id))
        Project.objects.filter(pk=project.pk).update(backend_config={**project.backend_config, "price_per_call": 0.01})
        Budget.objects.create(project=project, backend="sagemaker", period="day", limit_usd=Decimal("0.028"))
        stub.add_response("invoke_endpoint_async", answer(), request())
        s3.put_object(Bucket=BUCKET, Key=OUTPUT_KEY, Body=json.dumps([0.9, 0.05]).encode())
        with django_capture_on_commit_callbacks(execute=True):
            first = intake.ingest_upload(project=project, data=solid_image((200, 30, 30)), filename="a.png")
        assert first.predictions.get().cost_usd == Decimal("0.01")

        s3.delete_object(Bucket=BUCKET, Key=OUTPUT_KEY)
        stub.add_response("invoke_endpoint_async", answer(), request())
        sleeps.then[len(sleeps) + 1] = lambda: s3.put_object(Bucket=BUCKET, Key=FAILURE_KEY, Body=b"ModelError: no")
        with django_capture_on_commit_callbacks(execute=True):
            failed = intake.ingest_upload(project=project, data=solid_image((30, 200, 30)), filename="b.png")
        failed.refresh_from_db()
        assert failed.status == Item.Status.NEEDS_REVIEW and not failed.predictions.exists()
        assert [(s.kind, s.cost_usd) for s in Spend.objects.all()] == [(Spend.Kind.FAILED_CALL, Decimal("0.01"))]

        with django_capture_on_commit_callbacks(execute=True):  # $0.02 spent + $0.01 > $0.028: no invocation
            held = intake.ingest_upload(project=project, data=solid_image((30, 30, 200)), filename="c.png")
        held.refresh_from_db()
        assert held.status == Item.Status.QUEUED and held.status_reason.startswith(
            "Waiting: the project pets's daily budget of $0.03 for sagemaker is used up") and later == [held.pk]
