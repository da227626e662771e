"""A ``bin/up`` started in its own process group: reading what it writes under ``var/`` and
stopping it with everything it supervises. Shared by tests/test_bin_up.py and bench/faults.py,
which both drive the real ``bin/up``."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def read_var(var: Path, name: str) -> str:
    """A file ``bin/up`` writes (a pid, a log), or "" while it does not exist yet."""
    try:
        return (var / name).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def stop_bin_up(process: subprocess.Popen, var: Path, *, grace: float) -> None:
    """SIGTERM to ``bin/up``'s group, then SIGKILL to the supervised worker and web groups (should
    anything be left after ``grace`` seconds) and to ``bin/up`` itself."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for name in ("worker", "web"):
        try:
            os.killpg(int(read_var(var, f"{name}.pid")), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
