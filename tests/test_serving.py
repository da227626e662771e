"""How Loupe is served: gunicorn with config/gunicorn.py keeps its control socket under var/, and
the favicon is there for browsers that ask for /favicon.ico."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.test import Client

ROOT = Path(__file__).resolve().parent.parent


def test_the_favicon_is_served_to_anyone():
    response = Client().get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")
    page = Client().get("/accounts/login/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    assert (ROOT / "static" / "favicon.svg").read_text().startswith("<svg")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_keeps_its_control_socket_in_the_var_folder(tmp_path):
    var, home, port = tmp_path / "var", tmp_path / "home", free_port()
    home.mkdir()
    env = {**os.environ, "LOUPE_VAR_DIR": str(var), "HOME": str(home)}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(gunicorn), "-c", "config/gunicorn.py", "config.wsgi", "--bind",
                                    f"127.0.0.1:{port}", "--workers", "1"], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/favicon.ico", timeout=2):
                    break  # it serves
            except urllib.error.HTTPError:
                break  # it serves (an answer is enough here)
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.2)
        assert (var / "gunicorn.ctl").is_socket()
        assert not (home / ".gunicorn").exists()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_bin_up_appends_to_its_logs_and_marks_each_start():
    """bin/up is not started here (it migrates, seeds and serves for good); its redirections are
    read instead: every write to a log under var/ appends, after a dated line per start."""
    script = (ROOT / "bin" / "up").read_text()
    subprocess.run(["bash", "-n", str(ROOT / "bin" / "up")], check=True)
    redirections = re.findall(r'(>{1,2})\s*"\$(VAR/\w+\.log|log)"', script)
    assert {target for _, target in redirections} == {"log", "VAR/restarts.log"}
    assert all(arrow == ">>" for arrow, _ in redirections), redirections
    # each supervised process writes to its log through supervise's "$log"
    assert 'supervise worker "$VAR/worker.log"' in script and 'supervise web "$VAR/web.log"' in script
    assert '=== bin/up started $(date -u +%Y-%m-%dT%H:%M:%SZ) ===' in script
    assert "-c config/gunicorn.py" in script  # the control socket under var/ (tested above)
