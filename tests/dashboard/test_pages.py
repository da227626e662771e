"""The dashboard page, each plot (fragment and CSV), /metrics and its guard."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from classify.models import Prediction
from dashboard import selectors
from dashboard.selectors import model, people, quality, rollups
from dashboard.services.rollups import refresh_rollups, take_status_snapshot
from reviewer.models import Decision
from tests.base import make_colour_project, make_user
from tests.dashboard.helpers import seed_decision, seed_item

pytestmark = pytest.mark.django_db
AUTO = Prediction.Decision.AUTO_ACCEPTED


@pytest.fixture
def world():
    admin, reviewer, outsider = make_user("ada", is_staff=True), make_user("rey"), make_user("otto")
    project = make_colour_project(admin=admin, reviewer=reviewer)
    now = timezone.now()
    for hours_ago in range(0, 48, 6):
        at = now - timedelta(hours=hours_ago + 1)  # its decisions, minutes later, are in the past too
        seed_item(project, at=at, top_label="red", top_score=0.95, decision=AUTO, cost=0.001)
        audited = seed_item(project, at=at, top_label="red", top_score=0.91, decision=AUTO, audit=True, label="red")
        seed_decision(audited, reviewer, at=at + timedelta(minutes=4), label="red", seconds=2)
        wrong = seed_item(project, at=at, top_label="green", top_score=0.55, label="blue", reviews_needed=2)
        seed_decision(wrong, reviewer, at=at + timedelta(minutes=5), label="blue", seconds=6, agrees=True)
        seed_decision(wrong, admin, at=at + timedelta(minutes=6), label="green", seconds=9, agrees=False)
        seed_decision(wrong, reviewer, at=at + timedelta(minutes=7), kind=Decision.Kind.UNDO, seconds=None)
    refresh_rollups(since=now - timedelta(days=3))
    take_status_snapshot()
    return {"admin": admin, "reviewer": reviewer, "outsider": outsider, "project": project}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


class DashboardPageTests:
    def test_the_project_page_links_to_the_dashboard(self, world):
        page = signed_in(world["reviewer"]).get(reverse("classify:project", args=["colours"])).content.decode()
        assert reverse("dashboard:dashboard", args=["colours"]) in page

    def test_a_member_sees_a_placeholder_for_every_plot_in_every_section(self, world):
        page = signed_in(world["reviewer"]).get(reverse("dashboard:dashboard", args=["colours"])).content.decode()
        for _key, name, plots in selectors.SECTIONS:
            assert f">{name}</h2>" in page
            for plot in plots:
                assert reverse("dashboard:plot", args=["colours", plot]) in page
        assert set(selectors.PLOTS) == {plot for *_rest, plots in selectors.SECTIONS for plot in plots}

    def test_every_plot_has_an_svg_with_title_and_axis_labels_and_a_table(self, world):
        client = signed_in(world["reviewer"])
        for name in selectors.PLOTS:
            response = client.get(reverse("dashboard:plot", args=["colours", name]), {"days": 7})
            assert response.status_code == 200, name
            body = response.content.decode()
            assert '<svg class="chart"' in body and "<title" in body and 'class="axis-label"' in body, name
            assert "<table" in body and "format=csv" in body, name

    def test_outsiders_get_404_for_the_page_and_the_plots(self, world):
        client = signed_in(world["outsider"])
        assert client.get(reverse("dashboard:dashboard", args=["colours"])).status_code == 404
        assert client.get(reverse("dashboard:plot", args=["colours", "uploads"])).status_code == 404

    def test_an_unknown_plot_or_window_is_handled(self, world):
        client = signed_in(world["reviewer"])
        assert client.get(reverse("dashboard:plot", args=["colours", "nope"])).status_code == 404
        assert client.get(reverse("dashboard:plot", args=["colours", "uploads"]), {"days": "x"}).status_code == 200

    def test_the_csv_has_the_tables_numbers(self, world):
        response = signed_in(world["reviewer"]).get(reverse("dashboard:plot", args=["colours", "audit-precision"]),
                                                    {"days": 7, "format": "csv"})
        assert response["Content-Type"].startswith("text/csv")
        assert "attachment" in response["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert rows[0] == ["class", "checked", "confirmed", "precision", "95% low", "95% high"]
        assert rows[1][:4] == ["red", "8", "8", "100.0%"]

    def test_the_plots_show_the_seeded_numbers(self, world):
        project, span = world["project"], rollups.span_for(7)
        shares = model.class_shares(project, span)
        assert shares.headers[2:] == ["red", "green"]
        assert shares.rows[-1][2:] == ["66.7%", "33.3%"]
        undo = people.undo_rate(project, span).rows
        assert ["rey", 16, 0, 8, "50.0%"] in undo
        agreement = {row[0]: row[3] for row in quality.agreement(project, span).rows}
        assert agreement == {"everyone": "50.0%", "rey": "100.0%", "ada": "0.0%"}
        coverage = quality.precision_coverage(project, span)
        red = [row for row in coverage.rows if row[0] == "red" and row[1] == "0.90"][0]
        assert red[2:] == [8, 8, "100.0%", "100.0%"]


    @pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL sum of the bins is PostgreSQL's")
    def test_postgresql_adds_up_the_bins_as_python_does(self, world):
        project, span = world["project"], rollups.span_for(7)
        in_python = rollups.bin_totals_in_python(project, span, ["score", "reviewed", "correct"])
        assert in_python and rollups.bin_totals_in_sql(project, span, ["score", "reviewed", "correct"]) == in_python


class MetricsTests:
    def test_it_is_guarded_by_address_or_token(self, world, settings):
        settings.LOUPE_METRICS_ALLOW = ["127.0.0.1/32"]
        settings.LOUPE_METRICS_TOKEN = "s3cret"
        assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
        assert Client().get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404
        assert Client().get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer nope").status_code == 404
        ok = Client().get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret")
        assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")

    def test_without_a_token_only_the_allowlist_counts(self, world, settings):
        settings.LOUPE_METRICS_TOKEN = ""
        settings.LOUPE_METRICS_ALLOW = ["10.0.0.0/8"]
        assert Client().get("/metrics", REMOTE_ADDR="10.9.9.9").status_code == 200
        assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer ").status_code == 404

    def test_it_exports_items_queues_latency_cost_audit_and_workers(self, world):
        from classify.heartbeat import record_heartbeat

        record_heartbeat(name="celery@test", pid=1, started_at=timezone.now())
        body = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
        assert 'loupe_items{project="colours",status="auto_accepted"} 8.0' in body
        assert 'loupe_items{project="colours",status="reviewed"} 16.0' in body
        assert 'loupe_queue_oldest_age_seconds{project="colours"' not in body  # nothing waits
        assert 'loupe_classification_latency_seconds_bucket{backend="colour",le="0.025",project="colours"} 24.0' in body
        assert 'loupe_classification_latency_seconds_count{backend="colour",project="colours"} 24.0' in body
        assert 'loupe_backend_cost_usd_total{backend="colour",project="colours"} 0.008' in body
        assert 'loupe_audit_precision{class="red",project="colours"} 1.0' in body
        assert 'loupe_worker_heartbeat_age_seconds{kind="worker",worker="celery@test"}' in body
        assert "loupe_rollup_age_seconds " in body

    def test_it_exports_each_budgets_spend_in_its_current_period(self, world):
        from classify.services import budgets

        budget = budgets.set_budget(project=world["project"], backend="colour", period="day", limit_usd=Decimal("0.01"))
        status = budgets.status_of(budget, timezone.now())
        assert status.spent > 0  # the seeded items of the last hours cost something today
        body = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
        labels = 'backend="colour",period="day",scope="project colours"'
        assert f"loupe_budget_used_ratio{{{labels}}} {float(status.spent / Decimal('0.01'))}" in body
        assert f"loupe_budget_limit_usd{{{labels}}} 0.01" in body

    def test_it_shows_how_long_the_oldest_item_has_waited_for_review(self, world):
        seed_item(world["project"], at=timezone.now() - timedelta(hours=2), top_label="red")
        body = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
        line = next(x for x in body.splitlines() if x.startswith('loupe_queue_oldest_age_seconds{project="colours",status="needs_review"}'))
        assert 7000 < float(line.split()[-1]) < 7400


def test_the_grafana_dashboard_queries_only_metrics_that_metrics_exports(world, settings):
    import json
    import re
    from pathlib import Path

    from classify.heartbeat import record_heartbeat
    from dashboard.models import DriftAlarm
    from dashboard.services.rollups import record_retry

    board = json.loads((Path(settings.BASE_DIR) / "docs" / "grafana-dashboard.json").read_text())
    queried = {name for panel in board["panels"] for target in panel["targets"]
               for name in re.findall(r"\bloupe_[a-z_]+", target["expr"])}
    record_heartbeat(name="celery@test", pid=1, started_at=timezone.now())
    record_retry(item_id=world["project"].items.first().pk, error="BackendError")
    DriftAlarm.objects.create(project=world["project"], label="red", baseline_share=0.3, recent_share=0.7, band=0.1,
                              started_at=timezone.now(), checked_at=timezone.now())
    body = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    exported = set(re.findall(r"^(loupe_[a-z_]+)", body, re.M))  # samples
    for name, kind in re.findall(r"^# TYPE (loupe_[a-z_]+) (\w+)", body, re.M):  # families, empty ones too
        exported |= {name, f"{name}_bucket"} if kind == "histogram" else {name}
    assert queried and queried <= exported, queried - exported
