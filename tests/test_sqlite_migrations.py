"""The embedded default's database (SQLite) keeps its count triggers through every migration: a
migration that rebuilds the item table drops them there (0021 did), and classify/sqlite_triggers.py
puts them back after each ``migrate``. Checked on a fresh SQLite database whatever database the
suite itself runs on (CI runs PostgreSQL)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from django.conf import settings

from classify.sqlite_triggers import TRIGGER_MIGRATIONS


def test_a_freshly_migrated_sqlite_database_has_every_count_trigger(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env["LOUPE_VAR_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=settings.BASE_DIR, env=env,
                   check=True, capture_output=True, timeout=300)
    with sqlite3.connect(tmp_path / "loupe.sqlite3") as database:
        triggers = {name for (name,) in database.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    expected = {name for _, names in TRIGGER_MIGRATIONS.values() for name in names}
    assert expected <= triggers, sorted(expected - triggers)
