"""The JSON API: upload, item status, listing; token and session auth; scoping."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from classify.auth import issue_token
from classify.models import Item
from tests.base import make_colour_project, make_user, solid_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast():
    admin = make_user("ada")
    reviewer = make_user("rey")
    outsider = make_user("otto")
    project = make_colour_project(admin=admin, reviewer=reviewer)
    other = make_colour_project("elsewhere", admin=outsider)
    return {"admin": admin, "reviewer": reviewer, "outsider": outsider, "project": project, "other": other}


def upload(client: Client, slug: str, data: bytes, name: str = "a.png", **headers):
    from django.core.files.uploadedfile import SimpleUploadedFile

    url = reverse("api:project_items", args=[slug])
    return client.post(url, {"image": SimpleUploadedFile(name, data)}, **headers)


def token_headers(user) -> dict:
    return {"HTTP_AUTHORIZATION": f"Token {issue_token(user)}"}


class UploadTests:
    def test_a_token_upload_answers_201_and_the_item_is_classified(self, cast, django_capture_on_commit_callbacks):
        client = Client(enforce_csrf_checks=True)
        with django_capture_on_commit_callbacks(execute=True):
            response = upload(client, "colours", solid_image((255, 0, 0)), **token_headers(cast["reviewer"]))
        assert response.status_code == 201
        body = response.json()
        assert body["status"] in {"received", "queued"}  # the worker runs after the response is built
        detail = client.get(reverse("api:item_detail", args=[body["id"]]), **token_headers(cast["reviewer"]))
        data = detail.json()
        assert data["status"] == "auto_accepted" and data["label"] == "red"
        assert data["scores"]["red"] > 0.9 and set(data["scores"]) == {"red", "green", "blue", "unknown"}
        assert data["decision"]["outcome"] == "auto_accepted"
        assert data["decision"]["thresholds"]["red"]["threshold"] == 0.8
        assert data["decision"]["backend"] == "colour"

    def test_a_session_upload_needs_the_csrf_token(self, cast):
        client = Client(enforce_csrf_checks=True)
        client.force_login(cast["reviewer"])
        response = upload(client, "colours", solid_image((255, 0, 0)))
        assert response.status_code == 403
        assert "CSRF" in response.json()["error"]
        assert not Item.objects.exists()
        client.get(reverse("classify:project", args=["colours"]))  # sets the CSRF cookie
        token = client.cookies["csrftoken"].value
        assert upload(client, "colours", solid_image((255, 0, 0)), HTTP_X_CSRFTOKEN=token).status_code == 201

    def test_without_credentials_it_answers_401_json(self, cast):
        response = upload(Client(), "colours", solid_image((255, 0, 0)))
        assert response.status_code == 401
        assert "Authentication required" in response.json()["error"]

    def test_a_revoked_or_made_up_token_answers_401(self, cast):
        response = upload(Client(), "colours", solid_image((255, 0, 0)), HTTP_AUTHORIZATION="Token nope")
        assert response.status_code == 401

    def test_another_projects_slug_answers_404(self, cast):
        response = upload(Client(), "elsewhere", solid_image((255, 0, 0)), **token_headers(cast["reviewer"]))
        assert response.status_code == 404
        assert response.json() == {"error": "Not found (or not yours to see)."}

    def test_a_bad_file_answers_400_with_the_reason(self, cast):
        response = upload(Client(), "colours", b"GIF89a not really", "evil.gif", **token_headers(cast["reviewer"]))
        assert response.status_code == 400
        assert "damaged or truncated" in response.json()["error"] or "not an image" in response.json()["error"]
        assert not Item.objects.exists()

    def test_a_missing_file_answers_400(self, cast):
        url = reverse("api:project_items", args=["colours"])
        response = Client().post(url, {}, **token_headers(cast["reviewer"]))
        assert response.status_code == 400
        assert "exactly one file" in response.json()["error"]

    def test_an_oversized_file_answers_400_before_it_is_decoded(self, cast, settings):
        settings.LOUPE_MAX_UPLOAD_BYTES = 1000
        response = upload(Client(), "colours", solid_image((255, 0, 0), size=(800, 800), fmt="BMP"),
                          **token_headers(cast["reviewer"]))
        assert response.status_code == 400
        assert response.json()["error"] == "The file is larger than the limit of 1,000 bytes."

    def test_other_methods_answer_405(self, cast):
        url = reverse("api:project_items", args=["colours"])
        assert Client().delete(url, **token_headers(cast["reviewer"])).status_code == 405


class ReadTests:
    def test_item_detail_is_scoped_to_the_users_projects(self, cast, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            item_id = upload(Client(), "colours", solid_image((0, 0, 255)), **token_headers(cast["admin"])).json()["id"]
        url = reverse("api:item_detail", args=[item_id])
        assert Client().get(url, **token_headers(cast["reviewer"])).status_code == 200
        assert Client().get(url, **token_headers(cast["outsider"])).status_code == 404
        assert Client().get(url).status_code == 401

    def test_listing_filters_by_ids_and_status(self, cast, django_capture_on_commit_callbacks):
        headers = token_headers(cast["admin"])
        with django_capture_on_commit_callbacks(execute=True):
            red = upload(Client(), "colours", solid_image((255, 0, 0)), **headers).json()["id"]
            murky = upload(Client(), "colours", solid_image((120, 60, 60)), **headers).json()["id"]
        url = reverse("api:project_items", args=["colours"])
        both = Client().get(url, {"ids": f"{red},{murky}"}, **headers).json()["items"]
        assert {item["id"] for item in both} == {red, murky}
        review = Client().get(url, {"status": "needs_review"}, **headers).json()["items"]
        assert [item["id"] for item in review] == [murky]
        assert Client().get(url, {"status": "bogus"}, **headers).status_code == 400
        assert Client().get(url, {"ids": "1,x"}, **headers).status_code == 400
