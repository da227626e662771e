"""One ``item.settled`` event per settlement, written in the settling transaction, and the
training-run events; end to end to a receiver through a real Celery worker."""

from __future__ import annotations

import json
import time

import pytest
from django.db import transaction

from classify.models import Event, Item, Label, Membership
from classify.services import intake, lifecycle
from reviewer import services as review
from tests.base import claim_next, make_colour_project, make_review_item, make_user, noisy_image, solid_image

from .conftest import _serve

pytestmark = pytest.mark.django_db


def settled(item=None) -> list[dict]:
    rows = Event.objects.filter(type=Event.Type.ITEM_SETTLED).order_by("created_at")
    return [event.data["item"] for event in rows if item is None or event.data["item"]["id"] == item.pk]


@pytest.fixture
def team():
    admin, rita, sam = make_user("ada"), make_user("rita"), make_user("sam")
    project = make_colour_project(admin=admin, reviewer=rita)
    Membership.objects.create(project=project, user=sam)
    return project, rita, sam


def upload(project, data: bytes, capture):
    with capture(execute=True):
        item = intake.ingest_upload(project=project, data=data, filename="x.png")
    item.refresh_from_db()
    return item


def test_an_auto_accepted_upload_settles_once_with_its_scores(team, django_capture_on_commit_callbacks):
    project, *_ = team
    item = upload(project, solid_image((250, 5, 5)), django_capture_on_commit_callbacks)
    assert item.status == Item.Status.AUTO_ACCEPTED
    (event,) = settled()
    assert (event["id"], event["status"], event["label"], event["labels"]) == (item.pk, "auto_accepted", "red", ["red"])
    assert event["scores"]["red"] > 0.8 and event["settled_by"] is None and event["human_answers"] == []
    assert event["model"]["backend"] == "colour"


def test_an_upload_rejected_by_the_quality_checks_settles_once(team, django_capture_on_commit_callbacks):
    project, *_ = team
    Item.objects.all().delete()
    project.min_side = 200
    project.save()
    item = upload(project, solid_image((250, 5, 5)), django_capture_on_commit_callbacks)
    assert item.status == Item.Status.REJECTED
    (event,) = settled()
    assert event["status"] == "rejected" and "small" in event["status_reason"].lower()


def test_an_item_that_fails_settles_once(team, settings, django_capture_on_commit_callbacks):
    project, *_ = team
    settings.LOUPE_MAX_ATTEMPTS = 2
    item = Item.objects.create(project=project, sha256="a" * 64, width=1, height=1, image="x.jpg",
                               status=Item.Status.QUEUED, attempts=2)
    assert lifecycle.start_classification(item_id=item.pk) is None
    assert lifecycle.start_classification(item_id=item.pk) is None  # nothing more happens to it
    (event,) = settled()
    assert event["status"] == "failed" and event["status_reason"].startswith("Gave up after 2 attempts")


def test_review_settles_once_per_decision_and_not_while_a_consensus_is_open(team):
    project, rita, sam = team
    project.consensus_reviews = 2
    project.save()
    red = Label.objects.get(project=project, name="red")
    item = make_review_item(project, {"red": 0.4, "green": 0.3, "blue": 0.2, "unknown": 0.1}, reviews_needed=2)
    assert settled() == []  # waiting for review is not settled
    review.record_decision(token=str(claim_next(project=project, reviewer=rita).lease_token), reviewer=rita,
                           labels=[red], seconds_spent=2.0)
    assert settled() == []  # one of two reviews
    review.record_decision(token=str(claim_next(project=project, reviewer=sam).lease_token), reviewer=sam,
                           labels=[red], seconds_spent=3.0)
    (event,) = settled(item)
    assert (event["status"], event["labels"], event["settled_by"]) == ("reviewed", ["red"], "sam")
    assert [(a["reviewer"], a["labels"], a["seconds_spent"]) for a in event["human_answers"]] == [
        ("rita", ["red"], 2.0), ("sam", ["red"], 3.0)]


def test_an_undone_and_corrected_label_is_a_second_settlement(team):
    project, rita, _ = team
    red, green = (Label.objects.get(project=project, name=name) for name in ("red", "green"))
    make_review_item(project)
    review.record_decision(token=str(claim_next(project=project, reviewer=rita).lease_token), reviewer=rita,
                           labels=[red])
    again = review.undo_last(project=project, reviewer=rita)
    assert len(settled()) == 1  # taking a label back settles nothing
    review.record_decision(token=str(again.lease_token), reviewer=rita, labels=[green])
    assert [event["labels"] for event in settled()] == [["red"], ["green"]]


def test_a_settlement_that_rolls_back_leaves_no_event(team, monkeypatch):
    project, rita, _ = team
    red = Label.objects.get(project=project, name="red")
    make_review_item(project)
    token = str(claim_next(project=project, reviewer=rita).lease_token)
    monkeypatch.setattr(review, "schedule_refit_check", lambda project: 1 / 0)  # fails after the event
    with pytest.raises(ZeroDivisionError):
        review.record_decision(token=token, reviewer=rita, labels=[red])
    assert settled() == [] and Item.objects.get().status == Item.Status.NEEDS_REVIEW


@pytest.fixture
def worker_receiver():
    yield from _serve()


@pytest.mark.worker
@pytest.mark.worker_settings(LOUPE_WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32", LOUPE_WEBHOOK_ALLOW_HTTP="true",
                             LOUPE_WEBHOOK_BACKOFF_SECONDS="0.2")
def test_an_upload_reaches_the_receiver_through_the_worker_after_a_500(celery_worker_process, worker_receiver,
                                                                     settings):
    from integrations.models import Delivery, Endpoint

    settings.LOUPE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the worker got it as the environment string
    project = make_colour_project()
    Endpoint.objects.create(project=project, url=worker_receiver.url())
    worker_receiver.script = [500, 200]
    with transaction.atomic():
        item = intake.ingest_upload(project=project, data=noisy_image((240, 10, 10), seed=3), filename="r.png")
    requests = worker_receiver.wait_for(2, timeout=60)
    assert len(requests) == 2
    bodies = [json.loads(r.body) for r in requests]
    assert {b["id"] for b in bodies} == {str(Event.objects.get().pk)}
    assert bodies[0]["data"]["item"]["id"] == item.pk and bodies[0]["data"]["item"]["status"] == "auto_accepted"
    deadline = time.monotonic() + 10
    while Delivery.objects.get().state != Delivery.State.DELIVERED and time.monotonic() < deadline:
        time.sleep(0.1)
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == (Delivery.State.DELIVERED, 2)
