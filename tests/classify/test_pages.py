"""Pages: login everywhere, scoping by membership, the upload page, item pages, image serving."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import get_resolver, reverse

from classify import services
from classify.models import Item, Project
from tests.base import PASSWORD, make_colour_project, make_user, solid_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    admin = make_user("ada", is_staff=True)
    reviewer = make_user("rey")
    outsider = make_user("otto")
    project = make_colour_project(admin=admin, reviewer=reviewer)
    with django_capture_on_commit_callbacks(execute=True):
        item = services.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="red.png")
    return {"admin": admin, "reviewer": reviewer, "outsider": outsider, "project": project, "item": item}


def project_urls(world) -> dict[str, tuple[str, str]]:
    """Every named URL of Loupe's own apps, with the method to call it by."""
    slug, item_id = world["project"].slug, world["item"].pk
    return {
        "classify:home": ("get", reverse("classify:home")),
        "classify:project_create": ("get", reverse("classify:project_create")),
        "classify:project": ("get", reverse("classify:project", args=[slug])),
        "classify:item_detail": ("get", reverse("classify:item_detail", args=[slug, item_id])),
        "classify:item_image": ("get", reverse("classify:item_image", args=[item_id])),
        "reviewer:queue": ("get", reverse("reviewer:queue", args=[slug])),
        "reviewer:decide": ("post", reverse("reviewer:decide", args=[slug, item_id])),
        "api:project_items": ("get", reverse("api:project_items", args=[slug])),
        "api:item_detail": ("get", reverse("api:item_detail", args=[item_id])),
        "classify:healthz": ("get", reverse("classify:healthz")),
    }


def test_the_url_table_covers_every_named_url_of_our_apps(world):
    names = set()
    for namespace in ("classify", "reviewer", "api"):
        resolver = get_resolver().namespace_dict[namespace][1]
        names |= {f"{namespace}:{name}" for name in resolver.reverse_dict if isinstance(name, str)}
    assert names == set(project_urls(world))


PUBLIC = {"classify:healthz"}


def test_the_health_check_is_public_and_says_ok(world):
    response = Client().get(reverse("classify:healthz"))
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_anonymous_users_are_sent_to_login_or_get_401(world):
    for name, (method, url) in project_urls(world).items():
        if name in PUBLIC:
            continue
        response = getattr(Client(), method)(url)
        if name.startswith("api:"):
            assert response.status_code == 401, name
        else:
            assert response.status_code == 302 and response.url.startswith("/accounts/login/"), name


def test_a_user_of_another_project_gets_404_everywhere(world):
    client = Client()
    client.force_login(world["outsider"])
    for name, (method, url) in project_urls(world).items():
        if name in {"classify:home", "classify:project_create"} | PUBLIC:
            continue
        assert getattr(client, method)(url).status_code == 404, name


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


def test_the_review_list_stores_a_decision(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        murky = services.ingest_upload(project=world["project"], data=solid_image((120, 60, 60)), filename="m.png")
    client = Client()
    client.force_login(world["reviewer"])
    page = client.get(reverse("reviewer:queue", args=["colours"])).content.decode()
    assert f'data-item-id="{murky.pk}"' in page
    green = world["project"].labels.get(name="green")
    response = client.post(reverse("reviewer:decide", args=["colours", murky.pk]), {"label": green.pk})
    assert response.status_code == 302
    murky.refresh_from_db()
    assert murky.status == Item.Status.REVIEWED and murky.label == green and murky.labelled_by == world["reviewer"]
