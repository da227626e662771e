"""Loupe dashboard benchmark: every dashboard endpoint over HTTP through gunicorn on a project of
1M items, beside its floors, and the rollup refresh for a day of 100k new items.

Run from the repository root, against a PostgreSQL database of its own::

    createdb -h 127.0.0.1 -U postgres loupe_bench_dashboard
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_bench_dashboard \\
        .venv/bin/python bench/dashboard.py [--sizes 100000,1000000] [--requests 20] [--port 8170]

The database must hold no items (a wrong URL cannot turn the benchmark loose on real data); the
benchmark's project (and with it every row it made) is deleted at exit.

Setup, per size (cumulative: each size tops up the one before): one project of 10 classes on a
"rekognition" backend name (nothing is called), 6 reviewers. Items are made by INSERT ... SELECT
over generate_series (no ORM objects): the newest 100,000 uploaded in the last 24 hours, the rest
spread over the 30 days before. Of the items, 3% rejected; scores skewed high; those at 0.8 or
more auto-accepted (5% of them audited); of the rest 88% reviewed (85% agreeing with the model)
after up to 6 hours, 12% still waiting. One prediction per scored item, one decision per reviewed
item (consensus agreement on those below 0.45, 2% undone), hourly backlog snapshots for 31 days.
Then VACUUM ANALYZE.

What is measured:

(1) refresh: ``dashboard.rollups.refresh_rollups`` over the last 24 hours (the day of 100k new
    items; 25 hourly buckets), the periodic refresh (the last LOUPE_ROLLUP_LOOKBACK_HOURS) and the
    full 31 days. Floor: reading the same day's rows once, without grouping (a count and a sum over
    the items, predictions and decisions of the day, through the same indexes).
(2) endpoints: p50/p95 of N GETs per endpoint (after 2 untimed ones) over one keep-alive HTTP
    connection to gunicorn started as bin/up starts it (``-c config/gunicorn.py``, ``--workers 2 --threads 4``, DEBUG off,
    collected static files), logged in as a member: the page, each plot's fragment at 7 and 30
    days, each plot's CSV at 30 days, and /metrics. Beside each: the target (300 ms), the HTTP
    floor (p95 of /livez on the same connection: what any request through gunicorn costs) and
    the query floor (p95 of the plot's selector called in this process: the rollup queries and
    their assembly, no HTTP, no template, no SVG). For contrast, one plot (class shares, 30 days)
    computed by scanning the prediction table instead of the rollups.

Reading it: endpoint p95 minus the HTTP floor is the plot's own cost; if it is far above the
query floor, rendering (SVG, template) dominates, else the rollup queries do. The ratio that
should not grow with the size is endpoint / query floor; the rollup row count grows with hours x
classes, not with items.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import http.client
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench import _seed

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loupe_bench_dashboard"
TARGET_MS = 300.0
DAY_ITEMS = 100_000
CLASSES = [f"class{i:02d}" for i in range(10)]
ISOLATED_ENV = (*_seed.ISOLATED_ENV, "CELERY_BROKER_URL")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="project sizes in items, ascending (default 100000,1000000)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per endpoint (default 20)")
    parser.add_argument("--port", type=int, default=8170, help="gunicorn's port on 127.0.0.1 (default 8170)")
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",")]
    if args.sizes != sorted(args.sizes) or args.sizes[0] < DAY_ITEMS:
        parser.error(f"--sizes must be ascending and at least {DAY_ITEMS}")
    return args


# --- Setup -------------------------------------------------------------------------------------


def setup_django(var_dir: Path) -> None:
    """Django on DATABASE_URL (PostgreSQL, migrated: bench/_seed.py), on a database of its own."""
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    _seed.setup_django(var_dir, isolated_env=ISOLATED_ENV)
    from django.core.management import call_command

    from classify.models import Item

    if Item.objects.exists():
        raise SystemExit("the database already holds items: run the benchmark on a database of its own")
    call_command("collectstatic", "--noinput", verbosity=0)


def create_fixture():
    from django.contrib.auth import get_user_model

    from classify.models import Label, Membership, Project

    project = Project.objects.create(slug="bench-dashboard", name="Bench dashboard", backend="rekognition")
    for order, name in enumerate([*CLASSES, "unknown"]):
        Label.objects.create(project=project, name=name, order=order, is_unknown=name == "unknown")
    users = [get_user_model().objects.create_user(f"bench-dash-{i}") for i in range(6)]
    Membership.objects.bulk_create(Membership(project=project, user=user) for user in users)
    return project, users


ITEMS_SQL = """
INSERT INTO classify_item (image, original, original_filename, source_format, sha256, width, height, status,
    status_reason, attempts, created_at, updated_at, project_id, audit, escalated, reviews_needed, top_label,
    top_score, margin, backend, label_id, labelled_at, labelled_by_id, error_detail, claimed_by, idempotency_key)
