"""A bake-off nobody works on goes back to work (classify/bakeoff.py ``recover_bakeoffs``, run by
the sweeper): one whose message was lost is published again, one whose worker died is queued
again, one a live worker runs is left alone; of two deliveries only one runs it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from classify import bakeoff, tasks
from classify.models import BakeoffRun, WorkerHeartbeat
from tests.base import make_colour_project

pytestmark = pytest.mark.django_db


def ago(seconds: float):
    return timezone.now() - timedelta(seconds=seconds)


@pytest.fixture
def sent(monkeypatch):
    sent = []
    monkeypatch.setattr(bakeoff, "enqueue", lambda name, *args: sent.append((name, *args)))
    return sent


def run(state=BakeoffRun.State.QUEUED, **fields) -> BakeoffRun:
    project = make_colour_project() if not BakeoffRun.objects.exists() else BakeoffRun.objects.first().project
    return BakeoffRun.objects.create(project=project, backends=["colour"], state=state, **fields)


def beat(name: str, *, active_tasks) -> None:
    WorkerHeartbeat.objects.create(name=name, pid=1, started_at=ago(3600), seen_at=ago(1), active_tasks=active_tasks)


class RecoverBakeoffsTests:
    def test_a_queued_run_whose_message_was_lost_is_published_again_and_a_fresh_one_is_not(
            self, sent, django_capture_on_commit_callbacks):
        lost = run(queued_at=ago(settings.LOUPE_STUCK_QUEUED_AFTER + 5))
        run(queued_at=ago(1))
        with django_capture_on_commit_callbacks(execute=True):
            assert bakeoff.recover_bakeoffs() == 1
        assert sent == [("classify.run_bakeoff", lost.pk)]
        lost.refresh_from_db()
        assert lost.state == BakeoffRun.State.QUEUED and lost.queued_at > ago(5)  # not again at the next sweep

    def test_a_run_whose_worker_stopped_beating_is_queued_and_published_again(
            self, sent, django_capture_on_commit_callbacks):
        dead = run(BakeoffRun.State.RUNNING, claimed_by="celery@gone/t1",
                   claimed_at=ago(settings.LOUPE_WORKER_SEEN_WITHIN + 5))
        with django_capture_on_commit_callbacks(execute=True):
            assert bakeoff.recover_bakeoffs() == 1
        dead.refresh_from_db()
        assert (dead.state, dead.claimed_by) == (BakeoffRun.State.QUEUED, "")
        assert sent == [("classify.run_bakeoff", dead.pk)]

    def test_a_run_its_live_worker_runs_is_left_alone_and_one_it_no_longer_runs_is_not(
            self, sent, django_capture_on_commit_callbacks):
        beat("celery@box", active_tasks=["t1"])
        claimed_at = ago(settings.LOUPE_WORKER_SEEN_WITHIN + 5)
        alive = run(BakeoffRun.State.RUNNING, claimed_by="celery@box/t1", claimed_at=claimed_at)
        lost = run(BakeoffRun.State.RUNNING, claimed_by="celery@box/t2", claimed_at=claimed_at)
        with django_capture_on_commit_callbacks(execute=True):
            assert bakeoff.recover_bakeoffs() == 1
        assert sent == [("classify.run_bakeoff", lost.pk)]
        alive.refresh_from_db()
        assert alive.state == BakeoffRun.State.RUNNING

    def test_a_run_of_the_bakeoff_command_holds_no_claim_and_is_never_taken(self, sent):
        run(BakeoffRun.State.RUNNING, claimed_at=None)
        assert bakeoff.recover_bakeoffs() == 0 and sent == []


class ClaimTests:
    def test_of_two_deliveries_only_one_runs_the_bakeoff(self):
        queued = run()
        first = bakeoff.claim_bakeoff_run(queued.pk, claimed_by="celery@a/t1")
        assert first is not None and (first.state, first.claimed_by) == (BakeoffRun.State.RUNNING, "celery@a/t1")
        assert bakeoff.claim_bakeoff_run(queued.pk, claimed_by="celery@b/t2") is None

    def test_the_task_claims_the_run_under_its_worker_and_task_id_then_runs_it(self, monkeypatch):
        queued, seen = run(), []
        monkeypatch.setattr(tasks, "execute_bakeoff_run", lambda claimed: seen.append(claimed.claimed_by))
        tasks.run_bakeoff.apply(args=[queued.pk], task_id="t-42")
        assert len(seen) == 1 and seen[0].endswith("/t-42")
        tasks.run_bakeoff.apply(args=[queued.pk], task_id="t-43")  # a duplicate message: nothing to do
        assert len(seen) == 1
