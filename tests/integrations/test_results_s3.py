"""Results to S3 (moto): each settled item's result as JSON in the A2I output shape."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from classify import events
from classify.models import Item, Label
from integrations import deliveries, outbound
from integrations.models import Delivery, Endpoint
from tests.base import make_colour_project, make_review_item, make_user

pytestmark = pytest.mark.django_db
BUCKET = "results-bucket"


@pytest.fixture
def s3(moto_s3, settings):
    settings.LOUPE_S3_ROOTS = [f"s3://{BUCKET}/loupe"]
    settings.LOUPE_WEBHOOK_BACKOFF_SECONDS = 0
    moto_s3.create_bucket(Bucket=BUCKET)
    return moto_s3


@pytest.fixture
def project():
    return make_colour_project(admin=make_user("ada"))


def settle(project, capture, *, by=None, answers=None) -> tuple[Item, str]:
    item = make_review_item(project, {"red": 0.7, "green": 0.1, "blue": 0.1, "unknown": 0.1})
    red = Label.objects.get(project=project, name="red")
    with capture(execute=True), transaction.atomic():
        Item.objects.filter(pk=item.pk).update(status=Item.Status.REVIEWED, label=red)
        event = events.item_settled(item.pk, by=by, answers=answers)
    return item, str(event.pk)


def test_each_settled_item_is_written_in_the_a2i_output_shape(project, s3, django_capture_on_commit_callbacks):
    endpoint = deliveries.create_endpoint(project=project, url=f"s3://{BUCKET}/loupe/colours/results")
    assert endpoint.kind == Endpoint.Kind.RESULTS_S3
    ada = make_user("rita")
    answers = [{"reviewer": "rita", "labels": ["red"], "at": "2026-12-01T09:00:00+00:00", "seconds_spent": 2.5}]
    item, event_id = settle(project, django_capture_on_commit_callbacks, by=ada, answers=answers)
    (key,) = [obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    created = item.created_at
    assert key == (f"loupe/colours/results/colours/{created:%Y/%m/%d/%H/%M/%S}/item-{item.pk}-{event_id}/output.json")
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert document["humanLoopName"] == f"item-{item.pk}-{event_id}"
    assert document["inputContent"]["scores"] == {"red": 0.7, "green": 0.1, "blue": 0.1, "unknown": 0.1}
    assert document["humanAnswers"] == [{
        "answerContent": {"labels": ["red"]}, "submissionTime": "2026-12-01T09:00:00+00:00",
        "timeSpentInSeconds": 2.5, "workerId": "rita",
        "workerMetadata": {"identityData": {"identityProviderType": "Loupe", "sub": "rita"}}}]
    assert document["result"]["status"] == "reviewed" and document["result"]["labels"] == ["red"]
    assert document["result"]["settled_by"] == "rita"
    assert Delivery.objects.get().last_error == "" and Delivery.objects.get().state == "delivered"


def test_locations_outside_the_projects_s3_roots_are_refused(project, s3):
    for url in [f"s3://{BUCKET}/other/colours", f"s3://{BUCKET}/loupe/someone-else", "s3://another-bucket/loupe/colours",
                f"s3://{BUCKET}/loupe/colours/../x"]:
        with pytest.raises(outbound.Refused):
            deliveries.create_endpoint(project=project, url=url)


def test_an_unwritable_bucket_is_retried_then_reported(project, s3, settings, django_capture_on_commit_callbacks):
    settings.LOUPE_WEBHOOK_MAX_ATTEMPTS = 2
    settings.LOUPE_S3_ROOTS = ["s3://missing-bucket/loupe"]
    deliveries.create_endpoint(project=project, url="s3://missing-bucket/loupe/colours")
    settle(project, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("failed", 2) and "NoSuchBucket" in delivery.last_error


def test_a_test_event_writes_a_test_file(project, s3, django_capture_on_commit_callbacks):
    from integrations import tasks

    endpoint = deliveries.create_endpoint(project=project, url=f"s3://{BUCKET}/loupe/colours")
    with django_capture_on_commit_callbacks(execute=True):
        delivery = deliveries.send_test_event(endpoint=endpoint, user=make_user("bob"))
        tasks.queue_deliveries([delivery.pk])
    (key,) = [obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert key.startswith("loupe/colours/colours/") and key.endswith(f"test-{delivery.event_id}/output.json")


def test_the_location_is_checked_again_before_each_write(project, s3, settings, django_capture_on_commit_callbacks):
    deliveries.create_endpoint(project=project, url=f"s3://{BUCKET}/loupe/colours")
    settings.LOUPE_S3_ROOTS = ["s3://elsewhere/loupe"]  # the installation moved its roots since
    settle(project, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == ("failed", 1) and "must be under" in delivery.last_error
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
