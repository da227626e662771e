"""Idle shutdown of Custom Labels models Loupe started, and restart on demand: the exact API
sequence against botocore's Stubber on the real client, with the clock set by the test."""

from __future__ import annotations

import pytest
from botocore.stub import ANY
from django.urls import reverse

from classify import tasks
from classify.models import HostedModel, Item, ModelVersion, TrainingRun
from classify.retrain import runs
from classify.services import hosting, intake
from tests.base import photo_bytes
from tests.classify.conftest import T0
from tests.classify.test_backend_custom_labels import ARN, make_vehicles_project
from tests.classify.test_retrain import admin_client

pytestmark = pytest.mark.django_db
PROJECT_ARN = ARN.split("/version/")[0]
VERSION = ARN.split("/")[3]


def running_model(project, **fields) -> HostedModel:
    values = {"state": HostedModel.State.RUNNING, "started_at": T0, "last_used_at": T0, "region": "us-east-1"}
    return HostedModel.objects.create(project=project, project_version_arn=ARN, **{**values, **fields})


def described(rekognition_stub, status: str) -> None:
    rekognition_stub.add_response("describe_project_versions", {"ProjectVersionDescriptions": [
        {"ProjectVersionArn": ARN, "CreationTimestamp": T0, "Status": status}]},
        {"ProjectArn": PROJECT_ARN, "VersionNames": [VERSION]})


def upload(project, django_capture_on_commit_callbacks) -> Item:
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=photo_bytes("rocket"), filename="rocket.jpg")
    item.refresh_from_db()
    return item


class IdleShutdownTests:
    def test_an_idle_model_is_stopped_then_started_again_when_work_arrives(
        self, rekognition_stub, clock, later, settings, django_capture_on_commit_callbacks
    ):
        settings.LOUPE_MODEL_IDLE_MINUTES, settings.LOUPE_MODEL_START_MINUTES = 60, 10
        project = make_vehicles_project()
        model = running_model(project)

        clock.advance(minutes=59)
        tasks.sweep()  # not idle long enough: no call (the Stubber refuses any unexpected call)
        clock.advance(minutes=2)
        rekognition_stub.add_response("stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": ARN})
        tasks.sweep()
        model.refresh_from_db()
        assert model.state == HostedModel.State.STOPPED
        assert model.billed_seconds == 61 * 60 and model.status_message == "Stopped after 60 minutes without work."

        clock.advance(hours=5)  # an upload arrives for the stopped model
        rekognition_stub.add_response("start_project_version", {"Status": "STARTING"},
                          {"ProjectVersionArn": ARN, "MinInferenceUnits": 1})
        item = upload(project, django_capture_on_commit_callbacks)
        assert item.status == Item.Status.QUEUED and item.attempts == 0
        assert item.status_reason == "Waiting: starting the model, about 10 minutes."
        assert later == [(item.pk, 30.0)]

        clock.advance(seconds=30)
        described(rekognition_stub, "STARTING")
        tasks.classify_item.apply(args=(item.pk,))
        item.refresh_from_db()
        assert item.status == Item.Status.QUEUED and item.status_reason.endswith("about 10 minutes.")
        assert later[-1] == (item.pk, 60.0)  # the next check backs off

        clock.advance(seconds=20)  # early (a duplicate message): no call, wait for the check that is due
        tasks.classify_item.apply(args=(item.pk,))
        assert later[-1] == (item.pk, 40.0)

        clock.advance(minutes=7)
        described(rekognition_stub, "RUNNING")
        rekognition_stub.add_response("detect_custom_labels", {"CustomLabels": [{"Name": "rocket", "Confidence": 97.0}]},
                          {"ProjectVersionArn": ARN, "Image": {"Bytes": ANY}, "MinConfidence": 0})
        tasks.classify_item.apply(args=(item.pk,))
        item.refresh_from_db()
        assert item.status == Item.Status.AUTO_ACCEPTED and item.label.name == "rocket" and item.attempts == 1
        model.refresh_from_db()
        assert model.state == HostedModel.State.RUNNING and model.last_used_at == clock.now

        page = admin_client(project)[0].get(reverse("classify:models", args=[project.slug])).content.decode()
        assert "Running models (Custom Labels)" in page and VERSION in page
        # 61 minutes before the stop, and 8 minutes since the restart.
        assert "<td>1.15</td>" in page and "Running" in page

    def test_queued_work_keeps_an_idle_model_running(self, rekognition_stub, clock, settings):
        settings.LOUPE_MODEL_IDLE_MINUTES = 60
        project = make_vehicles_project()
        model = running_model(project)
        item = Item.objects.create(project=project, sha256="0" * 64, status=Item.Status.QUEUED, width=1, height=1)
        clock.advance(hours=3)
        assert hosting.stop_idle_models() == 0  # no StopProjectVersion: the Stubber has none queued
        Item.objects.filter(pk=item.pk).update(status=Item.Status.FAILED)
        run = TrainingRun.objects.create(project=project, kind=TrainingRun.Kind.CUSTOM_LABELS, step="compare",
                                         state=TrainingRun.State.RUNNING, aws={"project_version_arn": ARN})
        assert hosting.stop_idle_models() == 0  # an open training run compares with it
        model.refresh_from_db()
        assert model.state == HostedModel.State.RUNNING
        TrainingRun.objects.filter(pk=run.pk).update(state=TrainingRun.State.FAILED)
        rekognition_stub.add_response("stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": ARN})
        assert hosting.stop_idle_models() == 1

    def test_idle_shutdown_off_never_stops_and_an_untracked_model_is_never_touched(self, rekognition_stub, clock, settings):
        project = make_vehicles_project()
        running_model(project)
        clock.advance(days=2)
        settings.LOUPE_MODEL_IDLE_MINUTES = 0
        assert hosting.stop_idle_models() == 0
        hosting.ensure_running(project, ARN.replace("/1763719200000", "/1"))  # not started by Loupe: no call

    def test_a_model_that_fails_to_start_sends_the_item_to_review_with_rekognitions_reason(
        self, rekognition_stub, clock, later, django_capture_on_commit_callbacks
    ):
        project = make_vehicles_project()
        running_model(project, state=HostedModel.State.STOPPED, started_at=None)
        rekognition_stub.add_response("start_project_version", {"Status": "STARTING"},
                          {"ProjectVersionArn": ARN, "MinInferenceUnits": 1})
        item = upload(project, django_capture_on_commit_callbacks)
        clock.advance(seconds=30)
        rekognition_stub.add_response("describe_project_versions", {"ProjectVersionDescriptions": [
            {"ProjectVersionArn": ARN, "CreationTimestamp": T0, "Status": "FAILED",
             "StatusMessage": "The model could not be deployed."}]},
            {"ProjectArn": PROJECT_ARN, "VersionNames": [VERSION]})
        tasks.classify_item.apply(args=(item.pk,))
        item.refresh_from_db()
        assert item.status == Item.Status.NEEDS_REVIEW
        assert item.status_reason == ("Backend error: The Custom Labels model did not start (FAILED): "
                                      "The model could not be deployed.")
        assert HostedModel.objects.get().state == HostedModel.State.FAILED


