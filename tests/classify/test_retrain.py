"""Retraining: the split and metrics, the local retrain, the Custom Labels workflow (botocore's
Stubber for Rekognition, every request validated against the service model; moto for S3), the
comparison, the admin page and its decision, and a small learning curve on real digits."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from botocore.stub import ANY, Stubber
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from classify.models import CloudResource, Event, Item, Label, Membership, ModelVersion, Prediction, Project, TrainingRun
from classify.retrain import runs
from classify.retrain.evaluation import classification_metrics, lowest_threshold, stratified_split
from classify.services import projects, scoring
from tests.base import make_user
from tests.learning_curve import learning_curve

REGION = "us-east-1"
BUCKET = "loupe-training"
PROJECT_ARN = "arn:aws:rekognition:us-east-1:123456789012:project/loupe-digits/1763719200000"
TRAIN_ARN = f"{PROJECT_ARN.rsplit('/', 1)[0]}/dataset/train/1763719300000"
TEST_ARN = f"{PROJECT_ARN.rsplit('/', 1)[0]}/dataset/test/1763719300001"
SUMMARY_KEY = "digits/output/EvaluationResultSummary-digits.json"
WHEN = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


# --- Plain numbers -------------------------------------------------------------------------------


class SplitTests:
    @given(st.lists(st.sampled_from("abc"), min_size=1, max_size=60), st.integers(0, 5))
    @hsettings(max_examples=60, deadline=None)
    def test_the_split_is_stratified_disjoint_and_independent_of_input_order(self, names, seed):
        keys = [f"img-{i}" for i in range(len(names))]
        train, test = stratified_split(keys, names, seed=seed)
        assert sorted(train + test) == list(range(len(names))) and not set(train) & set(test)
        for name in set(names):
            n = names.count(name)
            in_test = sum(names[i] == name for i in test)
            assert in_test == (0 if n < 2 else max(1, round(0.2 * n)))
        order = list(reversed(range(len(names))))
        train2, test2 = stratified_split([keys[i] for i in order], [names[i] for i in order], seed=seed)
        assert sorted(keys[order[i]] for i in test2) == sorted(keys[i] for i in test)

    def test_the_lowest_threshold_meeting_the_target_precision(self):
        scores = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6]
        correct = [True, True, True, True, False, True]
        assert lowest_threshold(scores, correct, target_precision=1.0) == 0.8
        assert lowest_threshold(scores, correct, target_precision=0.8) == 0.6
        assert lowest_threshold([0.9], [False], target_precision=0.5) is None

    def test_metrics_give_accuracy_macro_f1_and_per_class_rows(self):
        metrics = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"], [0.9, 0.6, 0.8, 0.7],
                                         target_precision=0.9)
        assert metrics["accuracy"] == 0.75
        assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
                                             "support": 2, "threshold": 0.9}
        assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
        assert metrics["thresholds"]["b"] == 0.7  # b's 0.6 guess was wrong; 0.7 and above are right
        assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


# --- Real labelled images: scikit-learn's digits, upscaled ----------------------------------------


def digit_images(classes: tuple[int, ...], per_class: int, offset: int = 0) -> list[tuple[int, bytes]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = []
    for digit in classes:
        indices = np.flatnonzero(digits.target == digit)[offset : offset + per_class]
        for index in indices:
            pixels = (digits.images[index] * 255 / 16).astype(np.uint8)
            image = Image.fromarray(pixels).resize((64, 64), Image.Resampling.BICUBIC).convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=95)
            out.append((digit, buffer.getvalue()))
    return out


NAMES = {0: "zero", 1: "one", 6: "six"}


def make_digits_project(**fields) -> Project:
    project = projects.create_project(slug="digits", labels=list(NAMES.values()), backend="local")
    Project.objects.filter(pk=project.pk).update(**{"compare_sample": 6, "min_f1": 0.5, "learning_mode": "approval",
                                                    **fields})
    project.refresh_from_db()
    return project


def add_item(project: Project, data: bytes, *, label: str | None, n: int, scores: dict | None = None) -> Item:
    """A classified item with a stored prediction; reviewed (human label) when ``label`` is given."""
    import hashlib

    names = list(project.labels.values_list("name", flat=True))
    scores = scores or {name: round(1 / len(names), 4) for name in names}
    top = max(scores, key=scores.get)
    item = Item(project=project, sha256=hashlib.sha256(data).hexdigest(), width=64, height=64,
                status=Item.Status.REVIEWED if label else Item.Status.NEEDS_REVIEW,
                label=project.labels.get(name=label) if label else None, top_label=top, top_score=scores[top],
                margin=0.0)
    item.image.save(f"d{n}.jpg", ContentFile(data), save=False)
    item.save()
    Prediction.objects.create(item=item, backend=project.backend, model_version="test", scores=scores,
                              top_label=top, top_score=scores[top], margin=0.0, latency_ms=1.0, thresholds={},
                              decision="needs_review", reason="test")
    return item


def label_digits(project: Project, per_class: int = 10, *, wrong: int = 0) -> None:
    """``per_class`` human-labelled items per digit class; the first ``wrong`` of each class
    carry the next class's name (a careless reviewer)."""
    names = list(NAMES.values())
    for n, (digit, data) in enumerate(digit_images(tuple(NAMES), per_class)):
        name = NAMES[digit]
        rank = n % per_class
        add_item(project, data, label=names[(names.index(name) + 1) % len(names)] if rank < wrong else name, n=n)


