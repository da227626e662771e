"""Health that tells the truth: /healthz, ``manage.py health``, the stalled-classification banner
and the banner of a process bin/up restarted."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from classify import health
from classify.heartbeat import Heartbeat
from classify.models import Item, WorkerHeartbeat
from classify.services import intake, queueing
from config.celery import app as celery_app
from tests.base import make_colour_project, make_user, solid_image
from tests.redis_server import free_port

pytestmark = pytest.mark.django_db


def beat(name: str = "celery@test", *, ago: float = 1.0) -> WorkerHeartbeat:
    now = timezone.now()
    return WorkerHeartbeat.objects.update_or_create(
        name=name, defaults={"pid": 1, "started_at": now - timedelta(hours=1), "seen_at": now - timedelta(seconds=ago)}
    )[0]


def waiting_item(project, *, minutes: float, status=Item.Status.QUEUED) -> Item:
    item = intake.ingest_upload(project=project, data=solid_image((255, 0, 0)), filename="red.png")
    at = timezone.now() - timedelta(minutes=minutes)
    Item.objects.filter(pk=item.pk).update(status=status, created_at=at, enqueued_at=at)
    return item


@pytest.fixture
def project(monkeypatch):
    monkeypatch.setattr(queueing, "hand_to_queue", lambda item_id: True)  # items stay where we put them
    health.forget_broker_status()  # no answer cached by an earlier test
    return make_colour_project()


class HealthzTests:
    def test_it_is_healthy_with_a_live_worker_and_nothing_waiting(self, project):
        beat()
        response = Client().get(reverse("classify:healthz"))
        assert response.status_code == 200
        body = response.json()
        assert body["ok"] and body["database"] == "ok" and body["broker"] == "ok" and body["problems"] == []
        assert len(body["workers"]) == 1 and body["workers"][0]["seen_seconds_ago"] < 10
        assert "name" not in body["workers"][0]  # host names stay private

    def test_a_worker_not_seen_for_a_minute_makes_it_unhealthy(self, project):
        beat(ago=61)
        response = Client().get(reverse("classify:healthz"))
        assert response.status_code == 503
        assert response.json()["problems"] == ["No worker has been seen for 60 seconds."]

    def test_items_waiting_with_no_claim_for_three_minutes_make_it_unhealthy(self, project):
        beat()
        waiting_item(project, minutes=4)
        body = Client().get(reverse("classify:healthz")).json()
        assert body["queued"] == 1 and body["oldest_queued_seconds"] == pytest.approx(240, abs=5)
        assert body["problems"] == ["No worker has picked up work for 4 minutes (1 waiting)."]

    def test_a_backlog_that_workers_are_draining_is_healthy(self, project):
        beat()
        waiting_item(project, minutes=10)
        busy = waiting_item(project, minutes=10, status=Item.Status.CLASSIFYING)
        Item.objects.filter(pk=busy.pk).update(claimed_at=timezone.now() - timedelta(seconds=5))
        body = Client().get(reverse("classify:healthz")).json()
        assert body["ok"], body["problems"]
        assert body["classifying"] == 1 and body["oldest_classifying_seconds"] == pytest.approx(5, abs=3)

    def test_a_claim_older_than_the_sweepers_limit_is_overdue(self, project, settings):
        beat()
        stuck = waiting_item(project, minutes=10, status=Item.Status.CLASSIFYING)
        Item.objects.filter(pk=stuck.pk).update(claimed_at=timezone.now() - timedelta(seconds=300))
        body = Client().get(reverse("classify:healthz")).json()
        assert body["problems"] == ["An item has been classifying for 300 seconds."]

    def test_an_unreachable_broker_makes_it_unhealthy(self, project):
        beat()
        saved = celery_app.conf.broker_write_url, celery_app.conf.broker_transport
        celery_app.conf.broker_write_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        celery_app.conf.broker_transport = "config.broker:RedisTransport"
        try:
            response = Client().get(reverse("classify:healthz"))
        finally:
            celery_app.conf.broker_write_url, celery_app.conf.broker_transport = saved
        assert response.status_code == 503
        assert response.json()["broker"].startswith("unreachable")
        assert "The task queue (broker) is unreachable." in response.json()["problems"]


class BrokerCheckCacheTests:
    def test_a_load_balancer_polling_healthz_opens_one_broker_connection_per_period(self, project, settings,
                                                                                    monkeypatch):
        settings.LOUPE_HEALTH_BROKER_CACHE_SECONDS = 5
        beat()
        clock = SimpleNamespace(now=1000.0)
        monkeypatch.setattr(health._BrokerCheck, "clock", lambda: clock.now)
        with mock.patch.object(health, "check_broker", wraps=health.check_broker) as checks:
            for _ in range(10):
                assert Client().get(reverse("classify:healthz")).json()["broker"] == "ok"
                clock.now += 0.4
            assert checks.call_count == 1  # ten polls in four seconds
            clock.now += 1.5
            Client().get(reverse("classify:healthz"))
            assert checks.call_count == 2  # over five seconds on: checked again

    def test_threads_asking_at_once_share_one_check(self, settings, monkeypatch):
        settings.LOUPE_HEALTH_BROKER_CACHE_SECONDS = 5
        health.forget_broker_status()
        started, release = threading.Event(), threading.Event()

        def slow_check() -> str:
            started.set()
            release.wait(5)
            return "ok"

        with mock.patch.object(health, "check_broker", side_effect=slow_check) as checks:
            with ThreadPoolExecutor(8) as pool:
                answers = [pool.submit(health.broker_status) for _ in range(8)]
                started.wait(5)
                release.set()
                assert [answer.result(timeout=10) for answer in answers] == ["ok"] * 8
        assert checks.call_count == 1


class HealthCommandTests:
    def test_it_prints_the_report_and_exits_1_when_unhealthy(self, project):
        out = StringIO()
        with pytest.raises(CommandError) as raised:
            call_command("health", stdout=out)
        assert raised.value.returncode == 1
        assert "workers      none" in out.getvalue() and "UNHEALTHY" in out.getvalue()

    def test_it_names_the_live_workers_and_exits_0_when_healthy(self, project):
        beat("celery@box-1")
        out = StringIO()
        call_command("health", stdout=out)
        assert "celery@box-1 (seen 1 s ago)" in out.getvalue() and "status       healthy" in out.getvalue()


class BannerTests:
    def login(self, project) -> Client:
        client = Client()
        user = make_user("watcher")
        project.memberships.create(user=user, role="reviewer")
        client.force_login(user)
        return client

    def test_the_project_page_says_when_no_worker_picked_up_work_for_3_minutes(self, project):
        waiting_item(project, minutes=3.2)
        page = self.login(project).get(reverse("classify:project", args=[project.slug])).content.decode()
        assert ("No worker has picked up work for 3 minutes: classification is stalled. "
                "No worker is running: start one (bin/up does) or check the worker&#x27;s log.") in page

    def test_the_live_status_poll_carries_the_banner_too(self, project):
        beat()
        waiting_item(project, minutes=5)
        body = self.login(project).get(reverse("api:project_items", args=[project.slug])).json()
        assert body["stall"] == "No worker has picked up work for 5 minutes: classification is stalled."

    def test_no_banner_while_work_moves(self, project):
        beat()
        waiting_item(project, minutes=0.5)
        page = self.login(project).get(reverse("classify:project", args=[project.slug])).content.decode()
        assert '<div class="banner banner-warning" id="stall-banner" role="status" hidden></div>' in page
        assert health.classification_stall(project) == ""

    def test_a_process_restarted_by_bin_up_shows_on_every_page_for_15_minutes(self, project, settings):
        log = Path(settings.VAR_DIR) / health.RESTARTS_FILE
        old = (timezone.now() - timedelta(minutes=20)).isoformat()
        new = timezone.now().isoformat()
        log.write_text(f"{old} web 1\n{new} worker 137\n")
        try:
            page = self.login(project).get(reverse("classify:home")).content.decode()
        finally:
            log.unlink()
        assert "The worker stopped unexpectedly (exit 137) at" in page
        assert "The web stopped" not in page


class HeartbeatStepTests:
    def test_it_beats_while_the_worker_runs_and_forgets_the_worker_on_a_warm_shutdown(self, transactional_db, settings):
        settings.LOUPE_WORKER_HEARTBEAT_SECONDS = 0.05
        worker = SimpleNamespace(hostname="celery@unit")
        step = Heartbeat(worker)
        step.start(worker)
        try:
            deadline = time.monotonic() + 10
            while WorkerHeartbeat.objects.filter(name="celery@unit").count() == 0:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            first = WorkerHeartbeat.objects.get(name="celery@unit").seen_at
            while WorkerHeartbeat.objects.get(name="celery@unit").seen_at == first:  # it keeps beating
                assert time.monotonic() < deadline
                time.sleep(0.02)
        finally:
            step.stop(worker)
        assert not WorkerHeartbeat.objects.filter(name="celery@unit").exists()

    def test_each_beat_names_the_tasks_the_worker_is_running(self, transactional_db, settings):
        """What the sweeper reads to free the claims of a task whose pool process died."""
        from celery.worker import state as worker_state

        class Running:  # what Celery keeps in active_requests: a request with its task id
            def __init__(self, task_id: str) -> None:
                self.id = task_id

        settings.LOUPE_WORKER_HEARTBEAT_SECONDS = 0.05
        running = [Running("t-2"), Running("t-1")]
        worker_state.active_requests.update(running)
        worker = SimpleNamespace(hostname="celery@unit")
        step = Heartbeat(worker)
        step.start(worker)
        try:
            deadline = time.monotonic() + 10
            while not WorkerHeartbeat.objects.filter(name="celery@unit", active_tasks__isnull=False).exists():
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert WorkerHeartbeat.objects.get(name="celery@unit").active_tasks == ["t-1", "t-2"]
        finally:
            step.stop(worker)
            worker_state.active_requests.difference_update(running)

    @pytest.mark.parametrize(("stalled_after", "restarts"), [(5.0, 1), (0, 0)])
    def test_a_wedged_pool_restarts_the_worker_unless_the_watch_is_off(
            self, transactional_db, settings, stalled_after, restarts):
        """LOUPE_WORKER_STALLED_AFTER (README): past it the worker restarts itself; 0 turns the watch off."""
        from classify import heartbeat

        settings.LOUPE_WORKER_HEARTBEAT_SECONDS, settings.LOUPE_WORKER_STALLED_AFTER = 0.05, stalled_after
        worker = SimpleNamespace(hostname="celery@unit", concurrency=2)
        step = Heartbeat(worker)
        with mock.patch.object(heartbeat.PoolWatch, "check", return_value=75.0), \
                mock.patch.object(heartbeat, "restart_wedged_worker") as restart:
            step.start(worker)
            deadline = time.monotonic() + 10
            while WorkerHeartbeat.objects.filter(name="celery@unit").count() == 0:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(0.3)  # several beats
            step.stop(worker)
        assert restart.call_count == restarts
