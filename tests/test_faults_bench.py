"""The short version of bench/faults.py, in the suite: a real Loupe started by bin/up on the
embedded default, its worker's pool processes killed mid-task, its main process killed, the
broker's queue emptied. Every upload must end stored, final and classified once, with no 5xx for
a stored upload and every worker exit restarted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.redis_server import free_port

pytestmark = pytest.mark.worker


def test_the_quick_fault_benchmark_loses_nothing(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "LOUPE_VAR_DIR", "PYTEST_CURRENT_TEST"}}
    env["LOUPE_BENCH_PORTBASE"] = str(free_port())
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "bench" / "faults.py"), "--quick", "--json-out", str(out)],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-20000:]
    rows = {row["scenario"]: row for row in json.loads(out.read_text())}
    assert list(rows) == ["baseline", "worker pool processes SIGKILL", "worker main process SIGKILL", "broker flushed"]
    for name, row in rows.items():
        assert (row["submitted"], row["lost"], row["stuck"], row["errors_stored"], row["duplicates"],
                row["not_restarted"]) == (16, 0, 0, 0, 0, 0), name
    assert rows["worker pool processes SIGKILL"]["notes"].startswith("SIGKILL 2 pool processes mid-task")
    assert rows["worker main process SIGKILL"]["worker_exits"] == 1
    assert "message files deleted" in rows["broker flushed"]["notes"]
