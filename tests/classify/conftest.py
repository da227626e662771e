"""Fixtures the classify tests share: a settable clock, and what goes back to the queue later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from classify.services import queueing

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


class Clock:
    """``django.utils.timezone.now`` answers ``self.now`` (from T0) until the test ends."""

    def __init__(self, monkeypatch) -> None:
        self.now = T0
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def later(monkeypatch):
    """What the task hands back to the queue with a countdown (the broker is not under test here)."""
    sent = []
    monkeypatch.setattr(queueing, "hand_to_queue_later", lambda item_id, countdown: sent.append((item_id, countdown)))
    return sent
