"""Loupe at a million items: every page and API a person touches, through gunicorn as shipped,
on a 1.2M-item project, beside a trivial request through the same server.

Run from the repository root, against a PostgreSQL database kept between runs (seeding takes
about three minutes, once)::

    createdb -h 127.0.0.1 -U postgres loupe_bench_scale
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_bench_scale CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/scale.py [--samples 30] [--explain 2]

The project ``scale-1m`` (bench/_seed.py, shared with bench/review_http.py): 1,000,000 items
waiting for review, 100,000 reviewed (each with its decision), 100,000 auto-accepted, every
item with its prediction. gunicorn runs with docker-compose.yml's options; the project admin
browses with a session cookie, the API is called with a token, each over one keep-alive
connection, one request at a time (the latency a person sees on an otherwise idle server).

Timed (``--samples`` each, after 3 untimed): the project list, the project page and the next
page of its item list (keyset pagination) and a page deep in the list, the needs-review
filter, an item page, claim, decision, grid claim, the export page and starting an export (the
form POST; the export itself runs on a worker, see bench/export.py), the admin item list and
its search. Floor: ``GET /livez`` over the same connection (gunicorn, Django's middleware,
one database round trip). Target (issue 14): every p95 <= 300 ms.

With ``--explain N``, the N slowest SQL statements of each request (captured by running it once
through Django's test client in this process: same views, same settings) are shown with
``EXPLAIN (ANALYZE, BUFFERS)`` (in a transaction that is rolled back).
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import _seed
from bench.review_http import Server

TARGET_P95_MS = 300.0
SLUG = "scale-1m"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--explain", type=int, default=2, help="slowest statements explained per page (default 2)")
    parser.add_argument("--port", type=int, default=8161, help="gunicorn's port on 127.0.0.1 (default 8161)")
    return parser.parse_args(argv)


class Browser:
    """One keep-alive connection with a session cookie (pages) or a token (API)."""

    def __init__(self, port: int, *, cookie: str = "", token: str = "", csrf: str = "") -> None:
        self.port, self.cookie, self.token, self.csrf = port, cookie, token, csrf
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: str | bytes | None = None,
                content_type: str = "application/json") -> tuple[int, bytes]:
        headers = {"Content-Type": content_type}
        if self.cookie:
            headers["Cookie"] = self.cookie
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if self.csrf and method == "POST":
            headers["X-CSRFToken"] = self.csrf
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                return response.status, response.read()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.connection.close()  # gunicorn closed an idle keep-alive connection: resend
                if attempt:
                    raise
        raise AssertionError("unreachable")


@dataclass
class Page:
    name: str
    method: str
    path: str
    body: str | None = None
    api: bool = False
    content_type: str = "application/json"
    expect: tuple[int, ...] = (200,)


def pages(browser: Browser, api: Browser, project, item_id: int, middle_id: int) -> list[Page]:
    """What a person touches, in the order they meet it."""
    base = f"/projects/{SLUG}/"
    status, body = browser.request("GET", base)
    found = re.search(rb'href="\?([^"]*(?:before|after)=\d+[^"]*)"', body)
    next_page = base + "?" + found.group(1).decode().replace("&amp;", "&") if found else base
    deep = re.sub(r"(before|after)=\d+", lambda m: f"{m.group(1)}={middle_id}", next_page) if found else base
    export_form = "destination=download&s3_url=&test_split=0.2&seed=0"
    return [
        Page("home (project list)", "GET", "/"),
        Page("project page", "GET", base),
        Page("item list, next page (keyset)" + ("" if found else " [no keyset link]"), "GET", next_page),
        Page("item list, page in the middle", "GET", deep),
        Page("item list, needs review", "GET", base + "?status=needs_review"),
        Page("item page", "GET", f"{base}items/{item_id}/"),
        Page("claim (API)", "POST", f"/api/v1/projects/{SLUG}/review/claim/", "{}", api=True),
        Page("grid claim (API)", "POST", f"/api/v1/projects/{SLUG}/review/grid/claim/", "{}", api=True),
        Page("review stats (API)", "GET", f"/api/v1/projects/{SLUG}/review/stats/", api=True),
        Page("export page", "GET", f"/review/{SLUG}/export/"),
        Page("export start (form POST)", "POST", f"/review/{SLUG}/export/", export_form,
             content_type="application/x-www-form-urlencoded", expect=(302,)),
        Page("admin item list", "GET", "/admin/classify/item/"),
        Page("admin item search", "GET", f"/admin/classify/item/?q=photo-{middle_id % 1_000_000}.jpg"),
    ]


def time_page(page: Page, client: Browser, samples: int) -> list[float]:
    times = []
    for number in range(samples + 3):
        started = time.perf_counter()
        status, body = client.request(page.method, page.path, page.body, page.content_type)
        elapsed = time.perf_counter() - started
        if status not in page.expect:
            raise SystemExit(f"{page.name}: {page.method} {page.path} answered {status}: {body[:300]!r}")
        if number >= 3:
            times.append(elapsed)
    return times


def time_decisions(api: Browser, samples: int) -> list[float]:
    """Claim (untimed), then the decision (timed), ``samples`` times."""
    times = []
    for _ in range(samples + 3):
        status, body = api.request("POST", f"/api/v1/projects/{SLUG}/review/claim/", "{}")
        claim = json.loads(body)
        started = time.perf_counter()
        status, body = api.request("POST", f"/api/v1/reviews/{claim['lease']['token']}/decision/",
                                   json.dumps({"labels": [claim["candidates"][0]["label_id"]]}))
        times.append(time.perf_counter() - started)
        if status != 201:
            raise SystemExit(f"decision answered {status}: {body[:300]!r}")
    return times[3:]


def release_grid_leases(project) -> None:
    from classify.models import Item

    Item.objects.filter(project=project, lease_token__isnull=False).update(
        lease_owner=None, lease_token=None, lease_expires_at=None)


def ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


# --- EXPLAIN -----------------------------------------------------------------------------------


def explain(page: Page, admin, reviewer, count: int) -> list[str]:
    """The ``count`` slowest SELECTs of one run of ``page`` in-process, with their plans."""
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from classify.auth import issue_token

    if page.api:
        client = Client(HTTP_AUTHORIZATION=f"Token {issue_token(reviewer)}", HTTP_HOST="127.0.0.1")
    else:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(admin)
    call = client.post if page.method == "POST" else client.get
    kwargs = {"data": page.body, "content_type": page.content_type} if page.method == "POST" else {}
    with CaptureQueriesContext(connection) as captured:
        call(page.path, **kwargs)
    selects = [q for q in captured.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    slowest = sorted(selects, key=lambda q: float(q["time"]), reverse=True)[:count]
    lines = [f"    {len(captured.captured_queries)} SQL statements"]
    for query in slowest:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
            plan = [row[0] for row in cursor.fetchall()]
            transaction.set_rollback(True)
        lines.append(f"    {float(query['time']) * 1000:.1f} ms: {query['sql'][:160]}...")
        lines += [f"      {line}" for line in plan[:12]]
    return lines


# --- Main --------------------------------------------------------------------------------------


def session_cookie(user) -> tuple[str, str]:
    from django.conf import settings
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    client = Client()
    client.force_login(user)
    csrf = _get_new_csrf_string()
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}; " \
           f"{settings.CSRF_COOKIE_NAME}={csrf}", csrf


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    var_dir = Path(tempfile.mkdtemp(prefix="loupe-scale-"))
    _seed.setup_django(var_dir / "bench")
    from classify.auth import issue_token
    from classify.models import ApiToken, Item
    from reviewer.models import Export

    project = _seed.project(SLUG)
    _seed.ensure_items(project, pending=1_000_000, reviewed=100_000, accepted=100_000)
    _seed.reset_project(project)
    admin, reviewer = _seed.admin_of(project), _seed.reviewers_of(project, 1)[0]
    ids = Item.objects.filter(project=project).order_by("pk").values_list("pk", flat=True)
    first_id = ids.first()
    item_id, middle_id = first_id + 600_000, first_id + 500_000
    server = None
    exports_before = set(Export.objects.filter(project=project).values_list("pk", flat=True))
    try:
        server = Server(args.port, var_dir / "server")
        cookie, csrf = session_cookie(admin)
        browser = Browser(args.port, cookie=cookie, csrf=csrf)
        api = Browser(args.port, token=issue_token(reviewer))
        floor = time_page(Page("floor", "GET", "/livez"), browser, args.samples)
        print(f"gunicorn {server.command}; project {SLUG}: {Item.objects.filter(project=project).count():,} items")
        print(f"{'page':<40} | {'p50 ms':>7} | {'p95 ms':>7} | {'floor p95':>9} | {'/floor':>6} | target")
        rows = []
        for page in pages(browser, api, project, item_id, middle_id):
            times = time_page(page, api if page.api else browser, args.samples)
            rows.append((page, times))
            if page.name.startswith("grid"):
                release_grid_leases(project)
        rows.insert(7, (Page("decision (API)", "POST", "", api=True), time_decisions(api, args.samples)))
        floor95 = ms(floor, 95)
        for page, times in rows:
            p95 = ms(times, 95)
            print(f"{page.name:<40} | {ms(times, 50):7.1f} | {p95:7.1f} | {floor95:9.1f} | {p95 / floor95:6.1f} | "
                  f"{'met' if p95 <= TARGET_P95_MS else 'MISSED'}", flush=True)
        worst = max(rows, key=lambda row: ms(row[1], 95))
        print(f"target: every p95 <= {TARGET_P95_MS:.0f} ms: slowest is {worst[0].name} at {ms(worst[1], 95):.1f} ms -> "
              f"{'met' if ms(worst[1], 95) <= TARGET_P95_MS else 'MISSED'}")
        if args.explain:
            print("\nEXPLAIN (ANALYZE, BUFFERS) of the slowest statements per request:")
            for page, _times in rows:
                if page.path:
                    print(f"  {page.name}: {page.method} {page.path}")
                    print("\n".join(explain(page, admin, reviewer, args.explain)))
                    release_grid_leases(project)
    finally:
        if server is not None:
            server.stop()
        Export.objects.filter(project=project).exclude(pk__in=exports_before).delete()
        ApiToken.objects.filter(user__in=[admin, reviewer]).delete()
        _seed.reset_project(project)
        shutil.rmtree(var_dir, ignore_errors=True)
        os.environ.pop("LOUPE_VAR_DIR", None)


if __name__ == "__main__":
    main()
