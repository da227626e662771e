"""Every paid call counts against the budgets, a bake-off's included, and a bake-off waits for a
budget (the reason on the backends page) and goes on where it stopped when the next day begins
(the clock set by the test). Rekognition and Bedrock are botocore's Stubber on the real clients."""

from __future__ import annotations

import html
import io
from decimal import Decimal

import pytest
from botocore.stub import ANY, Stubber
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from classify import aws, bakeoff, tasks
from classify.models import BakeoffRun, Budget, Event, Item, Spend
from classify.services import budgets, intake
from tests.base import noisy_image
from tests.classify.conftest import Clock
from tests.classify.test_backend_rekognition import CAT_PHOTO, REGION, expected, make_pets_project
from tests.classify.test_retrain import admin_client

pytestmark = pytest.mark.django_db
WAITING = ("Waiting: the project pets's daily budget of $0.01 for rekognition is used up; "
           "resumes 2026-11-22 00:00 UTC.")


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(monkeypatch)
    clock.advance(hours=12)  # 22:00 UTC on 2026-11-21
    return clock


@pytest.fixture
def stub(aws_env):
    with Stubber(aws.client("rekognition", REGION)) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def labelled_cats(project, n: int) -> list[Item]:
    """``n`` different pictures a person labelled cat (never classified: no on_commit here)."""
    items = [intake.ingest_upload(project=project, data=noisy_image((200, 120, 40), seed=i, size=(160, 120)),
                                  filename=f"{i}.png") for i in range(n)]
    Item.objects.filter(pk__in=[item.pk for item in items]).update(
        status=Item.Status.REVIEWED, label=project.labels.get(name="cat"))
    return items


class BakeoffBudgetTests:
    def test_a_bakeoff_waits_for_the_budget_with_the_reason_and_resumes_the_next_day_where_it_stopped(
        self, stub, clock, django_capture_on_commit_callbacks
    ):
        project = make_pets_project(price_per_call=0.004)
        labelled_cats(project, 4)
        Budget.objects.create(project=project, backend="rekognition", period="day", limit_usd=Decimal("0.01"))
        client, admin = admin_client(project)
        url = reverse("classify:backends", args=[project.slug])
        page = html.unescape(client.get(url).content.decode())
        assert ("the project pets's daily budget of $0.01 for rekognition has $0.01 left, about 2 call(s): "
                "the rest wait until 2026-11-22 00:00 UTC.") in page  # the estimate, before it starts

        for _ in range(2):
            stub.add_response("detect_labels", CAT_PHOTO, expected())
        with django_capture_on_commit_callbacks(execute=True):
            client.post(url, {"backends": ["rekognition"], "sample": "", "configs": ""})
        run = BakeoffRun.objects.get()
        assert run.state == BakeoffRun.State.WAITING and run.resume_at.isoformat() == "2026-11-22T00:00:00+00:00"
        assert run.waiting_reason == f"{WAITING} Scored so far: rekognition: 2 of 4."
        assert [s.cost_usd for s in Spend.objects.filter(kind=Spend.Kind.BAKEOFF)] == [Decimal("0.004")] * 2
        status = budgets.status_of(Budget.objects.get(), timezone.now())
        assert status.spent == Decimal("0.008")  # the bake-off's calls are the budget's spend
        assert Event.objects.get(type=Event.Type.BUDGET_ALERT).data["budget"]["level"] == 80
        page = html.unescape(client.get(url).content.decode())
        assert "Waiting for a budget" in page and run.waiting_reason in page and "Budget 80% used:" in page
        assert "Paid calls that left no prediction (counted by the budgets too):\n  2 rekognition call(s): bake-off, $0.0080." in page

        clock.advance(hours=1)  # still the same day: the sweeper leaves it waiting
        assert bakeoff.resume_waiting_bakeoffs() == 0
        clock.advance(hours=1, seconds=1)  # the next day: the sweeper queues it, the worker finishes it
        for _ in range(2):
            stub.add_response("detect_labels", CAT_PHOTO, expected())
        with django_capture_on_commit_callbacks(execute=True):
            tasks.sweep()
        run.refresh_from_db()
        assert run.state == BakeoffRun.State.DONE and run.progress == {} and run.waiting_reason == ""
        (report,) = run.results
        assert (report["images"], report["errors"], report["accuracy"]) == (4, 0, 1.0)  # 2 kept + 2 new, none twice
        assert Spend.objects.filter(kind=Spend.Kind.BAKEOFF).count() == 4

    def test_the_command_says_the_bakeoff_waits_and_a_free_backend_never_does(self, stub, clock):
        project = make_pets_project(price_per_call=0.004)
        labelled_cats(project, 2)
        Budget.objects.create(project=None, backend="rekognition", period="month", limit_usd=Decimal("0.001"))
        out = io.StringIO()
        call_command("bakeoff", "--project", project.slug, "--backends", "rekognition,local",
                     "--config", 'local={"mode": "zero_shot"}', stdout=out)  # the Stubber has no response: no call
        assert ("rekognition: $0.0040 per call, $0.01 for 2 item(s); the installation's monthly budget of $0.00 "
                "for rekognition has $0.00 left, about 0 call(s): the rest wait until 2026-12-01 00:00 UTC.") in out.getvalue()
        assert ("waiting: the installation's monthly budget of $0.00 for rekognition is used up; resumes "
                "2026-12-01 00:00 UTC. Scored so far: rekognition: 0 of 2. The worker's sweeper resumes it") in out.getvalue()
        assert not Spend.objects.exists()
        out = io.StringIO()
        call_command("bakeoff", "--project", project.slug, "--backends", "local",
                     "--config", 'local={"mode": "zero_shot"}', stdout=out)
        assert BakeoffRun.objects.first().state == BakeoffRun.State.DONE


