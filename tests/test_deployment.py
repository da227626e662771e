"""What the README promises about running Loupe in production: docker-compose restarts every
container, and the systemd units restart every process."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


WORKERS = {"worker", "worker-cloud", "worker-training", "worker-export", "worker-bakeoff"}


def test_every_compose_service_restarts_unless_stopped():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "web", "beat"} | WORKERS
    assert {name: service.get("restart") for name, service in services.items()} == dict.fromkeys(
        services, "unless-stopped")


def test_the_web_containers_check_is_liveness_and_workers_get_time_to_finish():
    services = compose()["services"]
    assert "/livez" in " ".join(services["web"]["healthcheck"]["test"])
    for name in WORKERS:
        assert int(services[name]["stop_grace_period"].rstrip("s")) > settings.LOUPE_TASK_TIME_LIMIT, name


def test_the_compose_workers_consume_every_queue_between_them():
    services = compose()["services"]
    consumed = set()
    for name in WORKERS:
        command = services[name]["command"]
        consumed |= set(command[command.index("-Q") + 1].split(","))
    assert consumed == set(settings.LOUPE_QUEUES)


def test_the_systemd_units_restart_every_process():
    assert [unit.name for unit in UNITS] == ["loupe-beat.service", "loupe-web.service", "loupe-worker.service"]
    for unit in UNITS:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(unit)
        assert parser["Service"]["Restart"] == "always", unit.name
        assert int(parser["Service"]["RestartSec"]) > 0, unit.name
        assert unit.name in (ROOT / "README.md").read_text(), unit.name


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_the_systemd_units_are_valid():
    for unit in UNITS:
        result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        complaints = [line for line in (result.stdout + result.stderr).splitlines()
                      if line.strip() and "is not executable" not in line]  # /opt/loupe is not installed here
        assert complaints == [], unit.name