def admin_client(project: Project):
    admin = make_user("ada")
    Membership.objects.create(project=project, user=admin, role=Membership.Role.ADMIN)
    client = Client()
    client.force_login(admin)
    return client, admin


@pytest.mark.django_db
class LocalRetrainTests:
    def test_it_promotes_a_better_head_after_comparison_and_an_admins_approval(self, django_capture_on_commit_callbacks):
        project = make_digits_project()
        label_digits(project)
        old = ModelVersion.objects.create(project=project, backend="local", version="head-1", artifact=b"x",
                                          held_out_accuracy=0.55, is_active=True)
        ModelVersion.objects.filter(pk=old.pk).update(created_at=WHEN)  # it learnt none of today's labels
        with django_capture_on_commit_callbacks(execute=True):
            run = runs.start_local_training(project=project)
        run.refresh_from_db()
        assert run.state == TrainingRun.State.AWAITING_DECISION, run.reason
        assert [entry["step"] for entry in run.steps] == ["fit", "gate", "compare", "promote"]
        candidate = run.candidate
        assert candidate.version == "head-2" and not candidate.is_active
        assert candidate.n_train == 30 and candidate.n_test == 30  # every label scored out of fold
        assert run.metrics["accuracy"] > run.metrics["active"]["accuracy"] == 0.0
        assert set(run.metrics["per_class"]) == set(NAMES.values())
        assert {"precision", "recall", "f1", "threshold"} <= set(run.metrics["per_class"]["zero"])
        comparison = run.comparison
        assert comparison["sample"] == 6 and comparison["errors"] == 0
        assert sum(row["after"] for row in comparison["counts"]) == 6
        assert comparison["auto_accept_before"] == 0.0  # uniform old scores never clear a threshold
        (waiting,) = Event.objects.filter(type=Event.Type.RUN_AWAITING_DECISION)  # for webhooks
        assert waiting.data["training_run"]["id"] == run.pk and waiting.data["training_run"]["candidate_version"] == "head-2"

        client, admin = admin_client(project)
        page = client.get(reverse("classify:models", args=[project.slug]))
        assert page.status_code == 200 and b"Re-classify recent items with the candidate" in page.content
        assert b"Approve: activate head-2" in page.content
        response = client.post(reverse("classify:decide_run", args=[project.slug, run.pk]),
                               {"decision": "approve", "apply_thresholds": "1"})
        assert response.status_code == 302
        run.refresh_from_db()
        assert run.state == TrainingRun.State.APPROVED and run.decided_by == admin and run.decided_at
        (promoted,) = Event.objects.filter(type=Event.Type.RUN_PROMOTED)
        assert promoted.data["training_run"]["decided_by"] == "ada" and promoted.data["training_run"]["state"] == "approved"
        assert ModelVersion.objects.get(is_active=True) == candidate
        candidate.refresh_from_db()
        assert candidate.provenance.startswith("head-2, approved: coverage 0% → ") and candidate.provenance.endswith(" by ada")
        assert project.labels.get(name="zero").calibration["model_version"].endswith("/head:head-2")
        old.refresh_from_db()
        assert not old.is_active
        # The project now scores with the approved head.
        labels = list(project.labels.all())
        assert scoring.build_backend(project, labels).model_version.endswith("/head:head-2")

    def test_too_few_labels_fail_the_run_with_the_reason(self, django_capture_on_commit_callbacks):
        project = make_digits_project()
        for n, (digit, data) in enumerate(digit_images((0, 1), 1)):
            add_item(project, data, label=NAMES[digit], n=n)
        with django_capture_on_commit_callbacks(execute=True):
            run = runs.start_local_training(project=project)
        run.refresh_from_db()
        assert run.state == TrainingRun.State.FAILED
        assert run.reason == ("Not enough labelled pictures to train and test a head: it needs at least two classes, "
                              "and 2 or more labelled items or exemplars in every class that has any. So far: "
                              + ", ".join(f"{label.name} {int(label.name in (NAMES[0], NAMES[1]))}"
                                          for label in project.labels.all())
                              + ". Review more items or add exemplars, then retrain.")
        assert "{" not in run.reason  # words, not a Python dict
        admin = make_user("ada", is_staff=True)
        Membership.objects.create(project=project, user=admin, role=Membership.Role.ADMIN)
        client = Client()
        client.force_login(admin)
        page = client.get(reverse("classify:models", args=[project.slug])).content.decode()
        assert f'<div class="alert alert-bad" role="alert"><strong>Training failed:</strong> {run.reason}</div>' in page
        step_time = run.steps[-1]["at"]
        assert step_time not in page  # not the raw ISO timestamp...
        assert datetime.fromisoformat(step_time).strftime("%-d %b %Y, %H:%M:%S UTC") in page  # ...a readable one


