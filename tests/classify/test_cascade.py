"""The cascade ("cheap path first"): only the items the first stage is not confident about, and
that no settled near-duplicate answers, reach the paid backend (Rekognition, botocore's Stubber:
any call not queued fails the test)."""

from __future__ import annotations

import html
from decimal import Decimal

import pytest
from django.urls import reverse

from classify.models import Item, Label, Project
from tests.base import make_colour_project, noisy_image, photo_bytes
from tests.classify.test_backend_rekognition import REGION, detect_labels, expected, label, upload
from tests.classify.test_retrain import admin_client

pytestmark = pytest.mark.django_db
PAID = {"red": "Red", "green": "Green", "blue": "Blue"}


def paid_project(*, cascade: bool) -> Project:
    """Classes red/green/blue; the paid backend is Rekognition, the first stage the test's colour model."""
    project = make_colour_project("paints")
    for name, colour in (("red", "#ff0000"), ("green", "#00ff00"), ("blue", "#0000ff")):
        Label.objects.filter(project=project, name=name).update(mappings={"colour": [colour], "rekognition": [PAID[name]]})
    Project.objects.filter(pk=project.pk).update(backend="rekognition", cascade=cascade,
                                                 backend_config={"region": REGION, "price_per_call": 0.004})
    project.refresh_from_db()
    return project


class CascadeTests:
    def test_only_unconfident_items_reach_the_paid_backend_and_a_settled_near_duplicate_reuses_its_label(
        self, rekognition_stub, settings, django_capture_on_commit_callbacks
    ):
        settings.LOUPE_CASCADE_BACKEND = "colour"
        project = paid_project(cascade=True)
        rekognition_stub.add_response("detect_labels", detect_labels(label("Green", 96.0)), expected())  # the one paid call

        easy = upload(project, django_capture_on_commit_callbacks, noisy_image((250, 5, 5), seed=1))
        hard = upload(project, django_capture_on_commit_callbacks, photo_bytes("chelsea"))  # a cat: no clear colour
        twin = upload(project, django_capture_on_commit_callbacks, photo_bytes("chelsea", fmt="PNG"))  # same, re-saved

        assert easy.status == Item.Status.AUTO_ACCEPTED and easy.label.name == "red"
        first = easy.predictions.get()
        assert first.backend == "colour" and first.cost_usd == 0 and first.saved_usd == Decimal("0.004")
        assert first.reason.endswith("(first stage, confident: rekognition not called)")
        paid = hard.predictions.get()
        assert paid.backend == "rekognition" and paid.cost_usd == Decimal("0.004") and hard.label.name == "green"
        assert twin.near_duplicate_of_id == hard.pk
        reused = twin.predictions.get()
        assert twin.status == Item.Status.AUTO_ACCEPTED and twin.label.name == "green"
        assert reused.backend == "near_duplicate" and reused.saved_usd == Decimal("0.004")
        assert reused.reason.endswith(f"(near-duplicate of item #{hard.pk}, settled as green: rekognition not called)")

        page = html.unescape(admin_client(project)[0].get(reverse("classify:backends", args=[project.slug]))
                             .content.decode())
        assert "<td>a settled near-duplicate's label</td><td>1</td><td>0.0040</td>" in page
        assert "<td>the first stage (local model), confident</td><td>1</td><td>0.0040</td>" in page
        assert "<td>a paid backend</td><td>1</td>" in page

    def test_without_the_cascade_every_item_is_a_paid_call(self, rekognition_stub, settings, django_capture_on_commit_callbacks):
        settings.LOUPE_CASCADE_BACKEND = "colour"
        project = paid_project(cascade=False)
        rekognition_stub.add_response("detect_labels", detect_labels(label("Red", 96.0)), expected())
        item = upload(project, django_capture_on_commit_callbacks, noisy_image((250, 5, 5), seed=1))
        assert item.predictions.get().backend == "rekognition"

    def test_an_admin_turns_the_cascade_on_from_the_backends_page(self, aws_env):
        project = paid_project(cascade=False)
        client, _ = admin_client(project)
        client.post(reverse("classify:backends", args=[project.slug]),
                    {"action": "over_budget", "over_budget": "wait", "cascade": "on"})
        project.refresh_from_db()
        assert project.cascade
