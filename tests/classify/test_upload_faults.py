"""Uploads are idempotent and a fault after the commit never loses a stored upload: the image
stays, the answer is 201 (never 500), and a retry with the same Idempotency-Key gets the first
answer instead of a second item."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import Client
from django.urls import reverse

from classify import selectors
from classify.models import Item
from classify.services import intake, queueing
from tests.base import make_colour_project, make_user, solid_image

pytestmark = pytest.mark.django_db(transaction=True)  # on_commit hooks run as in production


@pytest.fixture
def uploader():
    user = make_user("uploader")
    project = make_colour_project(reviewer=user)
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client, project, user


def post(client, project, data: bytes, name: str = "red.png", key: str | None = None):
    from django.core.files.uploadedfile import SimpleUploadedFile

    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(reverse("api:project_items", args=[project.slug]),
                       {"image": SimpleUploadedFile(name, data, content_type="image/png")}, **headers)


def fail_once(original, exc: Exception):
    """``original``, except that its first call raises ``exc``."""
    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise exc
        return original(*args, **kwargs)

    return fail


class AfterCommitFaultTests:
    def test_a_failing_hand_over_after_commit_keeps_the_item_and_its_image(self, monkeypatch):
        """The on-commit hook used to raise into ingest_upload, which then deleted the image of
        a committed row (the item later ended failed with FileNotFoundError)."""
        def broken(item_id):
            raise OperationalError("terminating connection due to administrator command")

        monkeypatch.setattr(queueing, "hand_to_queue", broken)
        project = make_colour_project()

        item = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="red.png")

        stored = Item.objects.get(pk=item.pk)
        assert stored.status == Item.Status.RECEIVED  # the sweeper publishes it later
        assert stored.image.storage.exists(stored.image.name)

    def test_a_database_error_after_the_upload_is_stored_still_answers_201(self, uploader, monkeypatch):
        client, project, _ = uploader
        failing = fail_once(selectors.item_for, OperationalError("server closed the connection"))
        monkeypatch.setattr(selectors, "item_for", failing)

        response = post(client, project, solid_image((255, 0, 0)))

        assert response.status_code == 201, response.content
        item = Item.objects.get()
        assert response.json()["id"] == item.pk and response.json()["status"] == item.status
        assert item.image.storage.exists(item.image.name)

    def test_a_database_error_before_anything_is_stored_answers_503_not_500(self, uploader, monkeypatch):
        client, project, _ = uploader

        def down(*args, **kwargs):
            raise OperationalError("could not connect to server")

        monkeypatch.setattr(Item, "save", down)
        response = post(client, project, solid_image((255, 0, 0)))

        assert response.status_code == 503
        assert response.json()["error"] == "The database is unavailable; nothing was stored. Try again."
        assert not Item.objects.exists()


class IdempotencyKeyTests:
    def test_a_retried_upload_with_the_same_key_returns_the_first_answer(self, uploader):
        client, project, _ = uploader
        first = post(client, project, solid_image((255, 0, 0)), key="upload-7f3a")
        again = post(client, project, solid_image((255, 0, 0)), key="upload-7f3a")

        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert again["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
        assert Item.objects.count() == 1

    def test_without_a_key_a_second_upload_is_a_second_item(self, uploader):
        client, project, _ = uploader
        post(client, project, solid_image((255, 0, 0)))
        post(client, project, solid_image((255, 0, 0)))
        assert Item.objects.count() == 2

    def test_keys_are_per_user(self, uploader):
        client, project, _ = uploader
        other = make_user("other")
        project.memberships.create(user=other, role="reviewer")
        other_client = Client()
        other_client.force_login(other)
        mine = post(client, project, solid_image((255, 0, 0)), key="same-key").json()["id"]
        theirs = post(other_client, project, solid_image((0, 255, 0)), key="same-key").json()["id"]
        assert mine != theirs and Item.objects.count() == 2

    def test_a_refused_upload_is_refused_again_and_stores_nothing(self, uploader):
        client, project, _ = uploader
        for _ in range(2):
            response = post(client, project, b"not an image", name="x.png", key="k1")
            assert response.status_code == 400
        assert not Item.objects.exists()

    def test_a_key_that_is_too_long_is_refused(self, uploader):
        client, project, _ = uploader
        response = post(client, project, solid_image((255, 0, 0)), key="k" * 256)
        assert response.status_code == 400
        assert response.json()["error"] == "Idempotency-Key must be 1 to 255 printable characters."

    def test_two_uploads_racing_with_one_key_make_one_item(self, uploader, monkeypatch):
        """The second request missed the first one's row when it looked; the unique constraint
        catches it at insert, and it answers with the first item."""
        client, project, user = uploader
        first = post(client, project, solid_image((255, 0, 0)), key="race").json()["id"]
        looks = []
        real = intake.find_by_idempotency_key
        monkeypatch.setattr(intake, "find_by_idempotency_key",
                            lambda **kwargs: None if not looks.append(1) and len(looks) == 1 else real(**kwargs))

        again = post(client, project, solid_image((255, 0, 0)), key="race")

        assert again.status_code == 201 and again.json()["id"] == first
        assert again["Idempotent-Replayed"] == "true"
        assert Item.objects.count() == 1
        media = Path(settings.STORAGES["default"]["OPTIONS"]["location"])
        assert len([path for path in media.rglob("*") if path.is_file()]) == 1  # the loser's copy is gone