# --- Rekognition Custom Labels --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _s3_roots(settings):
    settings.LOUPE_S3_ROOTS = [f"s3://{BUCKET}"]  # project digits may use s3://loupe-training/digits/


@pytest.fixture
def s3(moto_s3):
    moto_s3.create_bucket(Bucket=BUCKET)
    for name in ("train", "test"):  # as an export wrote them: images under the project's prefix
        line = {"source-ref": f"s3://{BUCKET}/digits/images/{name}-1.jpg", "class": 0}
        moto_s3.put_object(Bucket=BUCKET, Key=f"digits/{name}.manifest", Body=json.dumps(line).encode())
    return moto_s3


def summary_file(f1: float) -> dict:
    """The evaluation summary Custom Labels writes (the documented shape, values invented)."""
    def label(name, f1_, precision, recall, threshold, n):
        return {"Label": name, "Metrics": {"F1Score": f1_, "Precision": precision, "Recall": recall,
                                           "Threshold": threshold}, "NumberOfTestingImages": n}

    return {
        "Version": 1,
        "AggregatedEvaluationResults": {"ConfusionMatrix": [], "F1Score": f1, "Precision": f1, "Recall": f1},
        "EvaluationDetails": {"EvaluationEndTimestamp": "2026-11-21T12:00:00.000000", "Labels": ["zero", "one", "six"],
                              "NumberOfTestingImages": 30, "NumberOfTrainingImages": 120,
                              "ProjectVersionArn": "arn"},
        "LabelEvaluationResults": [label("zero", 0.97, 0.98, 0.96, 0.61, 10), label("one", 0.9, 0.92, 0.88, 0.55, 10),
                                   label("six", 0.93, 0.9, 0.96, 0.48, 10)],
    }


def start_run(project, django_capture_on_commit_callbacks, **options) -> TrainingRun:
    with django_capture_on_commit_callbacks(execute=True):
        run = runs.start_custom_labels_training(
            project=project, train_manifest=f"s3://{BUCKET}/digits/train.manifest",
            test_manifest=f"s3://{BUCKET}/digits/test.manifest", output_location=f"s3://{BUCKET}/digits/output",
            region=REGION, **options)
    run.refresh_from_db()
    return run