SELECT 'items/bench.jpg', '', '', 'JPEG', md5(g::text) || md5((g + 7)::text), 640, 480, status, '', 1, created,
    created, %(project)s, status = 'reviewed' AND top_score >= 0.8, false, 1,
    CASE WHEN status = 'rejected' THEN '' ELSE (%(names)s::text[])[li + 1] END,
    CASE WHEN status = 'rejected' THEN NULL ELSE top_score END, 0.1, 'rekognition',
    CASE WHEN status = 'auto_accepted' THEN (%(ids)s::bigint[])[li + 1]
         WHEN status = 'reviewed' THEN (%(ids)s::bigint[])[CASE WHEN r_right < 0.85 THEN li ELSE (li + 1) %% 10 END + 1] END,
    CASE WHEN status = 'reviewed' THEN created + r_wait * interval '6 hours' END,
    CASE WHEN status = 'reviewed' THEN (%(users)s::int[])[g %% 6 + 1] END, '', '', ''
FROM (
    SELECT *, CASE WHEN r_status < 0.03 THEN 'rejected'
                   WHEN top_score >= 0.8 AND r_audit >= 0.05 THEN 'auto_accepted'
                   WHEN r_status < 0.88 OR top_score >= 0.8 THEN 'reviewed' ELSE 'needs_review' END AS status
    FROM (SELECT g, %(start)s::timestamptz + random() * %(seconds)s * interval '1 second' AS created,
                 floor(random() * 10)::int AS li, 0.3 + 0.69 * sqrt(random()) AS top_score, random() AS r_status,
                 random() AS r_right, random() AS r_wait, random() AS r_audit
          FROM generate_series(1, %(n)s) AS g) AS draws
) AS rows
"""

PREDICTIONS_SQL = """
INSERT INTO classify_prediction (item_id, backend, model_version, scores, top_label, top_score, margin, latency_ms,
    thresholds, decision, reason, created_at, cost_usd, saved_usd, provenance)
SELECT id, 'rekognition', 'v1', jsonb_build_object(top_label, top_score, 'unknown', 1 - top_score), top_label, top_score,
    0.1, 20 + random() * 480, %(thresholds)s::jsonb,
    CASE WHEN top_score >= 0.8 THEN 'auto_accepted' ELSE 'needs_review' END, 'bench',
    created_at + interval '1 second', 0.001, 0, ''
FROM classify_item WHERE project_id = %(project)s AND id > %(after)s AND status <> 'rejected'
"""

DECISIONS_SQL = """
INSERT INTO reviewer_decision (item_id, reviewer_id, kind, label_id, audit, undone, seconds_spent, agrees, created_at)
SELECT id, labelled_by_id, 'label', label_id, audit, false, 1 + random() * 20,
    CASE WHEN top_score < 0.45 THEN random() < 0.8 END, labelled_at
