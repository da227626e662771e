"""A worker whose pool leaves a task waiting beside a free pool process restarts itself
(classify/pool_watch.py); the faults benchmark's pool-kill scenario drives the real case."""

from __future__ import annotations

import signal
from types import SimpleNamespace
from unittest import mock

from classify import pool_watch
from classify.pool_watch import PoolWatch


def request(task_id: str, *, started: bool = False):
    return SimpleNamespace(id=task_id, time_start=1.0 if started else None)


class PoolWatchTests:
    def test_a_task_waiting_beside_a_free_process_counts_from_the_first_look(self):
        watch, orphan = PoolWatch(concurrency=2), request("lost")
        assert watch.look(reserved=[orphan], active=[], now=100.0) == 0.0
        assert watch.look(reserved=[orphan], active=[], now=130.0) == 30.0
        assert watch.look(reserved=[orphan, request("new")], active=[], now=170.0) == 70.0

    def test_waiting_while_every_process_is_busy_is_normal_and_starts_the_count_again(self):
        watch, waiting = PoolWatch(concurrency=2), request("next")
        busy = [request("a", started=True), request("b", started=True)]
        watch.look(reserved=[waiting], active=[], now=100.0)
        assert watch.look(reserved=[waiting, *busy], active=busy, now=150.0) == 0.0
        assert watch.look(reserved=[waiting], active=[], now=160.0) == 0.0

    def test_running_tasks_and_tasks_that_started_do_not_count_as_waiting(self):
        watch = PoolWatch(concurrency=2)
        running = request("run", started=True)
        assert watch.look(reserved=[running, request("ran", started=True)], active=[running], now=1.0) == 0.0
        assert watch.look(reserved=[running], active=[running], now=500.0) == 0.0

    def test_a_task_that_started_leaves_the_count(self):
        watch, task = PoolWatch(concurrency=1), request("t")
        watch.look(reserved=[task], active=[], now=0.0)
        task.time_start = 5.0
        assert watch.look(reserved=[], active=[], now=90.0) == 0.0


def test_a_wedged_worker_asks_celery_for_a_cold_shutdown_and_arms_a_hard_exit():
    with mock.patch.object(pool_watch.os, "kill") as kill, mock.patch.object(pool_watch.threading, "Timer") as timer:
        pool_watch.restart_wedged_worker(75.0, grace=15.0)
    kill.assert_called_once_with(pool_watch.os.getpid(), signal.SIGQUIT)
    timer.assert_called_once_with(15.0, pool_watch.os._exit, args=(70,))
    timer.return_value.start.assert_called_once_with()
