"""Pages: login everywhere, scoping by membership, the upload page, item pages, image serving."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from classify.models import Project
from classify.services import intake
from tests.base import PASSWORD, make_colour_project, make_user, solid_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    admin = make_user("ada", is_staff=True)
    reviewer = make_user("rey")
    outsider = make_user("otto")
    project = make_colour_project(admin=admin, reviewer=reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        item = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="red.png")
    return {"admin": admin, "reviewer": reviewer, "outsider": outsider, "project": project, "item": item}


# Who may reach which URL (anonymous, outsiders, members, admins...): tests/test_authorization_matrix.py.


def test_the_health_checks_are_public(world):
    assert Client().get(reverse("classify:livez")).json() == {"ok": True}
    response = Client().get(reverse("classify:healthz"))
    assert response.status_code == 503 and response.json()["problems"] == ["No worker has been seen for 60 seconds."]


def test_session_writes_to_the_review_api_need_the_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["reviewer"])
    response = client.post(reverse("review_api:claim", args=[world["project"].slug]))
    assert response.status_code == 403 and "CSRF" in response.json()["error"]


def test_home_lists_only_the_users_projects(world):
    make_colour_project("secret")
    client = Client()
    client.force_login(world["reviewer"])
    page = client.get(reverse("classify:home")).content.decode()
    assert "colours" in page and "secret" not in page


def test_only_staff_can_create_projects(world):
    client = Client()
    client.force_login(world["reviewer"])
    assert client.get(reverse("classify:project_create")).status_code == 403
    client.force_login(world["admin"])
    response = client.post(reverse("classify:project_create"),
                           {"name": "Birds", "slug": "", "labels": "sparrow, robin", "backend": "local"})
    assert response.status_code == 302
    project = Project.objects.get(slug="birds")
    assert list(project.labels.values_list("name", "is_unknown")) == [
        ("sparrow", False), ("robin", False), ("unknown", True)]
    assert project.memberships.get().user == world["admin"]


def test_project_creation_explains_bad_input(world):
    client = Client()
    client.force_login(world["admin"])
    page = client.post(reverse("classify:project_create"), {"name": "X", "labels": "one", "backend": "local"})
    assert page.status_code == 200 and "Enter at least two classes." in page.content.decode()


def test_login_page_logs_in(world):
    client = Client()
    response = client.post(reverse("login"), {"username": "rey", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("classify:project", args=["colours"])).status_code == 200


def test_the_project_page_shows_the_upload_form_and_items(world):
    client = Client()
    client.force_login(world["reviewer"])
    page = client.get(reverse("classify:project", args=["colours"])).content.decode()
    assert 'id="file-input"' in page and "multiple" in page
    assert f'data-item-id="{world["item"].pk}"' in page
    assert "Auto-accepted" in page


def test_the_item_page_shows_scores_and_why(world):
    client = Client()
    client.force_login(world["reviewer"])
    page = client.get(reverse("classify:item_detail", args=["colours", world["item"].pk])).content.decode()
    assert "red scored 100%" in page or "red scored 99%" in page
    assert "colour-1" in page


def test_images_are_served_as_jpeg_with_safe_headers(world):
    client = Client()
    client.force_login(world["reviewer"])
    response = client.get(reverse("classify:item_image", args=[world["item"].pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert b"".join(response.streaming_content).startswith(b"\xff\xd8")


def test_an_image_missing_from_storage_is_a_404_not_a_500(world):
    world["item"].image.storage.delete(world["item"].image.name)
    client = Client()
    client.force_login(world["reviewer"])
    response = client.get(reverse("classify:item_image", args=[world["item"].pk]))
    assert response.status_code == 404


def test_reviewers_cannot_reach_the_admin(world):
    client = Client()
    client.force_login(world["reviewer"])
    response = client.get("/admin/classify/label/")
    assert response.status_code == 302 and "/admin/login/" in response.url


def test_unknown_pages_get_a_friendly_404(world):
    client = Client()
    client.force_login(world["reviewer"])
    response = client.get("/nope/")
    assert response.status_code == 404 and "Not found" in response.content.decode()


def test_repeated_wrong_passwords_lock_the_login(world, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(reverse("login"), {"username": "rey", "password": "wrong"})
        assert response.status_code == 200 and "didn't match" in response.content.decode()
    assert client.post(reverse("login"), {"username": "rey", "password": "wrong"}).status_code == 429
    locked = client.post(reverse("login"), {"username": "rey", "password": PASSWORD})
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert client.get(reverse("classify:home")).status_code == 302  # still not logged in
    other = Client().post(reverse("login"), {"username": "ada", "password": PASSWORD})
    assert other.status_code == 302  # other accounts are not affected


class ItemListPagingTests:
    def test_the_item_list_pages_by_keyset_newest_first_keeping_the_status_filter(self, world, monkeypatch):
        import re

        from classify import views
        from classify.models import Item
        from tests.base import make_review_item

        monkeypatch.setattr(views, "PAGE_SIZE", 2)
        project = world["project"]
        waiting = [make_review_item(project, sha256=f"{n:064x}").pk for n in range(5)]
        client = Client()
        client.force_login(world["reviewer"])
        url = reverse("classify:project", args=[project.slug])

        def page(query: str) -> tuple[list[int], str | None]:
            body = client.get(url + query).content.decode()
            shown = [int(pk) for pk in re.findall(r'data-item-id="(\d+)"', body)]
            older = re.search(r'href="\?([^"]*before=\d+)" rel="next"', body)
            return shown, (older.group(1).replace("&amp;", "&") if older else None)

        shown, older = page("?status=needs_review")
        assert shown == waiting[:-3:-1] and older == f"status=needs_review&before={waiting[-2]}"
        shown, older = page("?" + older)
        assert shown == waiting[-3:-5:-1]
        shown, older = page("?" + older)
        assert shown == [waiting[0]] and older is None
        everything = Item.objects.filter(project=project).order_by("-pk").values_list("pk", flat=True)
        assert page("")[0] == list(everything[:2])
