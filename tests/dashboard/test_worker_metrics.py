"""What only a real Celery worker can show: its heartbeat, and retries counted where they happen."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from classify.models import Item, WorkerHeartbeat
from classify.services import intake
from dashboard.models import HourlyRollup
from dashboard.services.rollups import refresh_rollups, take_status_snapshot
from tests.base import make_colour_project, solid_image
from tests.test_worker import wait_until_terminal

pytestmark = pytest.mark.worker


@pytest.mark.worker_settings(LOUPE_WORKER_HEARTBEAT_SECONDS=1)
def test_the_worker_beats_and_counts_the_retries_of_a_failing_backend(celery_worker_process, client, settings):
    project = make_colour_project(config={"fail": "retryable"})
    item = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="throttled.png")

    [item] = wait_until_terminal([item])

    assert item.status == Item.Status.NEEDS_REVIEW and item.attempts == 2  # one retry
    retries = HourlyRollup.objects.get(project=project, metric="retries")
    assert (retries.key, retries.value) == ("colour:BackendError", 1)
    deadline = time.monotonic() + 15
    while not WorkerHeartbeat.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the table was emptied before this test: wait for the next beat
    beat = WorkerHeartbeat.objects.get()
    assert beat.name.startswith("celery@")
    take_status_snapshot()  # what the periodic refresh does
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'loupe_backend_retries_total{backend="colour",error="BackendError",project="colours"} 1.0' in body
    assert 'loupe_items_backend_error{project="colours"} 1.0' in body
    assert 'loupe_backend_errors_total{backend="colour",project="colours"} 1.0' in body
    assert 'loupe_items{project="colours",status="needs_review"} 1.0' in body
    assert f'loupe_worker_heartbeat_age_seconds{{kind="worker",worker="{beat.name}"}}' in body


def test_retries_are_counted_in_process_too(settings, django_capture_on_commit_callbacks, db):
    settings.LOUPE_BACKEND_RETRIES = 2
    project = make_colour_project(config={"fail": "retryable"})
    with django_capture_on_commit_callbacks(execute=True):
        intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="x.png")
    assert HourlyRollup.objects.get(project=project, metric="retries").value == 2


def test_items_sent_to_review_by_a_failing_backend_are_a_counter_that_outlives_the_review(
        settings, django_capture_on_commit_callbacks, db, client):
    settings.LOUPE_BACKEND_RETRIES = 1
    project = make_colour_project(config={"fail": "fatal"})
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="x.png")
    item.refresh_from_db()
    assert item.status == Item.Status.NEEDS_REVIEW and item.status_reason.startswith("Backend ")
    Item.objects.filter(pk=item.pk).update(status=Item.Status.REVIEWED, status_reason="")  # a person decided
    refresh_rollups(since=timezone.now() - timedelta(hours=2))  # recomputes, keeps what the worker counted
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert "# TYPE loupe_backend_errors_total counter" in body
    assert 'loupe_backend_errors_total{backend="colour",project="colours"} 1.0' in body
