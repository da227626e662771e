"""Django admin: thresholds inline with validation, the ImageNet picker, exemplars, scoping."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from classify import pipeline
from classify.models import Exemplar, Label, ModelVersion, Project, TrainingRun
from classify.retrain import runs
from classify.services import exemplars, intake, projects
from tests.base import make_colour_project, make_user, noisy_image, photo_bytes, solid_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    admin = make_user("ada", is_staff=True)
    project = make_colour_project(admin=admin)
    client = Client()
    client.force_login(admin)
    return client, project


def changelist_post(project, **overrides) -> dict:
    labels = list(project.labels.all())
    data = {"form-TOTAL_FORMS": len(labels), "form-INITIAL_FORMS": len(labels), "_save": "Save"}
    for index, label in enumerate(labels):
        data[f"form-{index}-id"] = label.pk
        data[f"form-{index}-order"] = label.order
        data[f"form-{index}-accept_threshold"] = overrides.get(label.name, label.accept_threshold)
        data[f"form-{index}-margin"] = label.margin
        data[f"form-{index}-audit_rate"] = label.audit_rate
    return data


def test_thresholds_are_editable_in_the_list(admin_client):
    client, project = admin_client
    response = client.post("/admin/classify/label/", changelist_post(project, red=0.55))
    assert response.status_code == 302
    assert Label.objects.get(project=project, name="red").accept_threshold == 0.55


def test_a_threshold_outside_0_to_1_is_refused(admin_client):
    client, project = admin_client
    response = client.post("/admin/classify/label/", changelist_post(project, red=1.5))
    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 1.0." in response.content.decode()
    assert Label.objects.get(project=project, name="red").accept_threshold == 0.8


def test_the_imagenet_picker_saves_the_local_mapping(admin_client):
    client, project = admin_client
    label = project.labels.get(name="red")
    data = {"project": project.pk, "name": "red", "description": "", "order": 0, "accept_threshold": 0.7,
            "margin": 0.1, "audit_rate": 0.05, "mappings": '{"colour": ["#ff0000"]}', "imagenet_classes": ["tabby, tabby cat", "tiger cat"],
            "exemplars-TOTAL_FORMS": 0, "exemplars-INITIAL_FORMS": 0}
    response = client.post(f"/admin/classify/label/{label.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    label.refresh_from_db()
    assert label.mappings == {"colour": ["#ff0000"], "local": ["tabby, tabby cat", "tiger cat"]}
    assert (label.accept_threshold, label.margin) == (0.7, 0.1)


def test_exemplars_are_validated_and_reencoded(admin_client):
    client, project = admin_client
    label = project.labels.get(name="red")
    base = {"project": project.pk, "name": "red", "description": "", "order": 0, "accept_threshold": 0.8,
            "margin": 0.0, "audit_rate": 0, "mappings": "{}", "exemplars-TOTAL_FORMS": 1, "exemplars-INITIAL_FORMS": 0}
    bad = {**base, "exemplars-0-image": SimpleUploadedFile("x.jpg", b"<svg onload=alert(1)>")}
    response = client.post(f"/admin/classify/label/{label.pk}/change/", bad)
    assert response.status_code == 200 and "not an image" in response.content.decode()
    assert not Exemplar.objects.exists()
    good = {**base, "exemplars-0-image": SimpleUploadedFile("cat.png", photo_bytes("chelsea", fmt="PNG"))}
    assert client.post(f"/admin/classify/label/{label.pk}/change/", good).status_code == 302
    exemplar = Exemplar.objects.get()
    assert exemplar.image.name.endswith(".jpg") and len(exemplar.sha256) == 64
    with exemplar.image.open("rb") as handle:
        assert handle.read(2) == b"\xff\xd8"


def label_change_post(label, *, upload: bytes, name: str = "new.jpg") -> dict:
    """The class's change form as the browser posts it: its fields unchanged, its exemplars kept
    (the inline's management form, one row per exemplar) and one new exemplar in the extra row."""
    kept = list(label.exemplars.order_by("pk"))
    data = {"project": label.project_id, "name": label.name, "description": label.description, "order": label.order,
            "accept_threshold": label.accept_threshold, "margin": label.margin, "audit_rate": label.audit_rate,
            "paused_reason": label.paused_reason, "imagenet_classes": label.mappings.get("local", []),
            "mappings": json.dumps({k: v for k, v in label.mappings.items() if k != "local"}),
            "exemplars-TOTAL_FORMS": len(kept) + 1, "exemplars-INITIAL_FORMS": len(kept),
            "exemplars-MIN_NUM_FORMS": 0, "exemplars-MAX_NUM_FORMS": 1000, "_save": "Save"}
    for index, exemplar in enumerate(kept):
        data[f"exemplars-{index}-id"] = exemplar.pk
        data[f"exemplars-{index}-label"] = label.pk
    data[f"exemplars-{len(kept)}-label"] = label.pk
    data[f"exemplars-{len(kept)}-image"] = SimpleUploadedFile(name, upload, "image/jpeg")
    return data


def with_gps(data: bytes) -> bytes:
    """The picture as a phone stores it: EXIF with a camera maker and a GPS position."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 0.0), 3: "E", 4: (4.0, 54.0, 0.0)}
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, format="JPEG", exif=exif, quality=92)
    return buffer.getvalue()


def test_an_exemplar_added_in_the_class_page_is_reencoded_and_can_train_the_first_head(
        client, django_capture_on_commit_callbacks):
    """A project admin (not a superuser) adds the last exemplar a cold start waits for through the
    class page's inline: stored like any upload (re-encoded JPEG, no EXIF, the pixels' hash), and
    the refit check it queues trains the first head, as the drop zones' API does."""
    admin = make_user("ada", is_staff=True)
    project = projects.create_project(slug="bugs", labels=["alpha", "beta"], backend="local", created_by=admin)
    Project.objects.filter(pk=project.pk).update(refit_every=0)  # the cold start, not the usual refits
    alpha, beta = project.labels.get(name="alpha"), project.labels.get(name="beta")
    crops = [(0, 0, 0.9, 0.9), (0.1, 0.1, 1, 1), (0.05, 0, 0.95, 0.95)]
    for i, crop in enumerate(crops):
        exemplars.add_exemplar(label=beta, data=photo_bytes("coffee", crop=crop, mirror=bool(i % 2)))
    for i, crop in enumerate(crops[:2]):
        exemplars.add_exemplar(label=alpha, data=photo_bytes("chelsea", crop=crop, mirror=bool(i % 2)))
    posted = with_gps(photo_bytes("chelsea", crop=crops[2]))
    assert b"PhoneMaker" in posted
    client.force_login(admin)
    cache.delete(runs.refit_check_key(project))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/classify/label/{alpha.pk}/change/", label_change_post(alpha, upload=posted))
    assert response.status_code == 302, response.content.decode()[:3000]

    assert alpha.exemplars.count() == 3
    added = alpha.exemplars.latest("pk")
    with added.image.open("rb") as handle:
        stored = handle.read()
    assert stored[:3] == b"\xff\xd8\xff" and b"Exif" not in stored and b"PhoneMaker" not in stored
    assert not Image.open(io.BytesIO(stored)).getexif()
    assert added.sha256 == pipeline.preprocess(posted, max_pixels=settings.LOUPE_MAX_IMAGE_PIXELS).sha256
    run = TrainingRun.objects.get(project=project)
    assert run.state == TrainingRun.State.APPROVED, (run.reason, run.steps)
    assert ModelVersion.objects.get(project=project, is_active=True) == run.candidate


