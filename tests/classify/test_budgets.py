"""Cloud budgets: a budget crossed mid-batch leaves the rest queued with the reason and resumes the
next day (the clock set by the test), the local fallback, the 80%/100% alerts, the pages.
Rekognition is botocore's Stubber on the real client."""

from __future__ import annotations

import html
import io
import logging
from decimal import Decimal

import pytest
from django.urls import reverse

from classify import tasks
from classify.models import Budget, Event, Item, Project
from tests.base import noisy_image
from tests.classify.test_backend_rekognition import CAT_PHOTO, expected, make_pets_project, upload
from tests.classify.test_retrain import admin_client

pytestmark = pytest.mark.django_db


def batch(project, django_capture_on_commit_callbacks, n: int) -> list[Item]:
    """``n`` different pictures (no reuse between them)."""
    return [upload(project, django_capture_on_commit_callbacks, noisy_image((200, 120, 40), seed=i, size=(160, 120)))
            for i in range(n)]


class BudgetTests:
    def test_a_budget_crossed_mid_batch_leaves_the_rest_queued_and_resumes_the_next_day(
        self, rekognition_stub, clock, later, caplog, django_capture_on_commit_callbacks
    ):
        clock.advance(hours=12)  # 22:00 UTC on 2026-11-21
        project = make_pets_project(price_per_call=0.004)
        Budget.objects.create(project=project, backend="rekognition", period="day", limit_usd=Decimal("0.01"))
        for _ in range(2):
            rekognition_stub.add_response("detect_labels", CAT_PHOTO, expected())
        with caplog.at_level(logging.WARNING, logger="classify.services.budgets"):
            items = batch(project, django_capture_on_commit_callbacks, 4)

        assert [item.status for item in items] == [Item.Status.AUTO_ACCEPTED] * 2 + [Item.Status.QUEUED] * 2
        reason = ("Waiting: the project pets's daily budget of $0.01 for rekognition is used up; "
                  "resumes 2026-11-22 00:00 UTC.")
        assert [item.status_reason for item in items[2:]] == [reason, reason]
        assert [item.attempts for item in items[2:]] == [0, 0]
        assert later == [(items[2].pk, 7201.0), (items[3].pk, 7201.0)]  # two hours to midnight, plus a second
        # 2 × $0.004 = 80% of the budget: one alert (log, event), and the banner on the project page.
        assert "budget alert: pets reached 80% of the project pets's daily budget" in caplog.text
        alert = Event.objects.get(type=Event.Type.BUDGET_ALERT)
        assert alert.data["budget"]["level"] == 80 and alert.data["budget"]["spent_usd"] == "0.008000"
        client, _ = admin_client(project)
        page = html.unescape(client.get(reverse("classify:project", args=[project.slug])).content.decode())
        assert "Budget 80% used:" in page and reason in page

        clock.advance(hours=2, seconds=1)  # the next day: the waiting items go through
        for _ in range(2):
            rekognition_stub.add_response("detect_labels", CAT_PHOTO, expected())
        for item in items[2:]:
            tasks.classify_item.apply(args=(item.pk,))
            item.refresh_from_db()
            assert item.status == Item.Status.AUTO_ACCEPTED and item.attempts == 1

    def test_reaching_the_limit_alerts_once_at_100_percent_and_a_monthly_installation_budget_counts_every_project(
        self, rekognition_stub, clock, later, django_capture_on_commit_callbacks
    ):
        project = make_pets_project(price_per_call=0.004)
        Budget.objects.create(project=None, backend="rekognition", period="month", limit_usd=Decimal("0.008"))
        for _ in range(2):
            rekognition_stub.add_response("detect_labels", CAT_PHOTO, expected())
        items = batch(project, django_capture_on_commit_callbacks, 3)
        assert items[2].status == Item.Status.QUEUED
        assert items[2].status_reason == ("Waiting: the installation's monthly budget of $0.01 for rekognition is "
                                          "used up; resumes 2026-12-01 00:00 UTC.")
        levels = [event.data["budget"]["level"] for event in Event.objects.filter(type=Event.Type.BUDGET_ALERT)]
        assert levels == [100]  # the first call is 50%; the second reaches 100% (80% is passed at once)
        page = html.unescape(admin_client(project)[0].get(reverse("classify:backends", args=[project.slug])).content.decode())
        assert "Budget used up:" in page and "Items wait, queued, until 2026-12-01 00:00 UTC." in page

    def test_a_project_that_falls_back_is_answered_by_the_local_model(
        self, rekognition_stub, clock, later, django_capture_on_commit_callbacks
    ):
        project = make_pets_project(price_per_call=0.004)
        Project.objects.filter(pk=project.pk).update(over_budget=Project.OverBudget.LOCAL)
        project.refresh_from_db()
        Budget.objects.create(project=project, backend="rekognition", period="day", limit_usd=Decimal("0.001"))
        item = batch(project, django_capture_on_commit_callbacks, 1)[0]  # no detect_labels: the Stubber has none
        prediction = item.predictions.get()
        assert prediction.backend == "local" and prediction.cost_usd == 0
        assert prediction.reason.endswith("(local model: the project pets's daily budget of $0.00 for rekognition "
                                          "is used up)")
        assert item.status in (Item.Status.AUTO_ACCEPTED, Item.Status.NEEDS_REVIEW) and later == []


