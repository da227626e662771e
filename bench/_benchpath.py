"""Imported first by every benchmark: run as a script, bench/ is first on sys.path, where
bench/queue.py would shadow the standard library's queue module. Put the repository root there
instead (so ``classify`` and ``config`` import)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
