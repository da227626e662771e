"""A real ``celery -A config worker`` subprocess for the benchmarks (bench/pipeline.py,
bench/scaleout.py): the same command line as docker-compose.yml's workers, its own working
folder, its log kept there; stopped with TERM (then KILL) by process group."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"\S+@\S+ ready\.")


class Worker:
    def __init__(self, *, name: str, folder: Path, queues: str, env: Mapping[str, str], concurrency: int = 1) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "worker.log"
        command = [str(Path(sys.executable).with_name("celery")), "-A", "config", "worker", "-Q", queues,
                   "-n", f"{name}@%h", "--concurrency", str(concurrency), "--loglevel", "INFO",
                   "--without-heartbeat", "--without-gossip", "--without-mingle"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=folder, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not READY.search(self.log()):
            if self.process.poll() is not None:
                raise SystemExit(f"the worker exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the worker was not ready after {timeout:.0f} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the worker's processes have used so far, its main process and
        its pool children (one process group), read from /proc (Linux)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(fields[2]) == self.process.pid:  # the process group: start_new_session made it ours
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
