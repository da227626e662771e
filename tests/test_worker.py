"""Upload → broker → a real Celery worker subprocess → the database, in separate processes.

The worker (``celery_worker_process`` in tests/conftest.py) shares the test database, the broker
and the media folder with this process; tests wait on the database with a deadline, never on
a fixed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest

from classify.models import Item, Prediction
from classify.services import intake
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
    item = intake.ingest_upload(project=project, data=data, filename=name)
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
    # The worker ran them (received, succeeded); one task may classify several items in a batch.
    assert celery_worker_process.log().count("Task classify.classify_item[") >= 2


def test_a_retryable_backend_error_is_retried_through_the_broker_then_goes_to_review(celery_worker_process, settings):
    assert settings.LOUPE_BACKEND_RETRIES == 1
    project = make_colour_project(config={"fail": "retryable"})
    item = upload(project, solid_image((255, 0, 0)), "throttled.png")

    [item] = wait_until_terminal([item])

    assert item.status == Item.Status.NEEDS_REVIEW
    assert item.status_reason == "Backend unavailable: colour backend: throttled (test)"
    assert item.attempts == 2  # the first try and one retry, published by the worker
    assert not Prediction.objects.exists()


# The crash tests come last: a dead child's message keeps its prefetch slot until Celery gives
# up on the child (worker_lost_wait, 10 s, with the filesystem broker), so a worker takes
# nothing new meanwhile and its warm shutdown waits for it.


def test_a_dead_worker_childs_item_is_classified_again_at_once_and_once(celery_worker_process, settings, tmp_path):
    """The colour backend's "crash_once" kills the pool child (os._exit) mid-task, as an OOM kill
    would, the first time only. The worker's main process releases the dead child's claim
    before Celery hands the message out again, so the second delivery classifies the item
    without waiting for the claim to go stale (the worker's LOUPE_STUCK_CLASSIFYING_AFTER is
    240 s) and without any sweeper; one prediction, no double work."""
    assert settings.LOUPE_STUCK_CLASSIFYING_AFTER == 240
    project = make_colour_project(config={"crash_once": str(tmp_path / "crashed")})
    item = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="red.png")

    [item] = wait_until_terminal([item], timeout=45)

    assert (tmp_path / "crashed").exists()
    assert item.status == Item.Status.AUTO_ACCEPTED and item.attempts == 2
    assert Prediction.objects.filter(item=item).count() == 1


def test_a_poison_image_that_kills_every_worker_child_ends_failed_without_a_sweeper(celery_worker_process, settings):
    """Each crash releases the claim and the message comes back; the third claim finds the
    attempts used (LOUPE_MAX_ATTEMPTS is 2 here) and gives up instead of looping forever."""
    assert settings.LOUPE_MAX_ATTEMPTS == 2 and settings.LOUPE_STUCK_CLASSIFYING_AFTER == 240
    project = make_colour_project(config={"fail": "crash"})
    item = upload(project, solid_image((255, 0, 0)), "poison.png")

    [item] = wait_until_terminal([item])

    assert item.status == Item.Status.FAILED
    assert item.status_reason == ("Gave up after 2 attempts. Last problem: "
                                  "The worker process stopped mid-task (killed, or out of memory).")
    assert item.attempts == 3
    assert not Prediction.objects.exists()


@pytest.mark.worker_settings(LOUPE_STUCK_CLASSIFYING_AFTER=0)
def test_a_task_whose_worker_child_dies_is_redelivered_until_the_attempts_are_used(celery_worker_process, settings):
    """acks_late + task_reject_on_worker_lost: the message goes back to the broker.

    No sweeper runs, so after the first crash only a redelivered message can move the item. How
    soon Celery requeues it differs (Redis: when the pool notices the dead child, 0-5 s; the
    filesystem broker: ~10 s later, worker_lost_wait); so that a redelivery always finds the
    claim stale, this worker counts every claim as stale (0 s). Two crashed attempts, then the
    third claim gives up: it does not loop forever.
    """
    assert settings.LOUPE_MAX_ATTEMPTS == 2
    project = make_colour_project(config={"fail": "crash"})
    item = upload(project, solid_image((255, 0, 0)), "poison.png")

    [item] = wait_until_terminal([item])

    assert item.status == Item.Status.FAILED
    assert item.status_reason.startswith("Gave up after 2 attempts. Last problem:"), item.status_reason
    assert item.attempts == 3
    assert not Prediction.objects.exists()
