"""bin/_venv.sh: each requirements file has its own install stamp, the digest of what it installs
(its lines and those of the files it includes), so bin/up and bin/test never skip an install the
other's run made look done, and never redo one for a change that is not theirs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from django.conf import settings


def digest(path: Path) -> str:
    script = Path(settings.BASE_DIR) / "bin" / "_venv.sh"
    result = subprocess.run(["bash", "-c", f'source "{script}"; requirements_digest "$1"', "_", str(path)],
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


def test_a_file_s_digest_follows_its_own_lines_and_its_includes_only(tmp_path):
    base, dev = tmp_path / "requirements.txt", tmp_path / "requirements-dev.txt"
    base.write_text("Django==5.2.19\n")
    dev.write_text("-r requirements.txt\npytest==9.2.0\n")
    before = digest(base), digest(dev)
    assert before[0] != before[1]

    dev.write_text("-r requirements.txt\npytest==9.2.1\n")
    assert digest(base) == before[0]  # bin/up need not reinstall for a test tool
    assert digest(dev) != before[1]

    changed_dev = digest(dev)
    base.write_text("Django==5.2.20\n")
    assert digest(base) != before[0]
    assert digest(dev) != changed_dev  # the base file is part of what the dev file installs


def test_includes_are_read_relative_to_the_file_that_names_them(tmp_path):
    (tmp_path / "pins").mkdir()
    pins = tmp_path / "pins" / "constraints.txt"
    pins.write_text("numpy==2.2.0\n")
    top = tmp_path / "requirements.txt"
    top.write_text("--constraint pins/constraints.txt  # pinned elsewhere\nnumpy\n")
    first = digest(top)
    pins.write_text("numpy==2.2.1\n")
    assert digest(top) != first
