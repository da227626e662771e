"""API tokens narrowed by project, to reading and in time; listed and revoked on the user's page;
an item's image_url fetchable with the token that listed it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from classify.auth import issue_token
from classify.models import ApiToken
from tests.base import make_colour_project, make_review_item, make_user, noisy_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast():
    reviewer = make_user("rey")
    first = make_colour_project("first", reviewer=reviewer)
    second = make_colour_project("second", reviewer=reviewer)
    return {"reviewer": reviewer, "first": first, "second": second,
            "item": make_review_item(first), "other_item": make_review_item(second, sha256="e" * 64)}


def auth(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


def upload(client: Client, slug: str, key: str):
    return client.post(reverse("api:project_items", args=[slug]),
                       {"image": SimpleUploadedFile("a.png", noisy_image((200, 10, 10), seed=1))}, **auth(key))


class ScopeTests:
    def test_a_project_token_sees_only_its_project(self, cast):
        key = issue_token(cast["reviewer"], project=cast["first"])
        client = Client()
        assert client.get(reverse("api:project_items", args=["first"]), **auth(key)).status_code == 200
        assert client.get(reverse("api:project_items", args=["second"]), **auth(key)).status_code == 404
        assert client.get(reverse("api:item_detail", args=[cast["other_item"].pk]), **auth(key)).status_code == 404
        assert client.get(reverse("classify:item_image", args=[cast["other_item"].pk]), **auth(key)).status_code == 404
        assert client.post(reverse("review_api:claim", args=["second"]), **auth(key)).status_code == 404
        assert client.post(reverse("review_api:claim", args=["first"]), **auth(key)).status_code == 200

    def test_a_project_token_cannot_touch_a_lease_in_another_project(self, cast):
        from reviewer import services as review

        leased = review.claim_many(project=cast["second"], reviewer=cast["reviewer"], limit=1)[0]
        key = issue_token(cast["reviewer"], project=cast["first"])
        client = Client()
        url = reverse("review_api:decision", args=[leased.lease_token])
        response = client.post(url, {"labels": ["red"]}, content_type="application/json", **auth(key))
        assert response.status_code == 409
        renewed = client.post(reverse("review_api:renew"), {"tokens": [str(leased.lease_token)]},
                              content_type="application/json", **auth(key))
        assert renewed.json()["renewed"] == []

    def test_a_token_for_a_project_the_user_is_not_in_is_refused(self, cast):
        with pytest.raises(ValueError):
            issue_token(cast["reviewer"], project=make_colour_project("foreign"))


class ReadOnlyTests:
    def test_a_read_only_token_reads_but_never_writes(self, cast):
        key = issue_token(cast["reviewer"], read_only=True)
        client = Client()
        assert client.get(reverse("api:item_detail", args=[cast["item"].pk]), **auth(key)).status_code == 200
        response = upload(client, "first", key)
        assert response.status_code == 403 and response.json() == {"error": "This API token is read-only."}
        assert client.post(reverse("review_api:claim", args=["first"]), **auth(key)).status_code == 403
        cast["item"].refresh_from_db()
        assert cast["item"].lease_owner is None

    def test_a_read_write_token_uploads(self, cast, django_capture_on_commit_callbacks):
        with django_capture_on_commit_callbacks(execute=True):
            assert upload(Client(), "first", issue_token(cast["reviewer"])).status_code == 201


class ExpiryTests:
    def test_an_expired_token_answers_401(self, cast):
        key = issue_token(cast["reviewer"], expires_at=timezone.now() - timedelta(seconds=1))
        response = Client().get(reverse("api:item_detail", args=[cast["item"].pk]), **auth(key))
        assert response.status_code == 401 and "expired" in response.json()["error"]

    def test_a_token_works_until_it_expires(self, cast):
        key = issue_token(cast["reviewer"], expires_at=timezone.now() + timedelta(hours=1))
        assert Client().get(reverse("api:item_detail", args=[cast["item"].pk]), **auth(key)).status_code == 200


class ImageUrlTests:
    def test_the_image_url_of_an_item_is_fetchable_with_the_same_token(self, cast):
        key = issue_token(cast["reviewer"], read_only=True)
        client = Client()
        image_url = client.get(reverse("api:item_detail", args=[cast["item"].pk]), **auth(key)).json()["image_url"]
        response = client.get(image_url, **auth(key))
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
        assert b"".join(response.streaming_content)[:3] == b"\xff\xd8\xff"

    def test_without_a_token_or_session_the_image_redirects_to_login(self, cast):
        response = Client().get(reverse("classify:item_image", args=[cast["item"].pk]))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]

    def test_a_bad_token_on_the_image_answers_401(self, cast):
        response = Client().get(reverse("classify:item_image", args=[cast["item"].pk]), **auth("made-up"))
        assert response.status_code == 401


class AccountPageTests:
    def test_a_user_creates_sees_and_revokes_their_tokens(self, cast):
        client = Client()
        client.force_login(cast["reviewer"])
        page = client.post(reverse("classify:account"), {"action": "create", "name": "nightly import",
                                                         "project": cast["first"].pk, "read_only": "on",
                                                         "expires": "7"})
        assert page.status_code == 200 and page["Cache-Control"] == "private, no-store"
        key = page.context["new_key"]
        token = ApiToken.objects.get(user=cast["reviewer"])
        assert (token.name, token.project, token.read_only) == ("nightly import", cast["first"], True)
        assert timedelta(days=6) < token.expires_at - timezone.now() <= timedelta(days=7)
        assert key.encode() in page.content
        listing = client.get(reverse("classify:account"))
        assert b"nightly import" in listing.content and key.encode() not in listing.content  # shown once
        assert Client().get(reverse("api:item_detail", args=[cast["item"].pk]), **auth(key)).status_code == 200
        client.post(reverse("classify:account"), {"action": "revoke", "token": token.pk})
        assert Client().get(reverse("api:item_detail", args=[cast["item"].pk]), **auth(key)).status_code == 401

    def test_the_project_choices_are_the_users_projects(self, cast):
        make_colour_project("foreign")
        client = Client()
        client.force_login(cast["reviewer"])
        choices = client.get(reverse("classify:account")).context["form"].fields["project"].queryset
        assert sorted(choices.values_list("slug", flat=True)) == ["first", "second"]
        response = client.post(reverse("classify:account"), {"action": "create", "project": 99999})
        assert response.status_code == 200 and not ApiToken.objects.exists()

    def test_nobody_revokes_another_users_token(self, cast):
        key = issue_token(cast["reviewer"])
        mallory = make_user("mallory")
        client = Client()
        client.force_login(mallory)
        client.post(reverse("classify:account"), {"action": "revoke", "token": ApiToken.objects.get().pk})
        assert Client().get(reverse("api:item_detail", args=[cast["item"].pk]), **auth(key)).status_code == 200