class RejectedCandidateTests:
    def awaiting(self, project) -> TrainingRun:
        candidate = ModelVersion.objects.create(project=project, backend="custom_labels", version=VERSION,
                                                config={"project_version_arn": ARN}, f1=0.9)
        hosting.track_started(project, ARN, region="us-east-1")
        return TrainingRun.objects.create(
            project=project, kind=TrainingRun.Kind.CUSTOM_LABELS, state=TrainingRun.State.AWAITING_DECISION,
            candidate=candidate, start_model=True, aws={"project_version_arn": ARN}, step="compare")

    def test_a_rejected_candidate_is_stopped_at_once(self, rekognition_stub, clock):
        project = make_vehicles_project()
        run = self.awaiting(project)
        clock.advance(minutes=90)
        rekognition_stub.add_response("stop_project_version", {"Status": "STOPPING"}, {"ProjectVersionArn": ARN})
        client, admin = admin_client(project)
        client.post(reverse("classify:decide_run", args=[project.slug, run.pk]), {"decision": "reject"})
        run.refresh_from_db()
        assert run.state == TrainingRun.State.REJECTED
        assert run.steps[-1]["detail"].endswith("The model version was stopped (StopProjectVersion): it bills no more.")
        model = HostedModel.objects.get()
        assert model.state == HostedModel.State.STOPPED and model.billed_seconds == 90 * 60

    def test_a_refused_stop_leaves_the_rejection_and_says_to_stop_it_by_hand(self, rekognition_stub, clock):
        project = make_vehicles_project()
        run = self.awaiting(project)
        rekognition_stub.add_client_error("stop_project_version", "AccessDeniedException", "not authorized", 403)
        runs.decide(run=run, approve=False, user=None)
        run.refresh_from_db()
        assert run.state == TrainingRun.State.REJECTED
        assert "Could not stop: rekognition AccessDeniedException" in run.steps[-1]["detail"]
        assert run.steps[-1]["detail"].endswith("Stop it in the Rekognition console: it bills while it runs.")
        assert HostedModel.objects.get().state == HostedModel.State.STARTING
