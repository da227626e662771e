"""Switching a project's backend, the cost of each call, and the AWS error seam."""

from __future__ import annotations

import itertools
from decimal import Decimal
from unittest import mock

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from classify import aws
from classify.backends.base import BackendError, Scores
from classify.models import Item, Project
from classify.services import classification, intake, lifecycle
from tests.base import make_colour_project, noisy_image
from tests.colour_backend import ColourBackend

pytestmark = pytest.mark.django_db


def test_items_in_flight_finish_with_their_backend_and_new_items_use_the_new_one(django_capture_on_commit_callbacks):
    project = make_colour_project()
    item = intake.ingest_upload(project=project, data=noisy_image((250, 5, 5), seed=1), filename="a.png")
    claimed = lifecycle.start_classification(item_id=item.pk)
    classification.pin_backend(claimed)
    Project.objects.filter(pk=project.pk).update(backend="local", backend_config={"mode": "zero_shot"})
    claimed.project.refresh_from_db()
    classification.score_item(claimed)
    assert Item.objects.get(pk=item.pk).predictions.get().backend == "colour"
    with django_capture_on_commit_callbacks(execute=True):
        new = intake.ingest_upload(project=project, data=noisy_image((5, 250, 5), seed=2), filename="b.png")
    assert Item.objects.get(pk=new.pk).predictions.get().backend == "local"


def test_the_cost_of_a_call_is_recorded_and_a_reuse_counts_as_saved(django_capture_on_commit_callbacks):
    project = make_colour_project()
    real = ColourBackend.classify

    def priced(self, image):
        scores = real(self, image)
        return Scores(scores.scores, scores.model_version, raw=scores.raw, cost_usd=0.001)

    data = noisy_image((250, 5, 5), seed=3)
    with mock.patch.object(ColourBackend, "classify", priced), django_capture_on_commit_callbacks(execute=True):
        first = intake.ingest_upload(project=project, data=data, filename="a.png")
        second = intake.ingest_upload(project=project, data=data, filename="b.png")
    one, two = first.predictions.get(), second.predictions.get()
    assert (one.cost_usd, one.saved_usd) == (Decimal("0.001"), Decimal("0"))
    assert (two.cost_usd, two.saved_usd) == (Decimal("0"), Decimal("0.001"))


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "boom"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "DetectLabels")


@pytest.mark.parametrize("exc,retryable,words", [
    (client_error("ThrottlingException"), True, "ThrottlingException"),
    (client_error("ProvisionedThroughputExceededException"), True, "Provisioned"),
    (client_error("InternalServerError", 500), True, "InternalServerError"),
    (client_error("Whatever", 503), True, "Whatever"),
    (client_error("AccessDeniedException", 403), False, "IAM policy"),
    (client_error("ResourceNotReadyException"), False, "model is not running"),
    (client_error("ValidationException"), False, "check the backend settings"),
    (ReadTimeoutError(endpoint_url="https://x"), True, "ReadTimeoutError"),
    (EndpointConnectionError(endpoint_url="https://x"), True, "EndpointConnectionError"),
    (NoCredentialsError(), False, "no AWS credentials"),
])
def test_aws_errors_become_backend_errors_with_the_right_retry_flag(exc, retryable, words):
    error = aws.backend_error(exc, "rekognition")
    assert isinstance(error, BackendError) and error.retryable is retryable and words in str(error)


def test_pace_admits_the_rate_then_waits_or_refuses(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with mock.patch("classify.aws.time") as clock:
        clock.time.return_value = 1000.2
        clock.monotonic.side_effect = itertools.count(0.0, 0.6)  # each look at the clock: 0.6 s later
        for _ in range(3):
            aws.pace("test-backend", 3)
        with pytest.raises(BackendError, match="rate limit of 3 calls/s") as error:
            aws.pace("test-backend", 3, wait_limit=1.0)
        assert clock.sleep.called  # it waited for the next second before giving up
        clock.time.return_value = 1001.1  # the next second: room again
        aws.pace("test-backend", 3)
    assert error.value.retryable


def test_clients_are_created_once_per_process(settings):
    aws.client.cache_clear()
    first = aws.client("rekognition", "eu-west-1")
    assert aws.client("rekognition", "eu-west-1") is first
    assert first.meta.config.read_timeout == settings.LOUPE_AWS_READ_TIMEOUT
    assert first.meta.config.retries["mode"] == settings.LOUPE_AWS_RETRY_MODE
