"""Batched inference (a worker of the local model classifies up to LOUPE_BATCH_SIZE ready items
in one forward pass) and the workload queues each kind of task is published to."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from classify import tasks
from classify.backends import local
from classify.models import Event, Item, Prediction, Project
from classify.services import classification, intake, learning, lifecycle, projects, queueing
from config.celery import app
from tests.base import make_colour_project, photo_bytes, solid_image

pytestmark = pytest.mark.django_db

CROPS = [(0, 0, 1, 1), (0.1, 0.1, 0.9, 0.9), (0, 0, 0.8, 0.8), (0.2, 0.2, 1, 1), (0.1, 0, 1, 0.9)]


def queued_photos(project, django_capture_on_commit_callbacks, n: int) -> list[Item]:
    """n uploads taken in whose messages are not delivered yet (as when a folder import commits)."""
    with django_capture_on_commit_callbacks(execute=False):
        items = [intake.ingest_upload(project=project, data=photo_bytes(("chelsea", "coffee")[i % 2], crop=CROPS[i]),
                                      filename=f"{i}.jpg") for i in range(n)]
    Item.objects.filter(pk__in=[item.pk for item in items]).update(status=Item.Status.QUEUED)
    return items


@pytest.fixture
def forward_passes(monkeypatch):
    """The batch size of every forward pass the local model makes."""
    sizes: list[int] = []
    real = local.embed_and_probabilities
    monkeypatch.setattr(local, "embed_and_probabilities", lambda images: sizes.append(len(images)) or real(images))
    return sizes


class BatchTests:
    def test_a_worker_classifies_ready_items_of_the_project_in_one_forward_pass(
            self, settings, forward_passes, django_capture_on_commit_callbacks):
        settings.LOUPE_BATCH_SIZE = 3
        project = projects.create_project(slug="pets", labels=["cat", "coffee"], backend="local")
        items = queued_photos(project, django_capture_on_commit_callbacks, 5)
        tasks.classify_item(items[0].pk)
        assert forward_passes == [3]
        routed = Item.objects.filter(pk__in=[i.pk for i in items]).exclude(status=Item.Status.QUEUED)
        assert sorted(routed.values_list("pk", flat=True)) == [items[0].pk, items[1].pk, items[2].pk]
        assert set(routed.values_list("backend", "attempts")) == {("local", 1)}
        tasks.classify_item(items[1].pk)  # its own message arrives later: nothing left to do
        tasks.classify_item(items[3].pk)  # the next message takes the rest
        assert forward_passes == [3, 2]
        assert Prediction.objects.filter(item__project=project).count() == 5
        assert Prediction.objects.filter(item__project=project).values("item").distinct().count() == 5

    def test_when_a_batch_fails_the_others_go_back_to_the_queue_and_this_item_goes_alone(
            self, settings, monkeypatch, django_capture_on_commit_callbacks):
        settings.LOUPE_BATCH_SIZE = 4
        project = projects.create_project(slug="pets", labels=["cat", "coffee"], backend="local")
        items = queued_photos(project, django_capture_on_commit_callbacks, 3)
        real = local.embed_and_probabilities

        def fail_batches(images):
            if len(images) > 1:
                raise RuntimeError("out of memory (test)")
            return real(images)

        monkeypatch.setattr(local, "embed_and_probabilities", fail_batches)
        with django_capture_on_commit_callbacks(execute=True):
            tasks.classify_item(items[0].pk)  # the others are published again and (eagerly) run alone
        statuses = dict(Item.objects.filter(pk__in=[i.pk for i in items]).values_list("pk", "status"))
        assert set(statuses.values()) <= {Item.Status.AUTO_ACCEPTED, Item.Status.NEEDS_REVIEW}
        assert Prediction.objects.filter(item__project=project).count() == 3

    def test_a_batch_is_recorded_in_a_constant_number_of_statements_plus_one_update_per_item(
            self, django_capture_on_commit_callbacks):
        """What the worker writes for a batch: the predictions and the settled events inserted
        together, per item only its status UPDATE (the learning order's class shares counted
        afresh for each batch here, as when their cache has expired)."""
        project = make_colour_project()
        Project.objects.filter(pk=project.pk).update(review_order=Project.ReviewOrder.LEARNING)

        def record(numbers: range) -> tuple[int, list[Item]]:
            with django_capture_on_commit_callbacks(execute=False):  # red ones auto-accept, grey ones go to review
                uploads = [intake.ingest_upload(project=project, filename=f"{k}.png",
                                                data=solid_image((255, k, 0) if k % 2 else (128 + k,) * 3))
                           for k in numbers]
            Item.objects.filter(pk__in=[item.pk for item in uploads]).update(status=Item.Status.QUEUED)
            first = lifecycle.start_classification(item_id=uploads[0].pk, claimed_by="w/1")
            classification.pin_backend(first)
            batch = [first, *lifecycle.claim_batch_mates(first, limit=len(numbers) - 1, claimed_by="w/1")]
            cache.delete(learning._shares_key(project))
            with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=False):
                classification.score_items(batch)
            return len(queries), batch

        two, _ = record(range(2))
        eight, batch = record(range(2, 10))
        assert eight - two == 6
        settled = {event.data["item"]["id"]: event.data["item"] for event in Event.objects.filter(type="item.settled")}
        red = [item for item in batch if Item.objects.get(pk=item.pk).status == Item.Status.AUTO_ACCEPTED]
        assert len(red) == 4 and all(settled[item.pk]["scores"] == item.predictions.get().scores for item in red)
        assert Item.objects.filter(pk__in=[i.pk for i in batch], status=Item.Status.NEEDS_REVIEW,
                                   learning_priority__isnull=False).count() == 4

    def test_batch_size_one_classifies_one_item_per_message(self, settings, forward_passes,
                                                           django_capture_on_commit_callbacks):
        settings.LOUPE_BATCH_SIZE = 1
        project = projects.create_project(slug="pets", labels=["cat", "coffee"], backend="local")
        items = queued_photos(project, django_capture_on_commit_callbacks, 2)
        tasks.classify_item(items[0].pk)
        assert forward_passes == [1] and Item.objects.get(pk=items[1].pk).status == Item.Status.QUEUED


class QueueTests:
    def test_classification_goes_to_the_local_or_the_cloud_queue_by_backend(self, django_capture_on_commit_callbacks):
        colour = make_colour_project()
        with django_capture_on_commit_callbacks(execute=False):
            item = intake.ingest_upload(project=colour, data=solid_image((255, 0, 0)), filename="r.png")
        assert queueing.classification_queue(item.pk) == "classify_local"
        colour.backend = "rekognition"
        colour.save(update_fields=["backend"])
        assert queueing.classification_queue(item.pk) == "classify_cloud"
        Item.objects.filter(pk=item.pk).update(backend="colour")  # pinned at its first claim
        assert queueing.classification_queue(item.pk) == "classify_local"

    @pytest.mark.parametrize(("task", "queue"), [
        ("classify.classify_item", "classify_local"), ("classify.advance_training_run", "training"),
        ("classify.check_refit", "training"), ("reviewer.run_export", "export"), ("classify.run_bakeoff", "bakeoff"),
        ("classify.sweep", "celery"), ("reviewer.sweep_exports", "celery"),
    ])
    def test_each_kind_of_work_has_its_queue(self, task, queue):
        assert app.amqp.router.route({}, task)["queue"].name == queue
