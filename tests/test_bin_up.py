"""``bin/up`` supervises what it starts: a worker killed with SIGKILL is started again, the
restart is logged, and every page then says so in a banner."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.bin_up_process import read_var, stop_bin_up
from tests.redis_server import free_port

pytestmark = pytest.mark.worker
START_TIMEOUT = 120


class BinUp:
    def __init__(self, folder: Path) -> None:
        self.var = folder / "var"
        self.port = free_port()
        self.out = folder / "bin-up.out"
        env = {key: value for key, value in os.environ.items()
               if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "PYTEST_CURRENT_TEST", "CELERY_TASK_ALWAYS_EAGER"}}
        env.update(LOUPE_VAR_DIR=str(self.var), PORT=str(self.port), LOUPE_DEMO="0", HOST="127.0.0.1")
        with self.out.open("wb") as out:
            self.process = subprocess.Popen([str(Path(settings.BASE_DIR) / "bin" / "up")], cwd=settings.BASE_DIR,
                                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self, name: str) -> str:
        return read_var(self.var, name)

    def wait_for(self, condition, what: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"bin/up: no {what}:\n{self.out.read_text()}\n{self.text('worker.log')[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_bin_up(self.process, self.var, grace=30)

    def logged_in_page(self) -> str:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        base = f"http://127.0.0.1:{self.port}"
        login = opener.open(f"{base}/accounts/login/", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        form = {"csrfmiddlewaretoken": token, "username": "admin", "password": self.text("admin_password").strip()}
        request = urllib.request.Request(f"{base}/accounts/login/", data=urllib.parse.urlencode(form).encode(),
                                         headers={"Referer": f"{base}/accounts/login/"})
        return opener.open(request, timeout=10).read().decode()


@pytest.fixture
def bin_up(tmp_path):
    up = BinUp(tmp_path)
    yield up
    up.stop()


def test_bin_up_restarts_a_killed_worker_logs_it_and_shows_a_banner(bin_up):
    bin_up.wait_for(lambda: bin_up.text("worker.log").count(" ready.") == 1, "ready worker")
    first = int(bin_up.text("worker.pid"))

    os.kill(first, signal.SIGKILL)

    bin_up.wait_for(lambda: bin_up.text("worker.log").count(" ready.") == 2, "restarted worker", timeout=60)
    assert int(bin_up.text("worker.pid")) != first
    assert re.fullmatch(r"\S+ worker 137\n", bin_up.text("restarts.log"))
    assert "bin/up: the worker stopped (exit 137); restarting it in 1 s." in bin_up.out.read_text()
    assert "The worker stopped unexpectedly (exit 137) at" in bin_up.logged_in_page()
    assert bin_up.process.poll() is None  # bin/up itself keeps running
