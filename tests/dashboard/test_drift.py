"""Class-share drift: a shift in what the model predicts raises an alarm; a stable stream does not."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from dashboard import drift
from dashboard.models import DriftAlarm, HourlyRollup
from dashboard.services.drift import check_drift
from dashboard.services.rollups import refresh_rollups
from tests.base import make_colour_project, make_user
from tests.dashboard.helpers import seed_item

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 9, 12, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _windows(settings):
    settings.LOUPE_DRIFT_RECENT_HOURS = 4
    settings.LOUPE_DRIFT_BASELINE_HOURS = 12
    settings.LOUPE_DRIFT_BAND = 0.10
    settings.LOUPE_DRIFT_MIN_PREDICTIONS = 20


@pytest.fixture
def project():
    return make_colour_project(admin=make_user("admin", is_staff=True))


def stream(project, *, hours: range, mix: dict[str, int]) -> None:
    """``mix`` predictions per class in each hour ``hours`` ago (0 = the current hour)."""
    for ago in hours:
        moment = NOW.replace(minute=10) - timedelta(hours=ago)
        for label, n in mix.items():
            for _ in range(n):
                seed_item(project, at=moment, top_label=label)


def check(project):
    refresh_rollups(since=NOW - timedelta(hours=20), until=NOW)
    return check_drift(now=NOW)


class DriftTests:
    def test_a_class_share_shift_raises_an_alarm_logs_it_and_exports_it(self, project, caplog, client):
        stream(project, hours=range(4, 16), mix={"red": 3, "green": 3, "blue": 4})  # baseline 30/30/40
        stream(project, hours=range(0, 4), mix={"red": 7, "green": 1, "blue": 2})  # recent 70/10/20
        with caplog.at_level(logging.WARNING, logger="dashboard.services.drift"):
            opened = check(project)
        assert sorted(alarm.label for alarm in opened) == ["blue", "green", "red"]
        red = DriftAlarm.objects.get(project=project, label="red", ended_at__isnull=True)
        assert red.baseline_share == pytest.approx(0.3) and red.recent_share == pytest.approx(0.7)
        assert any("drift alarm" in r.message and "'red'" in r.message and "70.0%" in r.message for r in caplog.records)
        body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
        assert 'loupe_drift_alarm{class="red",project="colours"} 1.0' in body

    def test_a_stable_stream_raises_nothing(self, project):
        stream(project, hours=range(0, 16), mix={"red": 3, "green": 3, "blue": 4})
        assert check(project) == []
        assert not DriftAlarm.objects.exists()

    def test_a_shift_within_the_band_raises_nothing(self, project):
        stream(project, hours=range(4, 16), mix={"red": 3, "green": 3, "blue": 4})
        stream(project, hours=range(0, 4), mix={"red": 4, "green": 2, "blue": 4})  # red +10 points: not beyond
        assert check(project) == []

    def test_too_few_predictions_are_not_judged(self, project, settings):
        settings.LOUPE_DRIFT_MIN_PREDICTIONS = 500
        stream(project, hours=range(4, 16), mix={"red": 3, "green": 3, "blue": 4})
        stream(project, hours=range(0, 4), mix={"red": 10})
        assert check(project) == []

    def test_an_alarm_stays_open_once_and_closes_when_the_share_is_back(self, project, caplog):
        stream(project, hours=range(4, 16), mix={"red": 3, "green": 3, "blue": 4})
        stream(project, hours=range(0, 4), mix={"red": 7, "green": 1, "blue": 2})
        check(project)
        assert check(project) == []  # still out of band: the same alarms, none new
        assert DriftAlarm.objects.filter(ended_at__isnull=True).count() == 3
        # The recent window fills back up with the baseline mix.
        HourlyRollup.objects.filter(hour__gte=NOW.replace(minute=0) - timedelta(hours=3)).delete()
        from classify.models import Item
        Item.objects.filter(created_at__gte=NOW.replace(minute=0) - timedelta(hours=3)).delete()
        stream(project, hours=range(0, 4), mix={"red": 3, "green": 3, "blue": 4})
        with caplog.at_level(logging.INFO, logger="dashboard.services.drift"):
            check(project)
        assert DriftAlarm.objects.filter(ended_at__isnull=True).count() == 0
        assert DriftAlarm.objects.filter(ended_at=NOW).count() == 3
        assert any("closed" in r.message for r in caplog.records)

    def test_shifts_is_symmetric_and_counts_a_class_missing_from_one_window_as_zero(self):
        found = drift.shifts({"a": 50, "b": 50}, {"a": 50, "b": 30, "c": 20}, band=0.1, min_predictions=10)
        assert [(s.label, round(s.delta, 2)) for s in found] == [("b", -0.2), ("c", 0.2)]