class Workflow:
    """Queues the Stubber responses of the workflow, step by step, each request checked."""

    def __init__(self, stub: Stubber, project: Project) -> None:
        self.stub, self.project = stub, project
        self.version = None

    def version_arn(self) -> str:
        return f"{PROJECT_ARN.rsplit('/', 1)[0]}/version/{self.version}/1763720000000"

    def project_and_datasets(self, *, existing: bool = False) -> Workflow:
        found = [{"ProjectArn": PROJECT_ARN, "CreationTimestamp": WHEN, "Status": "CREATED"}] if existing else []
        if existing:  # created by Loupe for this project in an earlier run
            CloudResource.objects.create(project=self.project, kind=CloudResource.Kind.REKOGNITION_PROJECT,
                                         region=REGION, name="loupe-digits", arn=PROJECT_ARN)
        self.stub.add_response("describe_projects", {"ProjectDescriptions": found},
                               {"ProjectNames": ["loupe-digits"]})
        if not existing:
            self.stub.add_response("create_project", {"ProjectArn": PROJECT_ARN},
                                   {"ProjectName": "loupe-digits", "Feature": "CUSTOM_LABELS"})
        for kind, arn in (("TRAIN", TRAIN_ARN), ("TEST", TEST_ARN)):
            self.stub.add_response("create_dataset", {"DatasetArn": arn}, {
                "ProjectArn": PROJECT_ARN, "DatasetType": kind,
                "DatasetSource": {"GroundTruthManifest": {"S3Object": {
                    "Bucket": BUCKET, "Name": f"digits/{kind.lower()}.manifest"}}}})
        return self

    def dataset(self, arn: str, status: str, message: str = "") -> Workflow:
        description = {"CreationTimestamp": WHEN, "Status": status,
                       "DatasetStats": {"LabeledEntries": 120, "TotalEntries": 120, "TotalLabels": 3, "ErrorEntries": 0}}
        if message:
            description.update(StatusMessage=message, StatusMessageCode="CLIENT_ERROR")
        self.stub.add_response("describe_dataset", {"DatasetDescription": description}, {"DatasetArn": arn})
        return self

    def training(self, version: str) -> Workflow:
        self.version = version
        self.stub.add_response("create_project_version", {"ProjectVersionArn": self.version_arn()}, {
            "ProjectArn": PROJECT_ARN, "VersionName": version,
            "OutputConfig": {"S3Bucket": BUCKET, "S3KeyPrefix": "digits/output"}})
        return self

    def described(self, status: str, *, f1: float | None = None, message: str = "") -> Workflow:
        description = {"ProjectVersionArn": self.version_arn(), "CreationTimestamp": WHEN, "Status": status}
        if message:
            description["StatusMessage"] = message
        if f1 is not None:
            description["EvaluationResult"] = {"F1Score": f1, "Summary": {"S3Object": {"Bucket": BUCKET,
                                                                                       "Name": SUMMARY_KEY}}}
        self.stub.add_response("describe_project_versions", {"ProjectVersionDescriptions": [description]},
                               {"ProjectArn": PROJECT_ARN, "VersionNames": [self.version]})
        return self

    def start(self) -> Workflow:
        self.stub.add_response("start_project_version", {"Status": "STARTING"},
                               {"ProjectVersionArn": self.version_arn(), "MinInferenceUnits": 1})
        return self

    def detect(self, **confidences: float) -> Workflow:
        self.stub.add_response(
            "detect_custom_labels",
            {"CustomLabels": [{"Name": name, "Confidence": value} for name, value in confidences.items()]},
            {"ProjectVersionArn": self.version_arn(), "Image": {"Bytes": ANY}, "MinConfidence": 0})
        return self


def frozen_version(monkeypatch) -> str:
    """The version name the run will choose (it is stamped with the time)."""
    from django.utils import timezone as dj_timezone

    monkeypatch.setattr(dj_timezone, "now", lambda: WHEN)
    return "digits.2026-11-21T10.00.00"


