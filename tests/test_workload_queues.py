"""Workload queues with real workers laid out as docker-compose.yml runs them: a classification
finishes while an export is running on its own worker."""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import connection

from classify.models import Item
from classify.services import intake
from config.celery import app as celery_app
from reviewer.export.runs import start_export
from reviewer.models import Decision, Export
from tests.base import make_colour_project, make_review_item, make_user, solid_image
from tests.worker_process import CeleryWorkerProcess, celery_command, purge_broker, worker_environment

pytestmark = pytest.mark.worker

DEADLINE = 60.0


def wait_for(what, check, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {timeout:.0f} s")
        time.sleep(0.1)
    return found


@pytest.fixture
def compose_workers(transactional_db, settings, tmp_path):
    """An export worker (-Q export) and a local classification worker (-Q classify_local,celery),
    one pool process each, sharing this test's database, broker and media."""
    if connection.vendor != "postgresql":
        pytest.skip("holds an export mid-run with a PostgreSQL table lock; SQLite has no table locks")
    media = tmp_path / "media"
    settings.MEDIA_ROOT = str(media)
    settings.STORAGES = {**settings.STORAGES, "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(media)}}}
    env = worker_environment(media_root=media, loupe_settings={})
    purge_broker(unacked=True)
    workers = [CeleryWorkerProcess(env=env, log_path=tmp_path / f"{queues}.log",
                                   command=celery_command(queues=queues, concurrency=1))
               for queues in ("export", "classify_local,celery")]
    celery_app.conf.task_always_eager = False
    try:
        for worker in workers:
            worker.start()
        yield workers
    finally:
        celery_app.conf.task_always_eager = True
        for worker in workers:
            worker.stop()


def test_a_classification_finishes_while_an_export_runs(compose_workers):
    admin = make_user("ada")
    project = make_colour_project(admin=admin)
    for n, name in enumerate(["red", "green"] * 2):
        item = make_review_item(project, sha256=f"{n:064x}", label=project.labels.get(name=name))
        Item.objects.filter(pk=item.pk).update(status=Item.Status.REVIEWED)
        decision = Decision.objects.create(item=item, reviewer=admin, label=item.label)
        decision.labels.set([item.label])
    # The export reads the decisions' labels: while this lock is held, the running export waits
    # there (as a long one would be busy), holding the export worker.
    blocker = psycopg.connect(**connection.get_connection_params())
    try:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE reviewer_decision_labels IN ACCESS EXCLUSIVE MODE")
        export = start_export(project=project, user=admin, target=Export.DOWNLOAD, options={"test_split": 0})
        wait_for("running", lambda: Export.objects.get(pk=export.pk).state == Export.State.RUNNING)

        upload = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="red.png")
        wait_for("classified", lambda: Item.objects.get(pk=upload.pk).status == Item.Status.AUTO_ACCEPTED)
        assert Export.objects.get(pk=export.pk).state == Export.State.RUNNING  # still busy meanwhile
    finally:
        blocker.rollback()
        blocker.close()
    finished = wait_for("finished", lambda: Export.objects.get(pk=export.pk).state in (Export.State.DONE,
                                                                                          Export.State.FAILED))
    assert finished and "Task classify.classify_item[" not in compose_workers[0].log()  # nothing but the export there