BEDROCK_REGION = "us-east-1"


class BilledFailureTests:
    def test_two_bad_bedrock_replies_are_billed_and_count_against_the_budget(
        self, aws_env, clock, django_capture_on_commit_callbacks
    ):
        from classify.models import Project

        project = make_pets_project()
        Project.objects.filter(pk=project.pk).update(backend="bedrock", backend_config={"region": BEDROCK_REGION})
        project.refresh_from_db()
        budget = Budget.objects.create(project=project, backend="bedrock", period="day", limit_usd=Decimal("1"))
        prose = {"output": {"message": {"role": "assistant", "content": [{"text": "It is a cat, I think."}]}},
                 "stopReason": "end_turn", "usage": {"inputTokens": 2000, "outputTokens": 100, "totalTokens": 2100},
                 "metrics": {"latencyMs": 300}}
        with Stubber(aws.client("bedrock-runtime", BEDROCK_REGION)) as stubber:
            for _ in range(2):
                stubber.add_response("converse", prose, {"modelId": ANY, "messages": ANY, "system": ANY,
                                                         "inferenceConfig": ANY})
            with django_capture_on_commit_callbacks(execute=True):
                item = intake.ingest_upload(project=project, data=noisy_image((200, 120, 40), seed=1), filename="a.png")
            stubber.assert_no_pending_responses()
        item.refresh_from_db()
        assert item.status == Item.Status.NEEDS_REVIEW and not item.predictions.exists()
        spend = Spend.objects.get()
        # 4,000 input tokens at $0.00025 / 1k and 200 output tokens at $0.00125 / 1k
        assert (spend.kind, spend.backend, spend.cost_usd) == (Spend.Kind.FAILED_CALL, "bedrock", Decimal("0.00125"))
        assert budgets.status_of(budget, timezone.now()).spent == Decimal("0.00125")


class ComparisonSpendTests:
    def test_a_candidate_models_paid_calls_in_the_comparison_count_against_the_budgets(self, aws_env):
        from classify.backends import ClassSpec
        from classify.backends.custom_labels import CustomLabelsBackend
        from classify.retrain.compare import compare_candidate
        from tests.classify.test_retrain import PROJECT_ARN, add_item, digit_images, make_digits_project

        project = make_digits_project()
        items = [add_item(project, data, label=None, n=n) for n, (_, data) in enumerate(digit_images((0,), 2))]
        arn = f"{PROJECT_ARN.rsplit('/', 1)[0]}/version/v2/1763720000000"
        labels = list(project.labels.all())
        candidate = CustomLabelsBackend(
            classes=[ClassSpec(label.name, is_unknown=label.is_unknown) for label in labels],
            config={"project_version_arn": arn, "price_per_call": 0.002})
        budget = Budget.objects.create(project=project, backend="custom_labels", period="month", limit_usd=Decimal("1"))
        with Stubber(aws.client("rekognition", "us-east-1")) as stubber:
            for _ in items:
                stubber.add_response("detect_custom_labels", {"CustomLabels": [{"Name": "zero", "Confidence": 90.0}]},
                                     {"ProjectVersionArn": arn, "Image": {"Bytes": ANY}, "MinConfidence": 0})
            compare_candidate(project=project, candidate=candidate, items=items, labels=labels)
            stubber.assert_no_pending_responses()
        assert [(s.kind, s.cost_usd) for s in Spend.objects.all()] == [(Spend.Kind.COMPARISON, Decimal("0.002"))] * 2
        assert budgets.status_of(budget, timezone.now()).spent == Decimal("0.004")


