"""Exemplars from the start: per-class uploads on the project page (the same checks as any upload),
auto-accepted stand-ins shown until people label a class, and the loud flag on unmapped classes."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from classify.models import Exemplar, Item, Membership
from classify.services import intake, projects
from tests.base import make_colour_project, make_user, noisy_image, solid_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast():
    admin, reviewer = make_user("ada", is_staff=True), make_user("rey")
    project = make_colour_project(admin=admin, reviewer=reviewer)
    return admin, reviewer, project


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(client, project, label, data: bytes, name: str = "e.png"):
    url = reverse("api:class_exemplars", args=[project.slug, label.pk])
    return client.post(url, {"image": ContentFile(data, name=name)})


class ExemplarUploadTests:
    def test_a_project_admin_adds_an_exemplar_stored_as_a_reencoded_jpeg(self, cast):
        admin, _, project = cast
        red = project.labels.get(name="red")
        response = upload(client_for(admin), project, red, noisy_image((200, 30, 30), seed=1))
        assert response.status_code == 201
        exemplar = Exemplar.objects.get(label=red)
        assert response.json() == {"id": exemplar.pk, "label": "red", "label_id": red.pk,
                                   "image_url": f"/review/exemplars/{exemplar.pk}/image"}
        with exemplar.image.open("rb") as handle:
            assert handle.read(3) == b"\xff\xd8\xff"

    def test_it_refuses_what_any_upload_refuses_and_says_why(self, cast):
        admin, _, project = cast
        red = project.labels.get(name="red")
        client = client_for(admin)
        response = upload(client, project, red, b"not an image at all", name="notes.jpg")
        assert response.status_code == 400
        assert response.json() == {"error": "The file is not an image in a supported format (JPEG, PNG, WebP, GIF, "
                                            "BMP, TIFF).", "filename": "notes.jpg"}
        dark = upload(client, project, red, solid_image((2, 2, 2)), name="dark.png")
        assert dark.status_code == 400 and "dark" in dark.json()["error"]
        data = noisy_image((200, 30, 30), seed=2)
        assert upload(client, project, red, data).status_code == 201
        again = upload(client, project, red, data)
        assert again.status_code == 400 and again.json()["error"] == "This picture is already an exemplar of red."
        assert Exemplar.objects.filter(label=red).count() == 1

    def test_reviewers_cannot_change_exemplars_and_unknown_takes_none(self, cast):
        admin, reviewer, project = cast
        red, unknown = project.labels.get(name="red"), project.labels.get(is_unknown=True)
        assert upload(client_for(reviewer), project, red, noisy_image((200, 30, 30), seed=3)).status_code == 403
        assert upload(client_for(admin), project, unknown, noisy_image((9, 9, 9), seed=3)).status_code == 404
        assert not Exemplar.objects.exists()

    def test_an_admin_removes_an_exemplar(self, cast):
        admin, reviewer, project = cast
        red = project.labels.get(name="red")
        exemplar_id = upload(client_for(admin), project, red, noisy_image((200, 30, 30), seed=4)).json()["id"]
        url = reverse("api:exemplar_detail", args=[exemplar_id])
        assert client_for(reviewer).delete(url).status_code == 403
        assert client_for(admin).delete(url).json() == {"removed": exemplar_id}
        assert not Exemplar.objects.exists()


class ProjectPageClassesTests:
    def test_it_shows_each_class_with_its_fixed_key_and_pictures(self, cast):
        admin, _, project = cast
        upload(client_for(admin), project, project.labels.get(name="green"), noisy_image((30, 200, 30), seed=5))
        page = client_for(admin).get(reverse("classify:project", args=[project.slug])).content.decode()
        assert 'id="classes" open' in page  # a new project: the section starts open
        for key, name in (("1", "red"), ("2", "green"), ("3", "blue")):
            assert f'data-label="{name}"' in page
            assert f"Key {key} picks {name} on the review screen" in page
        assert page.count('class="pic exemplar"') == 1 and "Drop exemplars" in page
        assert f'href="/projects/{project.slug}/models/"' in page  # the Models page, for admins
        assert '<span data-count="needs_review">0</span>' in page  # Review (N), kept live by upload.js

    def test_confident_auto_accepts_stand_in_until_people_label_the_class(self, cast, django_capture_on_commit_callbacks):
        admin, reviewer, project = cast
        with django_capture_on_commit_callbacks(execute=True):
            sure = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="red.png")
        sure.refresh_from_db()
        assert sure.status == Item.Status.AUTO_ACCEPTED and sure.top_score >= 0.9
        client = client_for(reviewer)
        page = client.get(reverse("classify:project", args=[project.slug])).content.decode()
        assert page.count('class="pic stand-in"') == 1 and f"/items/{sure.pk}/image" in page
        assert "Drop exemplars" not in page  # reviewers see the pictures, admins add them
        Item.objects.filter(pk=sure.pk).update(status=Item.Status.REVIEWED, label=project.labels.get(name="red"))
        page = client.get(reverse("classify:project", args=[project.slug])).content.decode()
        assert 'class="pic stand-in"' not in page  # a human label exists now
        assert not Exemplar.objects.exists()  # shown, never made an exemplar


class UnmappedClassTests:
    def test_the_project_page_flags_a_class_without_imagenet_classes_with_the_fix(self):
        admin = make_user("ada", is_staff=True)
        project = projects.create_project(slug="sites", labels=["temple", "church"], backend="local", created_by=admin)
        page = client_for(admin).get(reverse("classify:project", args=[project.slug])).content.decode()
        temple = project.labels.get(name="temple")
        assert "No ImageNet mapping for temple." in page
        assert f'href="/admin/classify/label/{temple.pk}/change/"' in page
        assert "or add exemplars below" in page
        assert "1 ImageNet class under church.n.02" in page or "1 ImageNet class under church" in page

    def test_a_reviewer_is_told_who_can_fix_it(self):
        reviewer = make_user("rey")
        project = projects.create_project(slug="sites", labels=["temple", "church"], backend="local")
        Membership.objects.create(project=project, user=reviewer)
        page = client_for(reviewer).get(reverse("classify:project", args=[project.slug])).content.decode()
        assert "No ImageNet mapping for temple." in page and "a project admin chooses ImageNet classes" in page


class ProjectCreationTests:
    def test_the_form_previews_each_class_with_its_coverage(self):
        client = client_for(make_user("ada", is_staff=True))
        page = client.get(reverse("classify:project_suggestions") + "?labels=bird, temple,unknown").content.decode()
        assert '<tr class="mapping-kinds" data-label="bird"><th>bird</th><td>59 ImageNet classes under bird.n.01' in page
        assert '<tr class="mapping-none" data-label="temple"><th>temple</th><td>⚠ No ImageNet class matches' in page
        assert 'data-label="unknown"' not in page  # added for you
        assert client_for(make_user("rey")).get(reverse("classify:project_suggestions")).status_code == 403

    def test_the_creation_message_names_the_classes_left_without_a_mapping(self):
        client = client_for(make_user("ada", is_staff=True))
        response = client.post(reverse("classify:project_create"),
                               {"name": "Sites", "labels": "temple, church, dog", "backend": "local"}, follow=True)
        said = [str(message) for message in response.context["messages"]]
        assert said[0] == ("No ImageNet mapping for temple: the local model scores it 0 until you choose ImageNet "
                           "classes in the admin or add exemplars (under Classes, below).")
        assert said[1].startswith("Project Sites created: 2 of 3 classes start with suggested ImageNet classes")
        assert "No ImageNet mapping for temple." in response.content.decode()  # and the page keeps saying it
