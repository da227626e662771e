"""The production settings checklist: ``.env.example``, filled in, passes ``check --deploy``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def check_deploy(tmp_path: Path, values: dict[str, str]) -> subprocess.CompletedProcess:
    keep = {name: value for name, value in os.environ.items() if not name.startswith(("DJANGO_", "LOUPE_"))}
    keep.pop("DATABASE_URL", None)
    env = {**keep, **values, "LOUPE_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_env_example_filled_in(tmp_path):
    values = {**env_example(), "SECRET_KEY": secrets.token_urlsafe(50)}  # the one value to fill in
    result = check_deploy(tmp_path, values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_the_https_settings_check_deploy_complains(tmp_path):
    values = {**env_example(), "SECRET_KEY": secrets.token_urlsafe(50), "SECURE_HSTS_SECONDS": "0",
              "SECURE_SSL_REDIRECT": "false"}
    result = check_deploy(tmp_path, values)
    assert result.returncode != 0 and "security.W004" in result.stderr and "security.W008" in result.stderr


def test_with_the_https_redirect_on_only_the_health_check_answers_over_plain_http(settings, db):
    from django.test import Client

    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    assert client.get("/livez").status_code == 200
    assert client.get("/healthz").status_code == 503  # answered (no worker runs here), not redirected
    response = client.get("/accounts/login/")
    assert response.status_code == 301 and response["Location"].startswith("https://")
