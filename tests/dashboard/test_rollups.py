"""The hourly rollups: what the refresh computes from items, predictions and decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from classify.models import Item, Prediction
from classify.services.counts import compact_status_counts
from dashboard import bins
from dashboard.models import HourlyRollup, StatusSnapshot
from dashboard.services.rollups import record_retry, refresh_rollups, take_status_snapshot
from reviewer.models import Decision
from tests.base import make_colour_project, make_user
from tests.dashboard.helpers import seed_decision, seed_item

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
AUTO = Prediction.Decision.AUTO_ACCEPTED


def values(project, metric, **where) -> dict:
    """{(hour of day, key, bin): value}; bin -1 for plain values, else each non-empty bin."""
    out = {}
    for row in HourlyRollup.objects.filter(project=project, metric=metric, **where):
        if row.counts is None:
            out[(row.hour.hour, row.key, -1)] = row.value
        else:
            assert row.value == sum(row.counts)
            out.update({(row.hour.hour, row.key, index): n for index, n in enumerate(row.counts) if n})
    return out


@pytest.fixture
def project():
    return make_colour_project(admin=make_user("admin", is_staff=True))


class RefreshTests:
    def test_it_counts_uploads_rejections_and_duplicates_per_hour(self, project):
        first = seed_item(project, at=T0 + timedelta(minutes=5), top_label="red")
        seed_item(project, at=T0 + timedelta(minutes=50), top_label="red", duplicate_of=first)
        seed_item(project, at=T0 + timedelta(hours=1, minutes=1), top_label="red", status=Item.Status.REJECTED)
        refresh_rollups(since=T0, until=T0 + timedelta(hours=2))
        assert values(project, "uploads") == {(10, "", -1): 2, (11, "", -1): 1}
        assert values(project, "duplicates") == {(10, "", -1): 1}
        assert values(project, "rejected") == {(11, "", -1): 1}

    def test_it_counts_predictions_auto_accepts_and_score_bins_per_class(self, project):
        seed_item(project, at=T0, top_label="red", top_score=0.93, decision=AUTO)
        seed_item(project, at=T0, top_label="red", top_score=0.42)
        seed_item(project, at=T0, top_label="blue", top_score=0.97, decision=AUTO)
        refresh_rollups(since=T0, until=T0)
        assert values(project, "predictions") == {(10, "red", -1): 2, (10, "blue", -1): 1}
        assert values(project, "auto_accepted") == {(10, "red", -1): 1, (10, "blue", -1): 1}
        assert values(project, "score") == {(10, "red", bins.score_bin(0.93)): 1, (10, "red", bins.score_bin(0.42)): 1,
                                            (10, "blue", bins.score_bin(0.97)): 1}
        assert values(project, "score_sum")[(10, "red", -1)] == pytest.approx(1.35)

    def test_it_keeps_cost_latency_and_reuse_per_backend(self, project):
        seed_item(project, at=T0, top_label="red", latency_ms=30.0, cost=0.001)
        seed_item(project, at=T0, top_label="red", latency_ms=700.0, cost=0.001)
        seed_item(project, at=T0, top_label="red", reused=True, cost=0.001)
        refresh_rollups(since=T0, until=T0)
        assert values(project, "calls") == {(10, "colour", -1): 2}
        assert values(project, "reused") == {(10, "colour", -1): 1}
        assert values(project, "cost_usd")[(10, "colour", -1)] == pytest.approx(0.002)
        assert values(project, "saved_usd")[(10, "colour", -1)] == pytest.approx(0.001)
        assert values(project, "latency") == {(10, "colour", bins.value_bin(30, bins.LATENCY_MS)): 1,
                                              (10, "colour", bins.value_bin(700, bins.LATENCY_MS)): 1}

    def test_it_bins_the_wait_until_the_final_label_and_whether_the_model_was_right(self, project):
        seed_item(project, at=T0, top_label="red", decision=AUTO)  # final a second after upload
        seed_item(project, at=T0, top_label="red", top_score=0.61, label="red", labelled_after=timedelta(minutes=20))
        seed_item(project, at=T0, top_label="red", top_score=0.63, label="blue", labelled_after=timedelta(minutes=40))
        refresh_rollups(since=T0, until=T0 + timedelta(hours=1))
        waits = values(project, "wait")
        assert waits == {(10, "auto", bins.value_bin(1, bins.WAIT_SECONDS)): 1,
                         (10, "human", bins.value_bin(1200, bins.WAIT_SECONDS)): 1,
                         (10, "human", bins.value_bin(2400, bins.WAIT_SECONDS)): 1}
        assert values(project, "reviewed") == {(10, "red", 12): 2}
        assert values(project, "correct") == {(10, "red", 12): 1}
        assert values(project, "final_human") == {(10, "red", -1): 2}
        assert values(project, "final_auto") == {(10, "red", -1): 1}

    def test_it_counts_each_reviewers_decisions_undos_audits_and_agreement(self, project):
        alice, bob = make_user("alice"), make_user("bob")
        audited = seed_item(project, at=T0, top_label="red", label="red", audit=True)
        wrong = seed_item(project, at=T0, top_label="green", label="blue", audit=True)
        seed_decision(audited, alice, at=T0 + timedelta(minutes=5), label="red", seconds=3)
        seed_decision(wrong, alice, at=T0 + timedelta(minutes=6), label="blue", seconds=12)
        seed_decision(wrong, alice, at=T0 + timedelta(minutes=7), kind=Decision.Kind.UNDO, seconds=None)
        consensus = seed_item(project, at=T0, top_label="red", label="red", reviews_needed=2)
        seed_decision(consensus, alice, at=T0 + timedelta(minutes=2), label="red", agrees=True)
        seed_decision(consensus, bob, at=T0 + timedelta(minutes=3), label="green", agrees=False)
        refresh_rollups(since=T0, until=T0 + timedelta(hours=1))
        a, b = str(alice.pk), str(bob.pk)
        assert values(project, "labels") == {(10, a, -1): 3, (10, b, -1): 1}
        assert values(project, "undos") == {(10, a, -1): 1}
        assert values(project, "audit_checked") == {(10, "red", -1): 1, (10, "green", -1): 1}
        assert values(project, "audit_confirmed") == {(10, "red", -1): 1}
        assert values(project, "consensus") == {(10, a, -1): 1, (10, b, -1): 1}
        assert values(project, "agreed") == {(10, a, -1): 1}
        assert values(project, "seconds")[(10, a, bins.value_bin(12, bins.DECISION_SECONDS))] == 1

    def test_a_second_refresh_gives_the_same_rows_and_keeps_counted_retries(self, project):
        item = seed_item(project, at=T0, top_label="red")
        record_retry(item_id=item.pk, error="BackendError")
        record_retry(item_id=item.pk, error="BackendError")
        refresh_rollups(since=T0, until=T0)
        first = sorted(HourlyRollup.objects.values_list("metric", "key", "value", "counts"), key=repr)
        refresh_rollups(since=T0, until=T0)
        assert sorted(HourlyRollup.objects.values_list("metric", "key", "value", "counts"), key=repr) == first
        assert HourlyRollup.objects.get(metric="retries").value == 2
        assert HourlyRollup.objects.get(metric="retries").key == "colour:BackendError"

    def test_hours_outside_the_range_are_left_alone(self, project):
        seed_item(project, at=T0, top_label="red")
        refresh_rollups(since=T0, until=T0)
        seed_item(project, at=T0, top_label="red")
        refresh_rollups(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=1))
        assert values(project, "uploads") == {(10, "", -1): 1}


class SnapshotTests:
    def test_it_stores_the_count_per_status_for_the_hour(self, project):
        seed_item(project, at=T0, top_label="red")
        seed_item(project, at=T0, top_label="red")
        seed_item(project, at=T0, top_label="red", decision=AUTO)
        take_status_snapshot(now=T0 + timedelta(minutes=30))
        take_status_snapshot(now=T0 + timedelta(minutes=40))  # the same hour: replaced, not added
        rows = {(s.hour, s.status): s.count for s in StatusSnapshot.objects.filter(project=project)}
        assert rows == {(T0, "needs_review"): 2, (T0, "auto_accepted"): 1}

    def test_its_counts_are_a_count_of_the_items_whatever_moved_them(self, project):
        other = make_colour_project(slug="other", admin=make_user("other-admin"))
        items = [seed_item(p, at=T0, top_label="red", predict=False) for p in (project, project, project, other)]
        seed_item(project, at=T0, top_label="red", decision=AUTO, predict=False)
        seed_item(other, at=T0, top_label="red", label="red", predict=False)
        Item.objects.filter(pk=items[0].pk).update(status=Item.Status.FAILED, status_reason="Backend error: down")
        Item.objects.filter(pk=items[1].pk).delete()
        compact_status_counts()  # some keys folded into one row, later changes appended beside them
        Item.objects.filter(pk=items[3].pk).update(status=Item.Status.QUEUED)
        Item.objects.filter(pk=items[2].pk).update(status_reason="Backend unavailable: timeout")
        empty = make_colour_project(slug="empty", admin=make_user("empty-admin"))

        assert take_status_snapshot(now=T0) == StatusSnapshot.objects.count()
        counted = Item.objects.order_by().values_list("project_id", "status").annotate(n=Count("pk"))
        assert {(s.project_id, s.status): s.count for s in StatusSnapshot.objects.all()} == {
            (p, status): n for p, status, n in counted}
        assert StatusSnapshot.objects.get(project=project, status="needs_review").backend_errors == 1
        assert not StatusSnapshot.objects.filter(project=empty).exists()

    def test_it_reads_the_kept_counts_instead_of_counting_every_item(self, project):
        seed_item(project, at=T0, top_label="red", predict=False)
        seed_item(project, at=T0, top_label="red", decision=AUTO, predict=False)
        with CaptureQueriesContext(connection) as queries:
            take_status_snapshot(now=T0)
        sql = [query["sql"] for query in queries]
        assert any('FROM "classify_statuscount"' in text for text in sql)
        # Only the items waiting for review are read (their backend failures): never every item.
        on_items = [text for text in sql if 'FROM "classify_item"' in text]
        assert on_items and all("\"classify_item\".\"status\" = 'needs_review'" in text for text in on_items)


class BinTests:
    def test_quantiles_interpolate_inside_the_bin(self):
        edges = (10, 20, 30)
        assert bins.quantile({1: 10}, edges, 0.5) == pytest.approx(15)
        assert bins.quantile({0: 5, 2: 5}, edges, 0.9) == pytest.approx(28)
        assert bins.quantile({3: 1}, edges, 0.5) == 30
        assert bins.quantile({}, edges, 0.5) is None

    def test_the_wilson_interval_brackets_the_proportion(self):
        low, high = bins.wilson_interval(9, 10)
        assert 0.55 < low < 0.9 < high < 1.0
        assert bins.wilson_interval(0, 0) == (0.0, 1.0)


class CommandTests:
    def test_refresh_rollups_rebuilds_the_last_days_and_says_so(self, project):
        from io import StringIO

        from django.core.management import call_command
        from django.utils import timezone

        seed_item(project, at=timezone.now() - timedelta(days=2), top_label="red")
        out = StringIO()
        call_command("refresh_rollups", "--days", "3", stdout=out)
        assert "rollup values" in out.getvalue()
        assert HourlyRollup.objects.get(project=project, metric="uploads").value == 1
        assert StatusSnapshot.objects.filter(project=project, status="needs_review").get().count == 1


class WindowTests:
    def test_one_day_has_hourly_points_and_longer_windows_daily_ones(self):
        from dashboard.selectors.rollups import span_for

        now = datetime(2026, 11, 9, 12, 30, tzinfo=UTC)
        day, week = span_for(1, now=now), span_for(7, now=now)
        assert day.step == "hour" and len(day.buckets) == 24 and day.buckets[-1] == now.replace(minute=0)
        assert week.step == "day" and len(week.buckets) == 8  # the partial first day and today
        assert week.buckets[-1] == now.replace(hour=0, minute=0)
