"""Health, as /healthz, ``manage.py health`` and the page banners report it.

Reads only. Healthy means: the database answers, the broker accepts a connection (checked at most
once per ``LOUPE_HEALTH_BROKER_CACHE_SECONDS`` per process), at least one
worker beat within ``LOUPE_WORKER_SEEN_WITHIN`` seconds, and no work is overdue (items waiting
while no worker has claimed anything for ``LOUPE_STALL_AFTER`` seconds, or a claim older than
the sweeper's ``LOUPE_STUCK_CLASSIFYING_AFTER``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min
from django.utils import timezone

from .models import Item, Project, WorkerHeartbeat

Status = Item.Status
WAITING = (Status.RECEIVED, Status.QUEUED)
RESTARTS_FILE = "restarts.log"  # written by bin/up's supervisor: "<iso time> <process> <exit code>"


@dataclass
class Report:
    database: str = "ok"
    broker: str = "ok"
    workers: list[dict] = field(default_factory=list)
    queued: int = 0
    oldest_queued_seconds: float | None = None
    classifying: int = 0
    oldest_classifying_seconds: float | None = None
    last_claim_seconds: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self, *, with_names: bool = False) -> dict:
        workers = self.workers if with_names else [{"seen_seconds_ago": w["seen_seconds_ago"]} for w in self.workers]
        return {
            "ok": self.ok, "database": self.database, "broker": self.broker, "workers": workers,
            "queued": self.queued, "oldest_queued_seconds": self.oldest_queued_seconds,
            "classifying": self.classifying, "oldest_classifying_seconds": self.oldest_classifying_seconds,
            "last_claim_seconds": self.last_claim_seconds, "problems": self.problems,
        }


def health_report() -> Report:
    """Every check, each one guarded: one failing part never hides the others."""
    report = Report()
    report.broker = broker_status()
    try:
        connection.ensure_connection()
    except Exception as exc:
        report.database = f"unreachable: {exc}".strip()[:300]
        report.problems.append("The database is unreachable.")
        return report
    now = timezone.now()
    report.workers = live_workers(now=now)
    _fill_backlog(report, now=now)
    report.problems += _problems(report)
    return report


class _BrokerCheck:
    """The last broker check of this process and when it was made (``clock()``)."""

    clock = staticmethod(time.monotonic)

    lock = threading.Lock()
    at: float | None = None
    status = ""


def broker_status() -> str:
    """"ok", or why a connection to the broker failed, at most ``LOUPE_HEALTH_BROKER_CACHE_SECONDS``
    old: one check per process in that time, whatever the number of requests or threads, so a
    load balancer polling /healthz cannot open a broker connection per request. A thread that
    finds the check under way waits for its answer instead of opening another connection."""
    with _BrokerCheck.lock:
        now = _BrokerCheck.clock()
        fresh = _BrokerCheck.at is not None and now - _BrokerCheck.at < settings.LOUPE_HEALTH_BROKER_CACHE_SECONDS
        if not fresh:
            _BrokerCheck.status, _BrokerCheck.at = check_broker(), _BrokerCheck.clock()
        return _BrokerCheck.status


def forget_broker_status() -> None:
    """The next ``broker_status`` checks the broker again (after its settings changed)."""
    with _BrokerCheck.lock:
        _BrokerCheck.at = None


def check_broker() -> str:
    """Open a connection to the broker now: "ok", or why it failed (no retries: a health check
    must be quick)."""
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel  # noqa: B018 - opening a channel proves the transport works
    except Exception as exc:
        return f"unreachable: {exc}".strip()[:300]
    return "ok"


def live_workers(*, now: datetime) -> list[dict]:
    since = now - timedelta(seconds=settings.LOUPE_WORKER_SEEN_WITHIN)
    rows = WorkerHeartbeat.objects.filter(seen_at__gte=since).order_by("name")
    return [{"name": row.name, "seen_seconds_ago": _seconds(now - row.seen_at),
             "up_seconds": _seconds(now - row.started_at)} for row in rows]


def _fill_backlog(report: Report, *, now: datetime) -> None:
    waiting = Item.objects.filter(status__in=WAITING).aggregate(count=Count("pk"), oldest=Min("created_at"))
    report.queued = waiting["count"]
    report.oldest_queued_seconds = _seconds(now - waiting["oldest"]) if waiting["oldest"] else None
    claims = Item.objects.filter(status=Status.CLASSIFYING).aggregate(count=Count("pk"), oldest=Min("claimed_at"))
    report.classifying = claims["count"]
    report.oldest_classifying_seconds = _seconds(now - claims["oldest"]) if claims["oldest"] else None
    last_claim = Item.objects.aggregate(last=Max("claimed_at"))["last"]
    report.last_claim_seconds = _seconds(now - last_claim) if last_claim else None


def _problems(report: Report) -> list[str]:
    problems = []
    if report.broker != "ok":
        problems.append("The task queue (broker) is unreachable.")
    if not report.workers:
        problems.append(f"No worker has been seen for {settings.LOUPE_WORKER_SEEN_WITHIN} seconds.")
    if (idle := idle_seconds(report)) is not None and idle >= settings.LOUPE_STALL_AFTER:
        problems.append(f"{stalled_message(idle)} ({report.queued} waiting).")
    if (report.oldest_classifying_seconds or 0) > settings.LOUPE_STUCK_CLASSIFYING_AFTER:
        problems.append(f"An item has been classifying for {report.oldest_classifying_seconds:.0f} seconds.")
    return problems


def idle_seconds(report: Report) -> float | None:
    """How long items have waited with no worker claiming anything; None when nothing waits."""
    if not report.queued or report.oldest_queued_seconds is None:
        return None
    if report.last_claim_seconds is None:
        return report.oldest_queued_seconds
    return min(report.oldest_queued_seconds, report.last_claim_seconds)


def stalled_message(idle: float) -> str:
    minutes = int(idle // 60)
    if minutes < 1:
        return f"No worker has picked up work for {idle:.0f} seconds"
    return f"No worker has picked up work for {minutes} minute{'s' if minutes != 1 else ''}"


def classification_stall(project: Project) -> str:
    """The project page's banner: why this project's waiting items are not moving, or ""."""
    now = timezone.now()
    oldest = Item.objects.filter(project=project, status__in=WAITING).aggregate(oldest=Min("created_at"))["oldest"]
    if oldest is None:
        return ""
    last_claim = Item.objects.aggregate(last=Max("claimed_at"))["last"]
    idle = _seconds(now - max(oldest, last_claim) if last_claim else now - oldest)
    if idle < settings.LOUPE_STALL_AFTER:
        return ""
    why = "" if live_workers(now=now) else " No worker is running: start one (bin/up does) or check the worker's log."
    return f"{stalled_message(idle)}: classification is stalled.{why}"


def recent_restarts(*, within_seconds: float = 900) -> list[str]:
    """Lines bin/up wrote when it restarted a process that died, from the last ``within_seconds``."""
    path = Path(settings.VAR_DIR) / RESTARTS_FILE
    try:
        if time.time() - path.stat().st_mtime > within_seconds:
            return []
        lines = path.read_text().splitlines()[-20:]
    except OSError:
        return []
    cutoff = timezone.now() - timedelta(seconds=within_seconds)
    recent = []
    for line in lines:
        stamp, _, rest = line.partition(" ")
        try:
            at = datetime.fromisoformat(stamp)
        except ValueError:
            continue
        if at >= cutoff:
            recent.append(restart_message(at, rest))
    return recent


def restart_message(at: datetime, rest: str) -> str:
    process, _, code = rest.partition(" ")
    when = timezone.localtime(at).strftime("%H:%M:%S")
    return f"The {process} stopped unexpectedly (exit {code or '?'}) at {when} and was restarted automatically."


def _seconds(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0), 1)