def test_the_class_page_refuses_the_exemplars_the_drop_zones_refuse(admin_client):
    """The same checks as every other way in: the project's quality rules and one copy per class."""
    client, project = admin_client
    red = project.labels.get(name="red")
    dark = client.post(f"/admin/classify/label/{red.pk}/change/",
                       label_change_post(red, upload=solid_image((2, 2, 2), fmt="JPEG")))
    assert dark.status_code == 200 and "Too dark" in dark.content.decode()
    assert not Exemplar.objects.exists()
    picture = noisy_image((200, 30, 30), seed=1)
    first = client.post(f"/admin/classify/label/{red.pk}/change/", label_change_post(red, upload=picture))
    assert first.status_code == 302
    again = client.post(f"/admin/classify/label/{red.pk}/change/", label_change_post(red, upload=picture))
    assert again.status_code == 200 and "This picture is already an exemplar of red." in again.content.decode()
    assert Exemplar.objects.filter(label=red).count() == 1


def test_the_same_picture_twice_in_one_submission_is_refused(admin_client):
    client, project = admin_client
    red = project.labels.get(name="red")
    picture = noisy_image((200, 30, 30), seed=3)
    data = label_change_post(red, upload=picture)
    data["exemplars-TOTAL_FORMS"] = 2
    data["exemplars-1-label"] = red.pk
    data["exemplars-1-image"] = SimpleUploadedFile("again.jpg", picture, "image/jpeg")
    response = client.post(f"/admin/classify/label/{red.pk}/change/", data)
    assert response.status_code == 200 and "The same picture is added twice on this page." in response.content.decode()
    assert not Exemplar.objects.exists()