class BudgetPageTests:
    def test_an_admin_sets_a_budget_chooses_the_fallback_and_sees_the_bakeoff_estimate(self, clock, aws_env):
        project = make_pets_project(price_per_call=0.004)
        client, _ = admin_client(project)
        url = reverse("classify:backends", args=[project.slug])
        client.post(url, {"action": "budget", "backend": "rekognition", "period": "month", "limit_usd": "25"})
        budget = Budget.objects.get()
        assert (budget.project, budget.period, budget.limit_usd) == (project, "month", Decimal("25"))
        client.post(url, {"action": "over_budget", "over_budget": "local"})
        project.refresh_from_db()
        assert project.over_budget == "local"
        for n in range(3):
            Item.objects.create(project=project, sha256=f"{n:064}", status=Item.Status.REVIEWED, width=1, height=1,
                                label=project.labels.get(name="cat"))
        page = html.unescape(client.get(url).content.decode())
        assert "Estimated cost of a bake-off over all 3 labelled items" in page
        assert "<td>rekognition</td><td>$0.0040</td><td>$0.01</td>" in page
        refused = client.post(url, {"action": "delete_budget", "budget": "x"}, follow=True)  # nothing removed, no error
        assert Budget.objects.exists() and "nothing removed" in refused.content.decode()
        removed = client.post(url, {"action": "delete_budget", "budget": str(budget.pk)}, follow=True)
        assert not Budget.objects.exists() and "Budget removed." in removed.content.decode()

    def test_reused_scores_are_never_held_back_and_installation_budgets_are_for_superusers(
        self, rekognition_stub, clock, later, django_capture_on_commit_callbacks
    ):
        project = make_pets_project(price_per_call=0.004)
        rekognition_stub.add_response("detect_labels", CAT_PHOTO, expected())
        first = batch(project, django_capture_on_commit_callbacks, 1)[0]
        Budget.objects.create(project=project, backend="rekognition", period="day", limit_usd=Decimal("0.004"))
        again = batch(project, django_capture_on_commit_callbacks, 1)[0]  # the same picture: reused, free
        assert first.status == again.status == Item.Status.AUTO_ACCEPTED
        assert again.predictions.get().reused_from is not None and later == []

        client, admin = admin_client(project)
        admin.is_staff = True
        admin.save()
        assert client.get(reverse("admin:classify_budget_add")).status_code == 403
        admin.is_superuser = True
        admin.save()
        client.post(reverse("admin:classify_budget_add"), {"backend": "bedrock", "period": "month", "limit_usd": "100"})
        assert Budget.objects.get(backend="bedrock").project is None


class ImportEstimateTests:
    def test_the_integrations_page_and_the_import_command_say_what_it_costs_and_which_budget_it_crosses(
        self, aws_env, clock, tmp_path
    ):
        from django.core.management import call_command

        project = make_pets_project(price_per_call=0.004)
        Budget.objects.create(project=None, backend="rekognition", period="day", limit_usd=Decimal("5"))
        Budget.objects.create(project=project, backend="rekognition", period="month", limit_usd=Decimal("0.006"))
        sentence = ("Imported images are classified by rekognition: about $0.0040 per new image ($4.00 per 1,000); "
                    "identical pictures cost nothing.")
        budgets = ("Budgets: the installation's daily budget of $5.00 for rekognition {0}; the project pets's "
                   "monthly budget of $0.01 for rekognition has $0.01 left, about 1 call(s): the rest wait until "
                   "2026-12-01 00:00 UTC.")
        page = html.unescape(admin_client(project)[0].get(reverse("integrations:page", args=[project.slug]))
                             .content.decode())
        assert f"{sentence} {budgets.format('has $5.00 left, about 1,250 call(s): the rest wait until 2026-11-22 00:00 UTC')}" in page
        for n in range(2):
            (tmp_path / f"{n}.png").write_bytes(noisy_image((200, 120, 40), seed=n))
        out = io.StringIO()
        call_command("import_images", str(tmp_path), project=project.slug, no_progress=True, stdout=out)
        assert out.getvalue().startswith(f"{sentence} 2 image(s): about $0.01 at most. "
                                         f"{budgets.format('allows it ($5.00 left)')}\n")