FROM classify_item WHERE project_id = %(project)s AND id > %(after)s AND status = 'reviewed';
INSERT INTO reviewer_decision (item_id, reviewer_id, kind, audit, undone, created_at)
SELECT id, labelled_by_id, 'undo', false, false, labelled_at + interval '20 seconds'
FROM classify_item WHERE project_id = %(project)s AND id > %(after)s AND status = 'reviewed' AND random() < 0.02
"""

SNAPSHOTS_SQL = """
DELETE FROM dashboard_statussnapshot WHERE project_id = %(project)s;
INSERT INTO dashboard_statussnapshot (project_id, hour, status, count, backend_errors)
SELECT %(project)s, date_trunc('hour', now()) - h * interval '1 hour', s, (1000 + 500 * sin(h / 12.0) + random() * 200)::int, 0
FROM generate_series(0, 744) AS h, unnest(ARRAY['needs_review', 'queued', 'failed']) AS s
"""


def add_items(project, users, *, n: int, start, seconds: float) -> float:
    """Insert ``n`` items uploaded from ``start`` over ``seconds``, with predictions and decisions."""
    import json

    from django.db import connection

    from classify.models import Item

    started = time.perf_counter()
    ids = list(project.labels.filter(is_unknown=False).order_by("order").values_list("pk", flat=True))
    after = Item.objects.filter(project=project).order_by("-pk").values_list("pk", flat=True).first() or 0
    thresholds = json.dumps({name: {"threshold": 0.8, "margin": 0.0} for name in CLASSES})
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [0.1 + (after % 1000) / 10000])
        cursor.execute(ITEMS_SQL, {"project": project.pk, "names": CLASSES, "ids": ids, "users": [u.pk for u in users],
                                   "start": start, "seconds": seconds, "n": n})
        cursor.execute(PREDICTIONS_SQL, {"project": project.pk, "after": after, "thresholds": thresholds})
        cursor.execute(DECISIONS_SQL, {"project": project.pk, "after": after})
        cursor.execute(SNAPSHOTS_SQL, {"project": project.pk})
    return time.perf_counter() - started


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("classify_item", "classify_prediction", "reviewer_decision", "dashboard_hourlyrollup",
                      "dashboard_statussnapshot"):
            cursor.execute(f"VACUUM ANALYZE {table}")


# --- Measuring ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(call, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def refresh_floor(now) -> float:
    """Read the day's rows once, without grouping: the least any refresh of the day must do."""
    from django.db import connection

    day = now - timedelta(hours=24)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), sum(width) FROM classify_item WHERE created_at >= %s", [day])
        cursor.execute("SELECT count(*), sum(top_score), sum(latency_ms) FROM classify_prediction WHERE created_at >= %s", [day])
        cursor.execute("SELECT count(*) FROM classify_item WHERE labelled_at >= %s", [day])
        cursor.execute("SELECT count(*), sum(seconds_spent) FROM reviewer_decision WHERE created_at >= %s", [day])
    return time.perf_counter() - started


def measure_refresh() -> None:
    from django.conf import settings
    from django.utils import timezone

    from dashboard.services import rollups

    now = timezone.now()
    floor = min(refresh_floor(now) for _ in range(2))
    day = rollups.refresh_rollups(since=now - timedelta(hours=24))
    periodic = rollups.refresh_rollups(since=now - timedelta(hours=settings.LOUPE_ROLLUP_LOOKBACK_HOURS))
    full = rollups.refresh_rollups(since=now - timedelta(days=31))
    rollups.take_status_snapshot(now=now)
    print(f"  refresh, last 24 h ({DAY_ITEMS:,} new items): {day.seconds:7.2f} s   floor (read the day's rows once) "
          f"{floor:6.2f} s   ratio {day.seconds / floor:5.1f}   ({day.rows:,} rollup values)")
    print(f"  refresh, periodic (last {settings.LOUPE_ROLLUP_LOOKBACK_HOURS} h):     {periodic.seconds:7.2f} s")
    print(f"  refresh, full 31 days:                  {full.seconds:7.2f} s   ({full.rows:,} rollup values)")


def session_cookie(user) -> str:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


def start_gunicorn(port: int, var_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "LOUPE_VAR_DIR": str(var_dir)}
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "-c", "config/gunicorn.py", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--threads", "4", "--log-level", "warning"], cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/livez")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("gunicorn did not answer /livez within 30 s")


class Client:
    def __init__(self, port: int, cookie: str):
        self.port, self.cookie = port, cookie
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> float:
        started = time.perf_counter()
        self.connection.request("GET", path, headers={"Cookie": self.cookie, "Host": "127.0.0.1"})
        response = self.connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
        return elapsed

    def times(self, path: str, n: int) -> list[float]:
        # A fresh connection per endpoint: gunicorn closes one idle past its keep-alive (2 s)
        # while this process times the selector in between.
        self.connection.close()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        for _ in range(2):
            self.get(path)
        return [self.get(path) for _ in range(n)]


