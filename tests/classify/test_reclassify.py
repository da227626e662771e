"""Re-classifying a project's items with its current backend (a backfill), for project admins:
the estimate with the budget it would cross before it starts, then every paid call under the
budgets as usual. Rekognition is botocore's Stubber on the real client; the clock is the test's."""

from __future__ import annotations

import html
from decimal import Decimal

import pytest
from botocore.stub import Stubber
from django.test import Client
from django.urls import reverse

from classify import aws
from classify.models import Budget, Item
from tests.base import make_user
from tests.classify.conftest import Clock
from tests.classify.test_backend_rekognition import CAT_PHOTO, REGION, expected, make_pets_project
from tests.classify.test_bakeoff_budgets import labelled_cats
from tests.classify.test_retrain import admin_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(monkeypatch)
    clock.advance(hours=12)  # 22:00 UTC on 2026-11-21
    return clock


def decided_by(project, backend: str, items: list[Item], status=Item.Status.AUTO_ACCEPTED) -> None:
    Item.objects.filter(pk__in=[item.pk for item in items]).update(status=status, backend=backend)


class ReclassifyTests:
    def test_the_estimate_names_the_budget_it_would_cross_and_the_rest_waits_for_it(
        self, aws_env, clock, later, django_capture_on_commit_callbacks
    ):
        project = make_pets_project(price_per_call=0.004)
        reviewed, *machine = labelled_cats(project, 5)  # all reviewed by a person at first
        decided_by(project, "local", machine[:2])
        decided_by(project, "local", machine[2:3], status=Item.Status.NEEDS_REVIEW)
        decided_by(project, "rekognition", machine[3:])  # already on the current backend
        Budget.objects.create(project=project, backend="rekognition", period="day", limit_usd=Decimal("0.01"))
        client, _ = admin_client(project)
        url = reverse("classify:reclassify", args=[project.slug])

        page = html.unescape(client.get(url, {"scope": "other_backend"}).content.decode())
        assert ("3 item(s) for rekognition at about $0.0040 each: about $0.01 (identical pictures cost nothing). "
                "Budgets: the project pets's daily budget of $0.01 for rekognition has $0.01 left, about 2 call(s): "
                "the rest wait until 2026-11-22 00:00 UTC.") in page
        assert "Re-classify 3 item(s)" in page
        page = html.unescape(client.get(url, {"scope": "machine"}).content.decode())
        assert "4 item(s) for rekognition" in page  # the reviewed item is never sent

        with Stubber(aws.client("rekognition", REGION)) as stub:
            for _ in range(2):
                stub.add_response("detect_labels", CAT_PHOTO, expected())
            with django_capture_on_commit_callbacks(execute=True):
                response = client.post(url, {"scope": "other_backend"}, follow=True)
            stub.assert_no_pending_responses()
        assert "3 item(s) will be re-classified with rekognition" in response.content.decode()
        statuses = {item.pk: Item.objects.get(pk=item.pk).status for item in machine[:3]}
        assert sorted(statuses.values()) == [Item.Status.AUTO_ACCEPTED] * 2 + [Item.Status.QUEUED]
        waiting = next(Item.objects.get(pk=pk) for pk, status in statuses.items() if status == Item.Status.QUEUED)
        assert waiting.status_reason.startswith("Waiting: the project pets's daily budget of $0.01 for rekognition")
        assert later == [(waiting.pk, 7201.0)]
        reviewed.refresh_from_db()
        assert reviewed.status == Item.Status.REVIEWED and reviewed.predictions.count() == 0
        assert Item.objects.get(pk=machine[3].pk).predictions.count() == 0

    def test_only_project_admins_reclassify_and_a_bad_scope_is_explained(self, aws_env):
        project = make_pets_project(price_per_call=0.004)
        url = reverse("classify:reclassify", args=[project.slug])
        outsider = Client()
        outsider.force_login(make_user("eve"))
        assert outsider.get(url).status_code in (403, 404)
        client, _ = admin_client(project)
        response = client.post(url, {"scope": "everything"}, follow=True)
        assert response.status_code == 200 and "Choose which items to re-classify." in response.content.decode()
        response = client.post(url, {"scope": "machine"}, follow=True)
        assert "No item to re-classify: nothing was queued." in response.content.decode()
