"""The confused deputy: Loupe acts in AWS with its own identity, so a project admin must not be able
to point it at another project's S3 prefix or Rekognition project. Every S3 location is confined to
``<root>/<project-slug>/`` under the installation's ``LOUPE_S3_ROOTS``, in forms and again in the
services; Rekognition projects are named from the slug, recorded when Loupe creates them, and never
reused, changed or deleted unless recorded for the same project.

AWS is botocore's Stubber on the real clients: any call not queued here fails the test, so
"Loupe did not touch it" is checked, not assumed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber
from django.test import Client
from django.urls import reverse

from classify import aws
from classify.models import CloudResource, Membership, TrainingRun
from classify.retrain import runs
from reviewer.models import Export
from tests.base import make_colour_project, make_user

pytestmark = pytest.mark.django_db
REGION = "us-east-1"
ROOT = "s3://loupe-data/exports"
ACCOUNT = "123456789012"
WHEN = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def project_arn(name: str) -> str:
    return f"arn:aws:rekognition:{REGION}:{ACCOUNT}:project/{name}/1763720000000"


@pytest.fixture
def world(settings):
    settings.LOUPE_S3_ROOTS = [ROOT, "s3://second-root"]
    ada, bob = make_user("ada", is_staff=True), make_user("bob", is_staff=True)
    alpha = make_colour_project("alpha", admin=ada)
    beta = make_colour_project("beta", admin=bob)
    client = Client()
    client.force_login(ada)
    return {"ada": ada, "bob": bob, "alpha": alpha, "beta": beta, "client": client}


@pytest.fixture
def s3_stub(aws_env):
    """The client exports use (the default region)."""
    with Stubber(aws.client("s3")) as stub:
        yield stub
        stub.assert_no_pending_responses()


@pytest.fixture
def s3_training(aws_env):
    """The client a training run in REGION reads its manifests with."""
    with Stubber(aws.client("s3", REGION)) as stub:
        yield stub
        stub.assert_no_pending_responses()


# --- The confinement rule ------------------------------------------------------------------------


class ConfinementTests:
    def test_each_project_gets_its_slug_under_every_root(self, world):
        assert aws.project_s3_prefixes(world["alpha"]) == [f"{ROOT}/alpha/", "s3://second-root/alpha/"]

    @pytest.mark.parametrize("uri", [f"{ROOT}/alpha", f"{ROOT}/alpha/", f"{ROOT}/alpha/run-1/train.manifest",
                                     "s3://second-root/alpha/out"])
    def test_locations_under_the_projects_prefix_are_allowed(self, world, uri):
        bucket, key = aws.confine_s3(uri, project=world["alpha"], what="export location")
        assert f"s3://{bucket}/{key}".rstrip("/") == uri.rstrip("/")

    @pytest.mark.parametrize("uri", [
        f"{ROOT}/beta/train.manifest",           # another project's prefix
        f"{ROOT}/alphabet/x",                    # a slug that merely starts the same
        f"{ROOT}/alpha/../beta/x",               # climbing out
        f"{ROOT}/alpha/./x", f"{ROOT}/alpha//x",  # segments S3 keeps literally but people misread
        f"{ROOT}/x",                             # the root itself
        "s3://loupe-data/alpha/x",               # the bucket, outside the root
        "s3://someone-elses-bucket/exports/alpha/x",
        "https://loupe-data.s3.amazonaws.com/exports/alpha/x",
    ])
    def test_anything_else_is_refused_with_where_it_may_go(self, world, uri):
        with pytest.raises(aws.S3LocationRefused) as refused:
            aws.confine_s3(uri, project=world["alpha"], what="export location")
        assert f"{ROOT}/alpha/" in str(refused.value)

    def test_without_roots_no_s3_location_is_allowed(self, world, settings):
        settings.LOUPE_S3_ROOTS = []
        with pytest.raises(aws.S3LocationRefused, match="LOUPE_S3_ROOTS"):
            aws.confine_s3(f"{ROOT}/alpha/x", project=world["alpha"], what="export location")


# --- Exports -------------------------------------------------------------------------------------


class ExportTests:
    def test_the_export_form_refuses_another_projects_prefix(self, world):
        response = world["client"].post(reverse("reviewer:export", args=["alpha"]), {
            "destination": "s3", "s3_url": f"{ROOT}/beta", "test_split": "0.2", "seed": "0"})
        assert response.status_code == 200 and f"{ROOT}/alpha/".encode() in response.content
        assert not Export.objects.exists()

    def test_the_export_page_suggests_the_projects_own_prefix(self, world):
        page = world["client"].get(reverse("reviewer:export", args=["alpha"]))
        assert f"{ROOT}/alpha".encode() in page.content

    def test_the_service_refuses_it_too(self, world):
        from reviewer.export import runs as export_runs

        with pytest.raises(aws.S3LocationRefused):
            export_runs.start_export(project=world["alpha"], user=world["ada"], target=f"{ROOT}/beta", options={})
        assert not Export.objects.exists()

    def test_a_stored_export_aimed_elsewhere_fails_without_an_s3_call(self, world, s3_stub):
        from reviewer.export import runs as export_runs

        row = Export.objects.create(project=world["alpha"], target=f"{ROOT}/beta", options={})
        row = export_runs.execute_export(export=row)  # the Stubber has nothing queued: any call fails the test
        assert row.state == Export.State.FAILED and f"{ROOT}/alpha/" in row.error


# --- Rekognition Custom Labels training ------------------------------------------------------------


def train(world, **overrides):
    data = {"kind": "custom_labels", "train_manifest": f"{ROOT}/alpha/train.manifest",
            "test_manifest": f"{ROOT}/alpha/test.manifest", "output_location": f"{ROOT}/alpha/output",
            "region": REGION, "start_model": "on", **overrides}
    return world["client"].post(reverse("classify:models", args=["alpha"]), data)


class TrainingLocationTests:
    @pytest.mark.parametrize("field", ["train_manifest", "test_manifest", "output_location"])
    def test_the_form_refuses_a_location_outside_the_projects_prefix(self, world, field):
        response = train(world, **{field: f"{ROOT}/beta/x.manifest"})
        assert response.status_code == 200 and f"{ROOT}/alpha/".encode() in response.content
        assert not TrainingRun.objects.exists()

    def test_the_service_refuses_it_too(self, world):
        with pytest.raises(aws.S3LocationRefused):
            runs.start_custom_labels_training(project=world["alpha"], train_manifest=f"{ROOT}/beta/train.manifest",
                                              test_manifest=f"{ROOT}/alpha/test.manifest",
                                              output_location=f"{ROOT}/alpha/output", region=REGION)
        assert not TrainingRun.objects.exists()

    def test_a_stored_run_aimed_elsewhere_fails_before_any_aws_call(self, world, rekognition_stub):
        run = TrainingRun.objects.create(
            project=world["alpha"], kind=TrainingRun.Kind.CUSTOM_LABELS, step="project", region=REGION,
            train_manifest=f"{ROOT}/alpha/train.manifest", test_manifest=f"{ROOT}/alpha/test.manifest",
            output_location=f"{ROOT}/beta/output", rekognition_project="loupe-alpha", version_name="v")
        runs.run_step(run)
        run.refresh_from_db()
        assert run.state == TrainingRun.State.FAILED and f"{ROOT}/alpha/" in run.reason


class RekognitionProjectTests:
    def start(self, world, django_capture_on_commit_callbacks, monkeypatch, steps: int = 2, **fields):
        """Start a run from the page (as the admin would), then run its first ``steps`` steps."""
        sent = []
        monkeypatch.setattr(runs, "send", lambda run_id, token, countdown=0: sent.append(token))
        with django_capture_on_commit_callbacks(execute=True):
            response = train(world, **fields)
        assert response.status_code == 302, response.content.decode()[:2000]
        run = TrainingRun.objects.get()
        for _ in range(steps):
            claimed = runs.claim(run.pk, str(sent[-1] if sent else run.token))
            if claimed is None or runs.run_step(claimed) is None:
                break
            sent.append(TrainingRun.objects.get(pk=run.pk).token)
        run.refresh_from_db()
        return run

    def datasets(self, stub, arn, s3_training, refs=("alpha/images/1.jpg",)):
        for kind in ("TRAIN", "TEST"):
            manifest(s3_training, f"exports/alpha/{kind.lower()}.manifest", refs)
            stub.add_response("create_dataset", {"DatasetArn": f"{arn}/dataset/{kind.lower()}/1"}, {
                "ProjectArn": arn, "DatasetType": kind, "DatasetSource": {"GroundTruthManifest": {"S3Object": {
                    "Bucket": "loupe-data", "Name": f"exports/alpha/{kind.lower()}.manifest"}}}})

    def test_the_name_comes_from_the_slug_whatever_the_admin_types(
        self, world, rekognition_stub, s3_training, django_capture_on_commit_callbacks, monkeypatch
    ):
        rekognition_stub.add_response("describe_projects", {"ProjectDescriptions": []}, {"ProjectNames": ["loupe-alpha"]})
        rekognition_stub.add_response("create_project", {"ProjectArn": project_arn("loupe-alpha")},
                                 {"ProjectName": "loupe-alpha", "Feature": "CUSTOM_LABELS"})
        self.datasets(rekognition_stub, project_arn("loupe-alpha"), s3_training)
        run = self.start(world, django_capture_on_commit_callbacks, monkeypatch, rekognition_project="loupe-beta")
        assert run.rekognition_project == "loupe-alpha"
        record = CloudResource.objects.get()
        assert (record.project, record.kind, record.name, record.arn, record.region) == (
            world["alpha"], CloudResource.Kind.REKOGNITION_PROJECT, "loupe-alpha", project_arn("loupe-alpha"), REGION)

    def test_a_project_of_that_name_loupe_did_not_create_is_neither_reused_nor_emptied(
        self, world, rekognition_stub, django_capture_on_commit_callbacks, monkeypatch
    ):
        found = {"ProjectArn": project_arn("loupe-alpha"), "CreationTimestamp": WHEN, "Status": "CREATED",
                 "Datasets": [{"DatasetType": "TRAIN", "DatasetArn": "arn:someone-elses-train"}]}
        rekognition_stub.add_response("describe_projects", {"ProjectDescriptions": [found]},
                                 {"ProjectNames": ["loupe-alpha"]})
        run = self.start(world, django_capture_on_commit_callbacks, monkeypatch)  # then no delete_dataset
        run.refresh_from_db()
        assert run.state == TrainingRun.State.FAILED
        assert "Loupe did not create" in run.reason and not CloudResource.objects.exists()

    def test_another_projects_recorded_project_is_never_touched(
        self, world, rekognition_stub, django_capture_on_commit_callbacks, monkeypatch
    ):
        CloudResource.objects.create(project=world["beta"], kind=CloudResource.Kind.REKOGNITION_PROJECT,
                                     region=REGION, name="loupe-alpha", arn=project_arn("loupe-alpha"))
        found = {"ProjectArn": project_arn("loupe-alpha"), "CreationTimestamp": WHEN, "Status": "CREATED",
                 "Datasets": [{"DatasetType": "TRAIN", "DatasetArn": f"{project_arn('loupe-alpha')}/dataset/train/9"}]}
        rekognition_stub.add_response("describe_projects", {"ProjectDescriptions": [found]},
                                 {"ProjectNames": ["loupe-alpha"]})
        run = self.start(world, django_capture_on_commit_callbacks, monkeypatch)
        run.refresh_from_db()
        assert run.state == TrainingRun.State.FAILED and "Loupe did not create" in run.reason

    def test_its_own_recorded_project_is_reused_and_its_old_datasets_replaced(
        self, world, rekognition_stub, s3_training, django_capture_on_commit_callbacks, monkeypatch
    ):
        arn = project_arn("loupe-alpha")
        CloudResource.objects.create(project=world["alpha"], kind=CloudResource.Kind.REKOGNITION_PROJECT,
                                     region=REGION, name="loupe-alpha", arn=arn)
        found = {"ProjectArn": arn, "CreationTimestamp": WHEN, "Status": "CREATED",
                 "Datasets": [{"DatasetType": "TRAIN", "DatasetArn": f"{arn}/dataset/train/0"}]}
        rekognition_stub.add_response("describe_projects", {"ProjectDescriptions": [found]},
                                 {"ProjectNames": ["loupe-alpha"]})
        rekognition_stub.add_response("delete_dataset", {}, {"DatasetArn": f"{arn}/dataset/train/0"})
        self.datasets(rekognition_stub, arn, s3_training)
        run = self.start(world, django_capture_on_commit_callbacks, monkeypatch)
        assert run.steps[0]["detail"].startswith("Reusing project loupe-alpha")

    def test_a_recorded_name_now_holding_a_different_project_is_refused(
        self, world, rekognition_stub, django_capture_on_commit_callbacks, monkeypatch
    ):
        CloudResource.objects.create(project=world["alpha"], kind=CloudResource.Kind.REKOGNITION_PROJECT,
                                     region=REGION, name="loupe-alpha", arn=project_arn("loupe-alpha"))
        recreated = {"ProjectArn": project_arn("loupe-alpha").replace("1763720000000", "1999999999999"),
                     "CreationTimestamp": WHEN, "Status": "CREATED", "Datasets": []}
        rekognition_stub.add_response("describe_projects", {"ProjectDescriptions": [recreated]},
                                 {"ProjectNames": ["loupe-alpha"]})
        run = self.start(world, django_capture_on_commit_callbacks, monkeypatch)
        run.refresh_from_db()
        assert run.state == TrainingRun.State.FAILED and "Loupe did not create" in run.reason


    def test_a_manifest_naming_another_projects_images_is_refused_before_any_dataset(
        self, world, rekognition_stub, s3_training, django_capture_on_commit_callbacks, monkeypatch
    ):
        rekognition_stub.add_response("describe_projects", {"ProjectDescriptions": []}, {"ProjectNames": ["loupe-alpha"]})
        rekognition_stub.add_response("create_project", {"ProjectArn": project_arn("loupe-alpha")},
                                 {"ProjectName": "loupe-alpha", "Feature": "CUSTOM_LABELS"})
        manifest(s3_training, "exports/alpha/train.manifest", ["alpha/images/1.jpg", "beta/images/7.jpg"])
        run = self.start(world, django_capture_on_commit_callbacks, monkeypatch)  # then no create_dataset
        assert run.state == TrainingRun.State.FAILED
        assert "source-ref on line 2 of the train manifest" in run.reason and f"{ROOT}/alpha/" in run.reason


def manifest(s3_stub, key: str, refs) -> None:
    """Queue the S3 read of a manifest whose lines name these images (relative to the root)."""
    import io
    import json

    from botocore.response import StreamingBody

    data = "\n".join(json.dumps({"source-ref": f"{ROOT}/{ref}", "class": 0}) for ref in refs).encode()
    s3_stub.add_response("get_object", {"Body": StreamingBody(io.BytesIO(data), len(data))},
                         {"Bucket": "loupe-data", "Key": key})


class ModelArnTests:
    """A project's backend settings may name only model versions of its own Rekognition project."""

    def version_arn(self, name: str) -> str:
        return f"{project_arn(name).rsplit('/', 1)[0]}/version/{name}.v1/1763720000001"

    def post_backend(self, world, arn: str):
        from tests.classify.test_admin_integrity import project_form

        alpha = world["alpha"]
        data = project_form(alpha)
        data.update({"backend": "custom_labels", "backend_config": f'{{"project_version_arn": "{arn}", '
                                                                 f'"region": "{REGION}"}}'})
        return world["client"].post(f"/admin/classify/project/{alpha.pk}/change/", data)

    def test_another_projects_model_cannot_be_named(self, world):
        for slug in ("alpha", "beta"):
            project = world[slug]
            CloudResource.objects.create(project=project, kind=CloudResource.Kind.REKOGNITION_PROJECT,
                                         region=REGION, name=f"loupe-{slug}", arn=project_arn(f"loupe-{slug}"))
        Membership.objects.filter(project=world["alpha"]).update(role=Membership.Role.ADMIN)
        response = self.post_backend(world, self.version_arn("loupe-beta"))
        assert response.status_code == 200 and b"not a model of this project" in response.content
        world["alpha"].refresh_from_db()
        assert world["alpha"].backend == "colour"
        response = self.post_backend(world, self.version_arn("loupe-alpha"))
        assert response.status_code == 302
        world["alpha"].refresh_from_db()
        assert world["alpha"].backend_config["project_version_arn"] == self.version_arn("loupe-alpha")

    def test_the_bakeoff_form_cannot_name_it_either(self, world):
        response = world["client"].post(reverse("classify:backends", args=["alpha"]), {
            "backends": ["custom_labels"], "configs": f'{{"custom_labels": {{"project_version_arn": '
                                                      f'"{self.version_arn("loupe-beta")}"}}}}'})
        assert response.status_code == 200 and b"not a model of this project" in response.content


class SlugTests:
    """The slug names the project's S3 prefix and Rekognition project: a project admin cannot
    rename their project onto another prefix (a deleted project's leftovers, a future project's)."""

    def test_a_project_admin_cannot_change_the_slug(self, world):
        from tests.classify.test_admin_integrity import project_form

        data = {**project_form(world["alpha"]), "slug": "gamma", "name": "Alpha renamed"}
        response = world["client"].post(f"/admin/classify/project/{world['alpha'].pk}/change/", data)
        assert response.status_code == 302, response.content.decode()[:2000]
        world["alpha"].refresh_from_db()
        assert (world["alpha"].slug, world["alpha"].name) == ("alpha", "Alpha renamed")
