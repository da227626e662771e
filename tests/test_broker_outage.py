"""A Redis outage while a real worker has unacknowledged tasks in flight: the worker reconnects
and finishes everything; it used to exit ("AttributeError: 'NoneType' object has no attribute
'hostname'" from kombu's restore_unacked).

kombu moves a delivered message into its "unacked" hash in a second command after BRPOP, so a
connection cut between the two can still drop a message (rarely; seen under heavy machine load).
Loupe's guarantee does not rest on the broker: the sweeper re-publishes an item that stays
``received``, and the test runs it as celery beat would."""

from __future__ import annotations

import time

import pytest
from kombu import Connection

from classify.models import Item, Prediction
from classify.services import intake, lifecycle, queueing
from classify.tasks import classify_item as classify_item_task
from config.broker import transport_for
from config.celery import app as celery_app
from tests.base import make_colour_project, solid_image
from tests.conftest import WORKER_SETTINGS
from tests.redis_server import RedisServer
from tests.test_worker import wait_until_terminal
from tests.worker_process import CeleryWorkerProcess, worker_environment

pytestmark = [pytest.mark.worker, pytest.mark.skipif(not RedisServer.available(), reason="no redis-server")]

ITEMS = 150
OUTAGES = 3


def wait_for_done(count: int, worker: CeleryWorkerProcess) -> None:
    """Until ``count`` items are classified, so that the next outage hits work in flight."""
    deadline = time.monotonic() + 60
    while Item.objects.filter(status=Item.Status.AUTO_ACCEPTED).count() < count:
        assert worker.running and time.monotonic() < deadline, worker.log()[-5000:]
        time.sleep(0.02)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def worker_on(transactional_db, settings, tmp_path):
    """A real worker on the given broker URL, sharing the test database and media folder."""
    workers = []

    def start(url: str) -> CeleryWorkerProcess:
        media = tmp_path / "media"
        settings.MEDIA_ROOT = str(media)
        settings.STORAGES = {**settings.STORAGES, "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media)}}}
        env = worker_environment(media_root=media, loupe_settings={**WORKER_SETTINGS, "LOUPE_VISIBILITY_TIMEOUT": 5})
        env["CELERY_BROKER_URL"] = url
        worker = CeleryWorkerProcess(env=env, log_path=tmp_path / "worker.log")
        workers.append(worker)
        worker.start()
        celery_app.conf.task_always_eager = False  # tests run tasks in-process unless told otherwise
        return worker

    yield start
    celery_app.conf.task_always_eager = True
    for worker in workers:
        worker.stop()


def publisher(url: str):
    """hand_to_queue for the test's own Redis (the suite's broker settings point elsewhere)."""
    def hand_to_queue(item_id: int) -> bool:
        with Connection(url, transport=transport_for(url)) as connection:
            classify_item_task.apply_async((item_id,), connection=connection)
        return True
    return hand_to_queue


def sweeper(every: float = 2.0):
    """The sweeper at most every ``every`` seconds, as celery beat runs it."""
    last = [0.0]

    def sweep() -> None:
        if time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            lifecycle.sweep_stuck_items()
    return sweep


def test_the_worker_reconnects_after_redis_dies_under_in_flight_tasks(redis_server, worker_on, monkeypatch, settings):
    monkeypatch.setattr(queueing, "hand_to_queue", lambda item_id: True)  # we publish to our own Redis
    project = make_colour_project(config={"sleep": 0.02})
    items = [intake.ingest_upload(project=project, data=solid_image((255, 0, 0), size=(96, 80 + n)),
                                    filename=f"red-{n}.png") for n in range(ITEMS)]
    worker = worker_on(redis_server.url)
    with Connection(redis_server.url, transport=transport_for(redis_server.url)) as connection:
        for item in items:
            classify_item_task.apply_async((item.pk,), connection=connection)

    for outage in range(OUTAGES):  # one outage does not always hit the bad moment; three did, every time
        wait_for_done(ITEMS * (outage + 1) // (OUTAGES + 2), worker)
        redis_server.stop()  # SIGTERM, as docker stop does: Redis closes its clients and exits
        time.sleep(1)
        redis_server.start()

    monkeypatch.setattr(lifecycle, "hand_to_queue", publisher(redis_server.url))
    settings.LOUPE_STUCK_RECEIVED_AFTER = 10
    done = wait_until_terminal(items, timeout=90, each_poll=sweeper())

    assert worker.running, worker.log()
    assert "Unrecoverable error" not in worker.log()
    assert {item.status for item in done} == {Item.Status.AUTO_ACCEPTED}
    assert Prediction.objects.filter(item__in=items).count() == ITEMS  # each scored once
