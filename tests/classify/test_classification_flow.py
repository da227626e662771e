"""Upload → queue → classify → route, in-process (eager Celery), on the deterministic backend."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from classify.images import ImageRejected
from classify.models import Item, Prediction, Project
from classify.services import classification, intake, lifecycle
from tests.base import make_colour_project, noisy_image, solid_image
from tests.colour_backend import ColourBackend

pytestmark = pytest.mark.django_db


def ingest(project, data: bytes, django_capture_on_commit_callbacks, name: str = "photo.png") -> Item:
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=data, filename=name)
    item.refresh_from_db()
    return item


class IngestTests:
    def test_a_confident_upload_is_auto_accepted_with_its_prediction(self, django_capture_on_commit_callbacks):
        project = make_colour_project()
        item = ingest(project, solid_image((255, 0, 0)), django_capture_on_commit_callbacks)
        assert item.status == Item.Status.AUTO_ACCEPTED
        assert item.label.name == "red"
        assert item.attempts == 1
        prediction = item.predictions.get()
        assert set(prediction.scores) == {"red", "green", "blue", "unknown"}
        assert sum(prediction.scores.values()) == pytest.approx(1.0, abs=1e-4)
        assert prediction.top_label == "red" and prediction.decision == "auto_accepted"
        assert prediction.thresholds["red"] == {"threshold": 0.8, "margin": 0.0}
        assert prediction.backend == "colour" and prediction.model_version == "colour-1"

    def test_an_unsure_upload_needs_review(self, django_capture_on_commit_callbacks):
        project = make_colour_project()
        item = ingest(project, solid_image((150, 40, 40)), django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW
        assert item.label is None
        assert "below its accept threshold" in item.status_reason

    def test_the_thresholds_in_force_are_recorded_even_after_they_change(self, django_capture_on_commit_callbacks):
        project = make_colour_project(threshold=0.5)
        item = ingest(project, solid_image((150, 40, 40)), django_capture_on_commit_callbacks)
        project.labels.filter(name="red").update(accept_threshold=0.99)
        prediction = item.predictions.get()
        assert item.status == Item.Status.AUTO_ACCEPTED
        assert prediction.thresholds["red"]["threshold"] == 0.5

    def test_the_stored_image_is_a_reencoded_jpeg_under_a_generated_key(self, django_capture_on_commit_callbacks):
        project = make_colour_project()
        item = ingest(project, solid_image((0, 0, 255)), django_capture_on_commit_callbacks, name="../../etc/passwd.png")
        assert item.image.name.startswith(f"items/{project.pk}/") and item.image.name.endswith(".jpg")
        assert "passwd" not in item.image.name
        assert item.original_filename == "passwd.png"
        with item.image.open("rb") as handle:
            assert handle.read(3) == b"\xff\xd8\xff"

    def test_a_file_that_is_not_an_image_is_refused_and_nothing_is_stored(self):
        project = make_colour_project()
        with pytest.raises(ImageRejected, match="not an image"):
            intake.ingest_upload(project=project, data=b"<html><script>alert(1)</script>", filename="x.jpg")
        assert not Item.objects.exists()

    def test_an_identical_image_reuses_the_scores_without_a_backend_call(self, django_capture_on_commit_callbacks):
        project = make_colour_project()
        first = ingest(project, solid_image((0, 255, 0)), django_capture_on_commit_callbacks)
        with mock.patch.object(ColourBackend, "classify", autospec=True, side_effect=ColourBackend.classify) as spy:
            second = ingest(project, solid_image((0, 255, 0), fmt="BMP"), django_capture_on_commit_callbacks)
            third = ingest(project, noisy_image((0, 255, 0), seed=1), django_capture_on_commit_callbacks)
        assert spy.call_count == 1  # only the third, whose pixels differ
        reused = second.predictions.get()
        assert reused.reused_from == first.predictions.get()
        assert reused.scores == first.predictions.get().scores
        assert second.status == first.status == Item.Status.AUTO_ACCEPTED
        assert third.predictions.get().reused_from is None


class BackendFailureTests:
    def test_a_retryable_error_is_retried_then_the_item_goes_to_review(self, settings, django_capture_on_commit_callbacks):
        settings.LOUPE_BACKEND_RETRIES = 2
        project = make_colour_project(config={"fail": "retryable"})
        with mock.patch.object(ColourBackend, "classify", autospec=True, side_effect=ColourBackend.classify) as spy:
            item = ingest(project, solid_image((255, 0, 0)), django_capture_on_commit_callbacks)
        assert spy.call_count == 3  # the first try and two retries
        assert item.status == Item.Status.NEEDS_REVIEW
        assert item.status_reason == "Backend unavailable: colour backend: throttled (test)"
        assert item.attempts == 3
        assert not Prediction.objects.exists()

    def test_a_retryable_error_that_clears_ends_normally(self, settings, django_capture_on_commit_callbacks):
        from classify.backends import BackendError

        real = ColourBackend.classify
        calls = []

        def flaky(self, image):
            calls.append(1)
            if len(calls) == 1:
                raise BackendError("throttled", retryable=True)
            return real(self, image)

        project = make_colour_project()
        with mock.patch.object(ColourBackend, "classify", flaky):
            item = ingest(project, solid_image((255, 0, 0)), django_capture_on_commit_callbacks)
        assert len(calls) == 2
        assert item.status == Item.Status.AUTO_ACCEPTED

    def test_a_non_retryable_error_goes_to_review_at_once(self, django_capture_on_commit_callbacks):
        project = make_colour_project(config={"fail": "fatal"})
        item = ingest(project, solid_image((255, 0, 0)), django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW
        assert item.status_reason == "Backend error: colour backend: access denied (test)"
        assert item.attempts == 1

    def test_an_unexpected_error_is_retried_until_the_attempt_limit_then_fails(self, settings, django_capture_on_commit_callbacks):
        settings.LOUPE_MAX_ATTEMPTS = 3
        project = make_colour_project()
        with mock.patch.object(ColourBackend, "classify", side_effect=RuntimeError("segfault-ish")):
            item = ingest(project, solid_image((255, 0, 0)), django_capture_on_commit_callbacks)
        assert item.status == Item.Status.FAILED
        assert item.attempts == 3
        assert item.status_reason == "Gave up after 3 attempts. Last problem: an internal error (RuntimeError)."
        assert item.error_detail == "RuntimeError: segfault-ish"  # for project admins and the log

    def test_an_unknown_backend_name_sends_items_to_review_with_the_reason(self, django_capture_on_commit_callbacks):
        project = make_colour_project()
        Project.objects.filter(pk=project.pk).update(backend="nonesuch")
        project.refresh_from_db()
        item = ingest(project, solid_image((255, 0, 0)), django_capture_on_commit_callbacks)
        assert item.status == Item.Status.NEEDS_REVIEW
        assert "no backend called 'nonesuch'" in item.status_reason


class ClaimTests:
    def test_an_item_is_claimed_once(self):
        project = make_colour_project()
        item = Item.objects.create(project=project, sha256="a" * 64, width=1, height=1, image="x.jpg",
                                   status=Item.Status.QUEUED)
        assert lifecycle.start_classification(item_id=item.pk) is not None
        assert lifecycle.start_classification(item_id=item.pk) is None

    def test_a_poison_item_fails_once_its_attempts_are_used(self, settings):
        settings.LOUPE_MAX_ATTEMPTS = 2
        project = make_colour_project()
        item = Item.objects.create(project=project, sha256="a" * 64, width=1, height=1, image="x.jpg",
                                   status=Item.Status.QUEUED, attempts=2)
        assert lifecycle.start_classification(item_id=item.pk) is None
        item.refresh_from_db()
        assert item.status == Item.Status.FAILED
        assert item.status_reason.startswith("Gave up after 2 attempts")

    def test_a_stale_claim_can_be_taken_over_and_the_old_worker_cannot_finish(self, settings):
        project = make_colour_project()
        item = Item.objects.create(project=project, sha256="a" * 64, width=1, height=1, image="x.jpg",
                                   status=Item.Status.QUEUED)
        old = lifecycle.start_classification(item_id=item.pk)
        Item.objects.filter(pk=item.pk).update(claimed_at=timezone.now() - timedelta(hours=1))
        new = lifecycle.start_classification(item_id=item.pk)
        assert new is not None and new.claim != old.claim
        assert lifecycle.mark_failed(old, reason="late") is False
        assert lifecycle.mark_failed(new, reason="now") is True


class BrokerDownTests:
    def test_an_upload_survives_a_broker_outage_and_the_sweeper_queues_it_later(self, settings, django_capture_on_commit_callbacks):
        project = make_colour_project()
        with mock.patch("classify.tasks.classify_item.delay", side_effect=ConnectionRefusedError("no broker")):
            item = ingest(project, solid_image((255, 0, 0)), django_capture_on_commit_callbacks)
        assert item.status == Item.Status.RECEIVED
        assert "broker unreachable" in item.status_reason
        settings.LOUPE_STUCK_RECEIVED_AFTER = 0
        result = lifecycle.sweep_stuck_items()
        item.refresh_from_db()
        assert result.requeued == 1
        assert item.status == Item.Status.AUTO_ACCEPTED


class SweeperTests:
    @pytest.fixture(autouse=True)
    def _empty_broker(self):
        """As if the broker had lost every message (the sweeper re-publishes only then)."""
        with mock.patch.object(lifecycle, "broker_backlog", return_value=0):
            yield

    def make(self, project, status, **fields):
        return Item.objects.create(project=project, sha256="b" * 64, width=1, height=1, image="x.jpg",
                                   status=status, **fields)

    def test_it_requeues_stuck_items_and_leaves_fresh_ones(self, settings):
        project = make_colour_project()
        old = timezone.now() - timedelta(hours=2)
        stuck_queued = self.make(project, Item.Status.QUEUED, enqueued_at=old)
        self.make(project, Item.Status.QUEUED, enqueued_at=timezone.now())
        stuck_classifying = self.make(project, Item.Status.CLASSIFYING, claimed_at=old, attempts=1)
        with mock.patch("classify.tasks.classify_item.delay") as delay:
            result = lifecycle.sweep_stuck_items()
        assert sorted(call.args[0] for call in delay.call_args_list) == sorted([stuck_queued.pk, stuck_classifying.pk])
        assert result.requeued == 2
        stuck_classifying.refresh_from_db()
        assert stuck_classifying.status == Item.Status.QUEUED
        assert "worker stopped mid-task" in stuck_classifying.status_reason

    def test_it_fails_a_stuck_item_that_used_its_attempts(self, settings):
        settings.LOUPE_MAX_ATTEMPTS = 3
        project = make_colour_project()
        item = self.make(project, Item.Status.CLASSIFYING, claimed_at=timezone.now() - timedelta(hours=2), attempts=3)
        with mock.patch("classify.tasks.classify_item.delay") as delay:
            result = lifecycle.sweep_stuck_items()
        item.refresh_from_db()
        assert result.failed == 1 and not delay.called
        assert item.status == Item.Status.FAILED


class ReclassifyTests:
    def test_failed_items_can_be_sent_again_but_reviewed_ones_keep_their_label(self, django_capture_on_commit_callbacks):
        project = make_colour_project()
        failed = Item.objects.create(project=project, sha256="c" * 64, width=1, height=1, status=Item.Status.FAILED)
        reviewed = Item.objects.create(project=project, sha256="d" * 64, width=1, height=1,
                                       status=Item.Status.REVIEWED, label=project.labels.get(name="red"))
        with mock.patch("classify.tasks.classify_item.delay") as delay, django_capture_on_commit_callbacks(execute=True):
            assert classification.reclassify(items=[failed, reviewed]) == 1
        delay.assert_called_once_with(failed.pk)
        reviewed.refresh_from_db()
        assert reviewed.status == Item.Status.REVIEWED and reviewed.label.name == "red"
