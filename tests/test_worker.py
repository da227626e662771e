"""Upload → broker → a real Celery worker subprocess → the database, in separate processes.

The worker (``celery_worker_process`` in tests/conftest.py) shares the test database, the broker
and the media folder with this process; tests wait on the database with a deadline, never on
a fixed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest

from classify import services
from classify.models import Item, Prediction
from tests.base import make_colour_project, noisy_image, solid_image

pytestmark = pytest.mark.worker

DEADLINE = 60.0


def wait_until_terminal(items: Sequence[Item], *, timeout: float = DEADLINE,
                        each_poll: Callable[[], object] | None = None) -> list[Item]:
    """Poll until every item is in a terminal status; return them fresh, in the given order.

    ``each_poll`` runs before every look (e.g. the sweeper, as celery beat would run it).
    """
    ids = [item.pk for item in items]
    deadline = time.monotonic() + timeout
    while True:
        if each_poll is not None:
            each_poll()
        current = Item.objects.in_bulk(ids)
        if len(current) == len(ids) and all(item.is_terminal for item in current.values()):
            return [current[pk] for pk in ids]
        if time.monotonic() > deadline:
            states = {pk: (item.status, item.attempts, item.status_reason) for pk, item in current.items()}
            pytest.fail(f"items not terminal after {timeout:.0f} s: {states}")
        time.sleep(0.1)


def upload(project, data: bytes, name: str) -> Item:
    item = services.ingest_upload(project=project, data=data, filename=name)
    # Committed and handed to the broker (autocommit: on_commit ran at once), not run in-process.
    assert Item.objects.get(pk=item.pk).status in {Item.Status.QUEUED, Item.Status.CLASSIFYING,
                                                   Item.Status.AUTO_ACCEPTED, Item.Status.NEEDS_REVIEW}
    return item


def test_uploads_are_classified_and_routed_by_the_worker(celery_worker_process):
    project = make_colour_project()
    expected = {
        "red.png": (solid_image((255, 0, 0)), Item.Status.AUTO_ACCEPTED, "red"),
        "green.png": (solid_image((0, 255, 0)), Item.Status.AUTO_ACCEPTED, "green"),
        "blue.png": (noisy_image((0, 0, 255), seed=3), Item.Status.AUTO_ACCEPTED, "blue"),
        "dull-red.png": (solid_image((150, 40, 40)), Item.Status.NEEDS_REVIEW, None),
        "grey.png": (solid_image((128, 128, 128)), Item.Status.NEEDS_REVIEW, None),
    }
    items = [upload(project, data, name) for name, (data, _, _) in expected.items()]

    done = wait_until_terminal(items)

    outcome = {item.original_filename: (item.status, item.label.name if item.label else None) for item in done}
    assert outcome == {name: (status, label) for name, (_, status, label) in expected.items()}
    for item in done:
        prediction = Prediction.objects.get(item=item)
        assert prediction.backend == "colour" and prediction.decision == item.status
        assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert item.attempts == 1 and item.claim is not None
    assert "classify.classify_item" in celery_worker_process.log()


@pytest.mark.worker_settings(LOUPE_MAX_ATTEMPTS=2, LOUPE_STUCK_CLASSIFYING_AFTER=0)
def test_a_task_whose_worker_child_dies_is_redelivered_until_the_attempts_are_used(celery_worker_process):
    """acks_late + task_reject_on_worker_lost: the broker hands the message out again.

    With no sweeper running, only redelivery can move the item after the first crash. A claim
    counts as stale at once here (LOUPE_STUCK_CLASSIFYING_AFTER=0), so each redelivery claims
    the item again: two crashed attempts, then the third claim gives up.
    """
    project = make_colour_project(config={"fail": "crash"})
    item = upload(project, solid_image((255, 0, 0)), "poison.png")

    [item] = wait_until_terminal([item])

    assert item.status == Item.Status.FAILED
    assert item.status_reason.startswith("Gave up after 2 attempts"), item.status_reason
    assert item.attempts == 3
    assert not Prediction.objects.exists()
    assert "WorkerLostError" in celery_worker_process.log()


@pytest.mark.worker_settings(LOUPE_MAX_ATTEMPTS=2, LOUPE_STUCK_CLASSIFYING_AFTER=1)
def test_the_sweeper_recovers_items_of_a_dead_worker_child_and_gives_up_after_max_attempts(celery_worker_process):
    """The production timing: a redelivered message finds the claim still fresh and leaves the
    item alone; the sweeper (celery beat, here called by the test) re-queues it once the claim
    is stale, and fails it once it has used LOUPE_MAX_ATTEMPTS."""
    project = make_colour_project(config={"fail": "crash"})
    item = upload(project, solid_image((255, 0, 0)), "poison.png")

    [item] = wait_until_terminal([item], each_poll=services.sweep_stuck_items)

    assert item.status == Item.Status.FAILED
    assert item.status_reason.startswith("Gave up after"), item.status_reason
    # Two crashed attempts; a redelivery slower than the stale window may claim a third time
    # only to give up at once. Never more: it does not loop.
    assert item.attempts in (2, 3)
    assert not Prediction.objects.exists()


@pytest.mark.worker_settings(LOUPE_BACKEND_RETRIES=1, LOUPE_RETRY_BACKOFF_SECONDS=0)
def test_a_retryable_backend_error_is_retried_through_the_broker_then_goes_to_review(celery_worker_process):
    project = make_colour_project(config={"fail": "retryable"})
    item = upload(project, solid_image((255, 0, 0)), "throttled.png")

    [item] = wait_until_terminal([item])

    assert item.status == Item.Status.NEEDS_REVIEW
    assert item.status_reason.startswith("Backend unavailable"), item.status_reason
    assert item.status_reason == "Backend unavailable: colour backend: throttled (test)"
    assert item.attempts == 2  # the first try and one retry, published by the worker
    assert not Prediction.objects.exists()