def measure_endpoints(project, user, port: int, n: int) -> list[float]:
    from dashboard import selectors
    from dashboard.selectors.rollups import span_for

    client = Client(port, session_cookie(user))
    http_floor = percentile(client.times("/livez", n), 0.95)
    base = f"/projects/{project.slug}/dashboard/"
    rows = [("page", base, None)]
    for days in (7, 30):
        rows += [(f"{name} {days}d", f"{base}plots/{name}/?days={days}", (name, days)) for name in selectors.PLOTS]
    rows += [(f"{name} 30d csv", f"{base}plots/{name}/?days=30&format=csv", (name, 30)) for name in selectors.PLOTS]
    rows.append(("/metrics", "/metrics", None))
    print(f"  {'endpoint':34} {'p50 ms':>8} {'p95 ms':>8} {'target':>7} {'http floor':>10} {'query floor':>11} "
          f"{'p95/query':>9}")
    worst = []
    for label, path, plot in rows:
        samples = client.times(path, n)
        p95 = percentile(samples, 0.95)
        worst.append(p95)
        query = ""
        if plot is not None:
            build, span = selectors.PLOTS[plot[0]], span_for(plot[1])
            query_p95 = percentile(timed(lambda b=build, s=span: b(project, s), max(5, n // 2)), 0.95)
            query = f"{query_p95:11.1f} {p95 / query_p95:9.1f}"
        verdict = "ok" if p95 <= TARGET_MS else "OVER"
        print(f"  {label:34} {statistics.median(samples):8.1f} {p95:8.1f} {TARGET_MS:5.0f} {verdict:>2}"
              f"{http_floor:9.1f} {query}")
    return worst


def scan_contrast(project) -> None:
    """Class shares over 30 days computed from the prediction table, as without rollups."""
    from django.db.models import Count
    from django.db.models.functions import TruncDay
    from django.utils import timezone

    from classify.models import Prediction
    from dashboard.selectors.model import class_shares
    from dashboard.selectors.rollups import span_for

    since = timezone.now() - timedelta(days=30)

    def scan():
        return list(Prediction.objects.filter(item__project=project, created_at__gte=since)
                    .annotate(day=TruncDay("created_at")).values("day", "top_label").annotate(n=Count("pk")))

    scanned = percentile(timed(scan, 3), 0.95)
    rolled = percentile(timed(lambda: class_shares(project, span_for(30)), 3), 0.95)
    print(f"  contrast, class shares 30 d: from the prediction table {scanned:8.1f} ms, from the rollups "
          f"{rolled:6.1f} ms")


def _stop(signum, _frame) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # runs the clean-up below


def main(argv=None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    var_dir = Path(tempfile.mkdtemp(prefix="loupe-bench-dashboard-"))
    setup_django(var_dir)
    from django.db import connection
    from django.utils import timezone

    from dashboard.models import HourlyRollup

    project, users = create_fixture()
    server = None
    try:
        now = timezone.now()
        seconds = add_items(project, users, n=DAY_ITEMS, start=now - timedelta(hours=24), seconds=24 * 3600 - 60)
        have = DAY_ITEMS
        print(f"database {connection.settings_dict['NAME']}, {os.cpu_count()} CPUs; target p95 <= {TARGET_MS:.0f} ms")
        server = start_gunicorn(args.port, var_dir)
        for size in args.sizes:
            if size > have:
                seconds += add_items(project, users, n=size - have, start=now - timedelta(days=31), seconds=30 * 86400)
                have = size
            vacuum()
            print(f"\n== {size:,} items ({seconds:.0f} s to insert so far) ==")
            measure_refresh()
            vacuum()
            print(f"  rollup rows of the project: {HourlyRollup.objects.filter(project=project).count():,}")
            measure_endpoints(project, users[0], args.port, args.requests)
            scan_contrast(project)
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        started = time.perf_counter()
        with connection.cursor() as cursor:  # the cascade through the ORM would load 1M rows
            for sql in ("DELETE FROM reviewer_decision WHERE item_id IN (SELECT id FROM classify_item WHERE project_id = %s)",
                        "DELETE FROM classify_prediction WHERE item_id IN (SELECT id FROM classify_item WHERE project_id = %s)",
                        "DELETE FROM classify_item WHERE project_id = %s"):
                cursor.execute(sql, [project.pk])
        project.delete()
        for user in users:
            user.delete()
        shutil.rmtree(var_dir, ignore_errors=True)
        print(f"\ncleaned up in {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