def test_the_unknown_class_takes_no_exemplar_on_its_page(admin_client):
    """As in the API and the drop zones: unknown is what matches no class, never a class to learn."""
    client, project = admin_client
    unknown = project.labels.get(is_unknown=True)
    response = client.post(f"/admin/classify/label/{unknown.pk}/change/",
                           label_change_post(unknown, upload=noisy_image((30, 200, 30), seed=2)))
    assert response.status_code == 200 and "it takes no exemplars" in response.content.decode()
    assert not Exemplar.objects.exists()


def test_a_new_class_can_start_with_an_exemplar(admin_client):
    client, project = admin_client
    data = {"project": project.pk, "name": "purple", "description": "", "order": 5, "accept_threshold": 0.8,
            "margin": 0, "audit_rate": 0, "mappings": "{}", "exemplars-TOTAL_FORMS": 1, "exemplars-INITIAL_FORMS": 0,
            "exemplars-0-image": SimpleUploadedFile("p.png", noisy_image((120, 40, 160), seed=2), "image/png")}
    assert client.post("/admin/classify/label/add/", data).status_code == 302
    assert Exemplar.objects.get().label == Label.objects.get(project=project, name="purple")


def test_project_admins_see_only_their_projects(admin_client):
    client, project = admin_client
    other = projects.create_project(slug="theirs", labels=["a", "b"])
    page = client.get("/admin/classify/label/").content.decode()
    assert "colours" in page and "theirs" not in page
    foreign = other.labels.first()
    assert client.get(f"/admin/classify/label/{foreign.pk}/change/").status_code == 302  # "doesn't exist"
    assert client.get("/admin/classify/project/").status_code == 200


def test_the_unknown_class_cannot_be_deleted(admin_client):
    client, project = admin_client
    unknown = project.labels.get(is_unknown=True)
    assert client.post(f"/admin/classify/label/{unknown.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Label.objects.filter(pk=unknown.pk).exists()


def test_a_new_class_starts_with_imagenet_suggestions(admin_client):
    client, project = admin_client
    data = {"project": project.pk, "name": "goldfish", "description": "", "order": 5, "accept_threshold": 0.8,
            "margin": 0, "audit_rate": 0, "mappings": "{}", "exemplars-TOTAL_FORMS": 0, "exemplars-INITIAL_FORMS": 0}
    assert client.post("/admin/classify/label/add/", data).status_code == 302
    assert Label.objects.get(project=project, name="goldfish").mappings["local"] == ["goldfish, Carassius auratus"]


def test_a_labelled_item_can_become_an_exemplar(admin_client, django_capture_on_commit_callbacks):
    from tests.base import solid_image

    client, project = admin_client
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="r.png")
        unlabelled = intake.ingest_upload(project=project, data=solid_image((90, 90, 90)), filename="g.png")
    response = client.post("/admin/classify/item/", {"action": "promote_to_exemplar",
                                                     "_selected_action": [item.pk, unlabelled.pk]})
    assert response.status_code == 302
    exemplar = Exemplar.objects.get()
    assert exemplar.label.name == "red" and exemplar.sha256 == item.sha256
    assert exemplar.image.name != item.image.name