class AllowanceTests:
    def test_a_long_run_reads_the_spend_once_every_reread_calls_adds_its_own_between_and_alerts_on_time(
        self, aws_env, clock, monkeypatch
    ):
        from classify.services.scoring import build_backend

        project = make_pets_project(price_per_call=0.004)
        Budget.objects.create(project=project, backend="rekognition", period="day", limit_usd=Decimal("0.02"))
        reads, real = [], budgets.status_of
        monkeypatch.setattr(budgets, "status_of", lambda budget, now: reads.append(now) or real(budget, now))
        allowance = budgets.Allowance(project, build_backend(project, list(project.labels.all())),
                                      kind=Spend.Kind.BAKEOFF, reread=3)
        calls = 0
        while allowance.blocked() is None:
            allowance.charge(0.004)
            calls += 1
        assert calls == 5  # 5 × $0.004 = $0.02: the sixth would cross
        assert len(reads) == 4  # before calls 1 and 4, and once for each alert (not before every call)
        assert sorted(e.data["budget"]["level"] for e in Event.objects.filter(type=Event.Type.BUDGET_ALERT)) == [80, 100]


class SpendDayTests:
    def test_a_budget_reads_the_daily_sums_and_the_migration_rebuilds_them_from_every_paid_call(
        self, stub, clock, django_capture_on_commit_callbacks
    ):
        import importlib

        from django.apps import apps as django_apps

        from classify.models import SpendDay

        project = make_pets_project(price_per_call=0.004)
        budget = Budget.objects.create(project=None, backend="rekognition", period="month", limit_usd=Decimal("1"))
        stub.add_response("detect_labels", CAT_PHOTO, expected())
        with django_capture_on_commit_callbacks(execute=True):
            intake.ingest_upload(project=project, data=noisy_image((200, 120, 40), seed=1), filename="a.png")
        clock.advance(days=1)
        budgets.record_spend(project=project, backend="rekognition", cost_usd=0.003, kind=Spend.Kind.BAKEOFF)
        budgets.record_spend(project=project, backend="rekognition", cost_usd=0.002, kind=Spend.Kind.COMPARISON)
        days = {(row.day.isoformat(), row.cost_usd) for row in SpendDay.objects.all()}
        assert days == {("2026-11-21", Decimal("0.004")), ("2026-11-22", Decimal("0.005"))}
        assert budgets.status_of(budget, timezone.now()).spent == Decimal("0.009")

        SpendDay.objects.all().delete()  # as before the migration: rebuilt from the predictions and Spend rows
        importlib.import_module("classify.migrations.0020_spend_days").backfill(django_apps, None)
        assert {(row.day.isoformat(), row.cost_usd) for row in SpendDay.objects.all()} == days


class ResumeTests:
    def test_with_the_broker_down_a_due_bakeoff_stays_waiting_for_the_next_sweep(
        self, clock, monkeypatch, django_capture_on_commit_callbacks
    ):
        project = make_pets_project(price_per_call=0.004)
        run = BakeoffRun.objects.create(project=project, backends=["rekognition"], state=BakeoffRun.State.WAITING,
                                        waiting_reason=WAITING, resume_at=clock.now)

        def broker_down(*args, **kwargs):
            raise ConnectionRefusedError("broker unreachable")

        monkeypatch.setattr(bakeoff, "enqueue", broker_down)
        with django_capture_on_commit_callbacks(execute=True):
            assert bakeoff.resume_waiting_bakeoffs() == 1
        run.refresh_from_db()
        assert run.state == BakeoffRun.State.WAITING  # not "queued" with no message behind it
        sent = []
        monkeypatch.setattr(bakeoff, "enqueue", lambda name, *args: sent.append((name, args)))
        with django_capture_on_commit_callbacks(execute=True):
            assert bakeoff.resume_waiting_bakeoffs() == 1
        run.refresh_from_db()
        assert run.state == BakeoffRun.State.QUEUED and sent == [("classify.run_bakeoff", (run.pk,))]