@pytest.mark.django_db
class CustomLabelsWorkflowTests:
    def make_project(self) -> Project:
        project = make_digits_project(compare_sample=3, min_f1=0.8, max_share_shift=20.0)
        Label.objects.filter(project=project).update(accept_threshold=0.8, audit_rate=0)
        zero_heavy = {"zero": 0.9, "one": 0.05, "six": 0.05, "unknown": 0.0}
        for n, (_, data) in enumerate(digit_images((0,), 3)):
            add_item(project, data, label=None, n=n, scores=zero_heavy)
        return project

    def test_the_whole_workflow_trains_measures_compares_and_switches_the_project_on_approval(
        self, rekognition_stub, s3, monkeypatch, django_capture_on_commit_callbacks
    ):
        project = self.make_project()
        s3.put_object(Bucket=BUCKET, Key=SUMMARY_KEY, Body=json.dumps(summary_file(0.93)).encode())
        version = frozen_version(monkeypatch)
        flow = Workflow(rekognition_stub, project).project_and_datasets()
        flow.dataset(TRAIN_ARN, "CREATE_IN_PROGRESS").dataset(TEST_ARN, "CREATE_IN_PROGRESS")
        flow.dataset(TRAIN_ARN, "CREATE_COMPLETE").dataset(TEST_ARN, "CREATE_COMPLETE")
        flow.training(version).described("TRAINING_IN_PROGRESS").described("TRAINING_COMPLETED", f1=0.93)
        flow.start().described("STARTING").described("RUNNING")
        flow.detect(zero=95.0, one=3.0).detect(one=91.0, zero=5.0).detect(six=60.0, zero=30.0)

        run = start_run(project, django_capture_on_commit_callbacks)

        assert run.state == TrainingRun.State.AWAITING_DECISION, run.reason
        assert [(entry["step"], entry["status"]) for entry in run.steps] == [
            ("project", "done"), ("datasets", "done"), ("wait_datasets", "done"), ("train", "done"),
            ("wait_training", "done"), ("evaluate", "done"), ("gate", "done"), ("start_model", "done"),
            ("wait_model", "done"), ("compare", "done")]
        assert run.metrics["f1"] == 0.93
        assert run.metrics["per_class"]["one"] == {"precision": 0.92, "recall": 0.88, "f1": 0.9, "threshold": 0.55,
                                                   "support": 10}
        candidate = run.candidate
        assert candidate.backend == "custom_labels" and candidate.version == version and not candidate.is_active
        assert candidate.config == {"project_version_arn": flow.version_arn()} and candidate.n_test == 30
        comparison = run.comparison
        assert {row["label"]: (row["before"], row["after"]) for row in comparison["counts"]} == {
            "zero": (3, 1), "one": (0, 1), "six": (0, 1), "unknown": (0, 0)}
        assert comparison["confusion"][0] == {"before": "zero", "cells": [1, 1, 1, 0]}
        assert comparison["auto_accept_before"] == 1.0 and comparison["auto_accept_after"] == pytest.approx(2 / 3)
        assert len(comparison["warnings"]) == 3 and comparison["warnings"][0].startswith("zero: 100% of the sample before")
        project.refresh_from_db()
        assert project.backend == "local"  # nothing switches before an admin approves

        client, admin = admin_client(project)
        page = client.get(reverse("classify:models", args=[project.slug]))
        assert b"Wait for training" in page.content and b"zero: 100% of the sample before" in page.content
        client.post(reverse("classify:decide_run", args=[project.slug, run.pk]), {"decision": "approve"})
        project.refresh_from_db()
        assert project.backend == "custom_labels"
        assert project.backend_config == {"project_version_arn": flow.version_arn()}
        assert ModelVersion.objects.get(backend="custom_labels", is_active=True) == candidate

    def test_a_failed_training_stops_the_run_with_rekognitions_reason(
        self, rekognition_stub, s3, monkeypatch, django_capture_on_commit_callbacks
    ):
        project = self.make_project()
        version = frozen_version(monkeypatch)
        flow = Workflow(rekognition_stub, project).project_and_datasets(existing=True)
        flow.dataset(TRAIN_ARN, "CREATE_COMPLETE").dataset(TEST_ARN, "CREATE_COMPLETE")
        flow.training(version).described("TRAINING_FAILED", message="The manifest file contains too many invalid data objects.")

        run = start_run(project, django_capture_on_commit_callbacks)

        assert run.state == TrainingRun.State.FAILED
        assert run.reason == "Training failed: The manifest file contains too many invalid data objects."
        assert run.steps[0]["detail"] == "Reusing project loupe-digits."
        assert run.steps[-1]["step"] == "wait_training" and run.steps[-1]["status"] == "failed"
        assert not ModelVersion.objects.exists()
        client, _ = admin_client(project)
        assert b"too many invalid data objects" in client.get(reverse("classify:models", args=[project.slug])).content

    def test_an_f1_below_the_bar_is_measured_but_not_started_or_offered(
        self, rekognition_stub, s3, monkeypatch, django_capture_on_commit_callbacks
    ):
        project = self.make_project()
        s3.put_object(Bucket=BUCKET, Key=SUMMARY_KEY, Body=json.dumps(summary_file(0.62)).encode())
        version = frozen_version(monkeypatch)
        flow = Workflow(rekognition_stub, project).project_and_datasets()
        flow.dataset(TRAIN_ARN, "CREATE_COMPLETE").dataset(TEST_ARN, "CREATE_COMPLETE")
        flow.training(version).described("TRAINING_COMPLETED", f1=0.62)  # then no start_project_version

        run = start_run(project, django_capture_on_commit_callbacks)

        assert run.state == TrainingRun.State.NOT_PROMOTED
        assert run.reason == "F1 0.620 is below the project's minimum of 0.800."
        assert run.candidate.f1 == 0.62 and not run.candidate.is_active
        project.refresh_from_db()
        assert project.backend == "local"

    def test_a_dataset_rekognition_rejects_fails_the_run_with_its_message(
        self, rekognition_stub, s3, monkeypatch, django_capture_on_commit_callbacks
    ):
        project = self.make_project()
        frozen_version(monkeypatch)
        flow = Workflow(rekognition_stub, project).project_and_datasets()
        flow.dataset(TRAIN_ARN, "CREATE_FAILED", message="The manifest file has no valid JSON lines.")
        run = start_run(project, django_capture_on_commit_callbacks)
        assert run.state == TrainingRun.State.FAILED
        assert run.reason == "The TRAIN dataset could not be created: The manifest file has no valid JSON lines. (CLIENT_ERROR)"

    def test_a_run_survives_a_lost_message_the_sweeper_resends_the_waiting_step(
        self, rekognition_stub, s3, monkeypatch, django_capture_on_commit_callbacks
    ):
        project = self.make_project()
        Workflow(rekognition_stub, project).project_and_datasets().dataset(TRAIN_ARN, "CREATE_IN_PROGRESS").dataset(
            TEST_ARN, "CREATE_IN_PROGRESS")
        sent = []
        monkeypatch.setattr(runs, "send", lambda run_id, token, countdown=0: sent.append((run_id, token, countdown)))
        with django_capture_on_commit_callbacks(execute=True):
            run = runs.start_custom_labels_training(
                project=project, train_manifest=f"s3://{BUCKET}/digits/train.manifest",
                test_manifest=f"s3://{BUCKET}/digits/test.manifest", output_location=f"s3://{BUCKET}/digits/output",
                region=REGION)
        for _ in range(3):  # a worker runs project, datasets, then the first dataset check
            token = sent[-1][1]
            claimed = runs.claim(run.pk, str(token))
            countdown = runs.run_step(claimed)
            sent.append((run.pk, claimed.token, countdown))
        assert sent[-1][2] == 30  # first poll after 30 s
        assert runs.claim(run.pk, str(sent[1][1])) is None  # a stale or duplicate message does nothing
        # The worker dies; the message is lost. Once overdue, the sweeper sends the step again.
        assert runs.resume_overdue_runs() == 0
        TrainingRun.objects.filter(pk=run.pk).update(next_poll_at=WHEN)
        assert runs.resume_overdue_runs() == 1
        run.refresh_from_db()
        assert sent[-1][:2] == (run.pk, run.token) and run.step == "wait_datasets"
        assert run.steps[-1]["status"] == "waiting" and run.aws["train_dataset_arn"] == TRAIN_ARN

    def test_the_page_is_for_project_admins_only(self):
        project = make_digits_project()
        reviewer = make_user("rey")
        Membership.objects.create(project=project, user=reviewer, role=Membership.Role.REVIEWER)
        client = Client()
        client.force_login(reviewer)
        assert client.get(reverse("classify:models", args=[project.slug])).status_code == 403
        client.force_login(make_user("otto"))
        assert client.get(reverse("classify:models", args=[project.slug])).status_code == 404

    def test_the_form_refuses_locations_that_are_not_s3(self):
        project = make_digits_project()
        client, _ = admin_client(project)
        response = client.post(reverse("classify:models", args=[project.slug]), {
            "kind": "custom_labels", "train_manifest": "https://example.com/train.manifest",
            "test_manifest": f"s3://{BUCKET}/t.manifest", "output_location": f"s3://{BUCKET}/out"})
        assert response.status_code == 200 and b"must look like s3://bucket/key" in response.content
        assert not TrainingRun.objects.exists()


# --- The learning curve, small --------------------------------------------------------------------


def test_more_human_labels_make_a_better_head_on_real_digits():
    from classify.backends.local import embed_and_probabilities

    images = digit_images((0, 1, 6, 8), 40)
    pictures = [Image.open(io.BytesIO(data)).convert("RGB") for _, data in images]
    embeddings = np.vstack([embed_and_probabilities(pictures[i : i + 40])[0] for i in range(0, len(pictures), 40)])
    rows = learning_curve(embeddings, [str(digit) for digit, _ in images], ks=(2, 20), pool_per_class=20,
                          target_precision=0.95)
    few, many = rows
    assert few["labels"] == 8 and many["labels"] == 80 and many["pool"] == 80
    assert many["accuracy"] > few["accuracy"] and many["accuracy"] >= 0.7  # chance is 0.25
    assert many["auto_accept_share"] >= few["auto_accept_share"]