def test_backend_settings_are_checked_when_saved(admin_client):
    client, project = admin_client
    data = {"name": project.name, "slug": project.slug, "description": "", "backend": "custom_labels",
            "backend_config": '{"project_version_arn": "not-an-arn"}', "refit_every": 20,
            "min_examples_per_class": 3, "review_order": "margin", "review_candidates": 9, "grid_size": 24,
            "lease_seconds": 120, "consensus_reviews": 1, "consensus_below": 0.5, "min_side": 32,
            "min_brightness": 0.04, "max_brightness": 0.98, "min_sharpness": 0, "max_aspect_ratio": 10,
            "labels-TOTAL_FORMS": 0, "labels-INITIAL_FORMS": 0, "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0}
    response = client.post(f"/admin/classify/project/{project.pk}/change/", data)
    assert response.status_code == 200
    assert "These settings do not work for custom_labels" in response.content.decode()
    project.refresh_from_db()
    assert project.backend == "colour"


def test_a_class_without_imagenet_classes_is_flagged_in_the_admin_with_the_fix():
    admin = make_user("ada", is_staff=True)
    project = projects.create_project(slug="sites", labels=["temple", "church"], backend="local", created_by=admin)
    client = Client()
    client.force_login(admin)
    listing = client.get("/admin/classify/label/").content.decode()
    assert "⚠ none: choose ImageNet classes or add exemplars" in listing
    assert "1 class" in listing  # church
    temple = project.labels.get(name="temple")
    page = client.get(f"/admin/classify/label/{temple.pk}/change/").content.decode()
    assert "⚠ No ImageNet class matches “temple”: choose ImageNet classes for it in the admin, or add exemplars." in page
    inline = client.get(f"/admin/classify/project/{project.pk}/change/").content.decode()
    assert "⚠ none: choose ImageNet classes or add exemplars" in inline


def test_the_json_box_holds_only_the_other_backends_mappings(admin_client):
    client, project = admin_client
    label = project.labels.get(name="red")
    Label.objects.filter(pk=label.pk).update(mappings={"colour": ["#ff0000"], "local": ["tiger cat"]})
    page = client.get(f"/admin/classify/label/{label.pk}/change/").content.decode()
    assert "Other backends&#x27; mappings" in page
    assert "{&quot;colour&quot;: [&quot;#ff0000&quot;]}" in page and "&quot;local&quot;" not in page


def test_the_item_list_searches_by_id_filename_start_and_sha256_within_the_admins_projects(admin_client):
    import re

    from classify.models import Item
    from tests.base import make_review_item

    client, project = admin_client
    holiday = make_review_item(project, sha256="a" * 64, original_filename="holiday-001.jpg")
    other = make_review_item(project, sha256="b" * 64, original_filename="work-002.jpg")
    elsewhere = make_review_item(make_colour_project("elsewhere"), sha256="c" * 64, original_filename="holiday-9.jpg")

    def found(query: str) -> set[int]:
        body = client.get("/admin/classify/item/", {"q": query}).content.decode()
        return {int(pk) for pk in re.findall(r'/admin/classify/item/(\d+)/change/', body)}

    assert found("holiday") == {holiday.pk}  # the other project's holiday photo stays invisible
    assert found(str(other.pk)) == {other.pk}
    assert found("b" * 64) == {other.pk}
    assert found("") == {holiday.pk, other.pk}
    assert found(str(elsewhere.pk)) == set()
    assert found("project=") == set() and Item.objects.count() == 3
    filtered = client.get("/admin/classify/item/", {"project__id__exact": project.pk, "status__exact": "needs_review"})
    assert filtered.status_code == 200 and project.name in filtered.content.decode()


def test_the_item_list_size_comes_from_the_kept_counts_and_is_exact(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from classify.models import Item
    from tests.base import make_review_item

    client, project = admin_client
    for n, name in enumerate(["holiday-1.jpg", "holiday-2.jpg", "work-3.jpg"]):
        make_review_item(project, sha256=f"{n:064x}", original_filename=name)
    Item.objects.filter(original_filename="work-3.jpg").update(status=Item.Status.REVIEWED)
    make_review_item(make_colour_project("elsewhere"), sha256="e" * 64)  # not ada's: never counted

    def size(**params) -> tuple[int, list[str]]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/admin/classify/item/", params)
        counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"] and '"classify_item"' in q["sql"]]
        return response.context["cl"].result_count, counts

    assert size() == (3, [])
    assert size(status__exact="needs_review") == (2, [])
    assert size(project__id__exact=project.pk, status__exact="reviewed", o="-1") == (1, [])
    searched, counted = size(q="holiday")  # a search is counted (estimated on PostgreSQL when large)
    assert searched == 2 and counted


def test_a_page_asks_once_whether_a_project_admin_administers_a_project(admin_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client, project = admin_client
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/admin/classify/item/").status_code == 200
    asked = [q["sql"] for q in captured.captured_queries
             if q["sql"].startswith('SELECT 1 AS "a" FROM "classify_project" INNER JOIN "classify_membership"')]
    assert len(asked) == 1, asked  # not once per model of the sidebar
