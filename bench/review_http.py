"""Loupe review API over HTTP: claim + decision through gunicorn as shipped, against the claim
query alone.

Run from the repository root, against a PostgreSQL database kept between runs::

    createdb -h 127.0.0.1 -U postgres loupe_bench_scale
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_bench_scale \\
        .venv/bin/python bench/review_http.py [--sizes 20000,100000,1000000] [--reviewers 1,4,8,16]

The real path: gunicorn started with the command line of ``docker-compose.yml``'s ``web``
service (its ``--workers``/``--threads`` are read from that file), the shipped settings
(``DEBUG`` off, the default ``DB_CONN_MAX_AGE``), PostgreSQL, and R reviewer threads, each a plain
project member with its own API token and its own keep-alive HTTP connection, doing
``POST .../review/claim/`` then ``POST /api/v1/reviews/<token>/decision/`` with the first
candidate, without pause. Projects (bench/_seed.py): ``review-20k`` and ``review-100k`` hold only
waiting items; the 1M size is ``scale-1m`` (bench/scale.py's project: 1M waiting, 100k reviewed
with decisions, 100k auto-accepted). Each cell starts from the same queue (``reset_project``
puts back what earlier cells decided) and runs until ``--decisions`` decisions or ``--seconds``.

A Celery worker for the default queue (``-Q celery``, as docker-compose.yml's ``worker``) runs
beside gunicorn: a decision's ``item.settled`` event is fanned out there, not in the request, and
its CPU is the server's too. ``CELERY_BROKER_URL`` should name a Redis (as shipped).

Two ways of driving the reviewers, each in its own table:

- **closed loop** (``--reviewers``): every reviewer claims and decides without pause, so the
  server is saturated and a pair's latency is mostly the wait for a CPU: at R reviewers on C
  cores it cannot fall below R x (server CPU per pair) / C, printed as "CPU-bound mean";
- **paced** (``--paced``, default 8 reviewers): each reviewer claims, looks at the picture for a
  think time drawn uniformly from ``--think`` (default 1-2 s, a person at the keyboard), decides,
  and claims again: the latency a reviewer at that pace sees. Its floor runs in the same cell,
  one claim query every 0.25 s on its own connection, under the same load.

Reported per cell: claim, decision and claim+decision (the pair a reviewer waits for) p50, p95
and p99 in ms; decisions/s; double assignments (an item handed out twice: every claimed item is
decided, so a second claim of it is one); failed requests; the server's CPU time per
claim+decision pair (gunicorn's processes, the worker's, and the PostgreSQL backends of this
database, from /proc, sampled every 0.5 s: ``CpuMeter``): on a shared machine latency includes waiting for a CPU, CPU time per
request does not; and the 1-minute load average at the cell's end (other work on the machine
shows there). Per size: SQL statements per claim and per decision (one request of each through
Django's test client in this process, same views and settings, counted with
``CaptureQueriesContext``; the transaction's BEGIN and COMMIT are not counted), and the review
stats call with what is hidden (``GET .../review/stats/``) p50/p95 over 20 calls.

Floor, beside each cell: the claim query alone. The exact ``SELECT ... FOR UPDATE SKIP LOCKED``
the claim ran (captured above) executed by R threads, each over its own persistent database
connection, in a transaction that is rolled back (so it never empties the queue): what a claim
cannot go below on this machine. ratio = claim p95 / floor p95.

Targets (issue 14): claim + decision p95 <= 50 ms at 8 reviewers and 100k pending (judged on
both tables: closed loop and paced); p95 at 1M within 1.5x of p95 at 20k (8 reviewers, closed
loop). Each is printed with met/missed.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import _seed
from bench._worker import Worker

ROOT = Path(__file__).resolve().parent.parent
TARGET_PAIR_P95_MS = 50.0
TARGET_GROWTH = 1.5
PROJECTS = {20_000: ("review-20k", {}), 100_000: ("review-100k", {}),
            1_000_000: ("scale-1m", {"reviewed": 100_000, "accepted": 100_000})}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000,1000000", help="waiting items (20000, 100000, 1000000)")
    parser.add_argument("--reviewers", default="1,4,8,16", help="concurrent reviewers per cell (default 1,4,8,16)")
    parser.add_argument("--decisions", type=int, default=1000, help="timed decisions per cell at most (default 1000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="timed seconds per cell at most (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed claim+decision pairs per reviewer (default 3)")
    parser.add_argument("--paced", default="8", help="reviewers of the paced cells (default 8; '' for none)")
    parser.add_argument("--think", default="1-2", help="paced think time per item, seconds, uniform (default 1-2)")
    parser.add_argument("--paced-seconds", type=float, default=40.0, help="timed seconds per paced cell (default 40)")
    parser.add_argument("--port", type=int, default=8160, help="gunicorn's port on 127.0.0.1 (default 8160)")
    args = parser.parse_args(argv)
    args.paced = [int(count) for count in args.paced.split(",") if count]
    args.think = tuple(float(part) for part in args.think.split("-"))
    args.sizes = [int(size) for size in args.sizes.split(",")]
    args.reviewers = [int(count) for count in args.reviewers.split(",")]
    if not set(args.sizes) <= set(PROJECTS):
        parser.error(f"--sizes: choose from {', '.join(map(str, PROJECTS))}")
    return args


def shipped_gunicorn() -> list[str]:
    """The ``web`` service's gunicorn options from docker-compose.yml (workers, threads)."""
    text = (ROOT / "docker-compose.yml").read_text()
    line = re.search(r"gunicorn (?:-c \S+ )?config\.wsgi[^\n\"]*", text).group(0)
    workers = re.search(r"--workers (\d+)", line).group(1)
    threads = re.search(r"--threads (\d+)", line).group(1)
    config = re.search(r"-c (\S+)", line)
    return [*(["-c", config.group(1)] if config else []), "--workers", workers, "--threads", threads]


# --- The server --------------------------------------------------------------------------------


class Server:
    """gunicorn on 127.0.0.1:port with the shipped options, its own var folder, its log kept."""

    def __init__(self, port: int, var_dir: Path) -> None:
        from django.core.management import call_command

        call_command("collectstatic", interactive=False, verbosity=0)  # as bin/up and the Dockerfile do
        var_dir.mkdir(parents=True, exist_ok=True)
        self.port, self.log = port, var_dir / "gunicorn.log"
        from django.conf import settings

        # This process's key: sessions it makes (bench/scale.py logs in here) are valid there.
        env = {**os.environ, "LOUPE_VAR_DIR": str(var_dir), "SECRET_KEY": settings.SECRET_KEY}
        command = [str(Path(sys.executable).with_name("gunicorn")), *shipped_gunicorn(), "config.wsgi",
                   "--bind", f"127.0.0.1:{port}", "--access-logfile", "-"]
        self.command = " ".join(command[1:])
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log.open("wb"),
                                        stderr=subprocess.STDOUT)
        # The default queue's worker (docker-compose.yml's worker also takes classify_local):
        # the settlement events' fan-out (integrations.dispatch_event) runs there.
        self.worker = Worker(name="review-http", folder=var_dir / "worker", queues="celery", env=env)
        self.worker.wait_ready()
        self._wait()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited; see {self.log}:\n{self.log.read_text()[-2000:]}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/livez")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise SystemExit("gunicorn did not answer /livez within 60 s")

    def stop(self) -> None:
        if os.environ.get("LOUPE_BENCH_KEEP_LOG"):
            print(self.log.read_text()[-5000:])
        self.worker.stop()
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cpu_seconds(pids, *, missing: float | None = 0.0) -> float | None:
    """User + system CPU seconds of these processes so far (Linux /proc); a vanished one adds
    ``missing`` (None: the answer is None)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if missing is None:
                return None
            total += missing
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class CpuMeter:
    """The server's CPU seconds over a cell (``server_pids``), sampled every half second: a
    PostgreSQL backend that ends meanwhile (gunicorn reopens its connections after
    ``DB_CONN_MAX_AGE``) keeps what it used until its last sample, and one that starts counts from
    its first, instead of a before/after difference that loses the one and misses the other."""

    def __init__(self, server: Server, *, exclude: tuple[int, ...] = ()) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.exclude = {*exclude, cursor.fetchone()[0]}  # this thread's connection
        self.server, self.first, self.last = server, {}, {}
        self.done, self.ready = threading.Event(), threading.Event()
        self.sample()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        self.ready.wait()

    def sample(self) -> None:
        for pid in server_pids(self.server, exclude=tuple(self.exclude)):
            used = cpu_seconds([pid], missing=None)
            if used is not None:
                self.first.setdefault(pid, used)
                self.last[pid] = used

    def _run(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:  # the sampler's own connection is not the server's
            cursor.execute("SELECT pg_backend_pid()")
            self.exclude.add(cursor.fetchone()[0])
        self.ready.set()
        while not self.done.wait(0.5):
            self.sample()
        connection.close()

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        self.sample()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def server_pids(server: Server, *, exclude: tuple[int, ...] = ()) -> list[int]:
    """gunicorn's processes, the worker's, and the PostgreSQL backends serving this database (the
    benchmark's own Django connection and ``exclude`` aside): the server side of every request."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        backends = [row[0] for row in cursor.fetchall() if row[0] not in exclude]
    worker = server.worker.process.pid
    return [server.process.pid, *children(server.process.pid), worker, *children(worker), *backends]


# --- Clients -----------------------------------------------------------------------------------


class Client:
    """One reviewer: an API token and one keep-alive HTTP connection."""

    def __init__(self, port: int, token: str, slug: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.slug = slug

    def post(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        try:
            self.connection.request("POST", path, body=json.dumps(body or {}), headers=self.headers)
            response = self.connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # gunicorn closed the idle keep-alive connection (after its 2 s keepalive): the
            # request never reached it, so sending it again on a new connection is safe.
            self.connection.close()
            self.connection.request("POST", path, body=json.dumps(body or {}), headers=self.headers)
            response = self.connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})

    def pair(self, think: float = 0.0) -> tuple[float, float, int] | None:
        """Claim, look at the picture for ``think`` seconds, decide with the first candidate:
        (claim s, decision s, item id)."""
        started = time.perf_counter()
        status, claim = self.post(f"/api/v1/projects/{self.slug}/review/claim/")
        claim_seconds = time.perf_counter() - started
        if status == 204:
            return None
        if status != 200:
            raise RuntimeError(f"claim answered {status}: {claim}")
        token, label = claim["lease"]["token"], claim["candidates"][0]["label_id"]
        if think:
            time.sleep(think)
        deciding = time.perf_counter()
        status, decided = self.post(f"/api/v1/reviews/{token}/decision/",
                                    {"labels": [label], "seconds_spent": round(think, 3) or 1})
        if status != 201:
            raise RuntimeError(f"decision answered {status}: {decided}")
        return claim_seconds, time.perf_counter() - deciding, claim["item"]["id"]


@dataclass
class Cell:
    size: int
    reviewers: int
    paced: bool = False
    claims: list[float] = field(default_factory=list)
    decisions: list[float] = field(default_factory=list)
    pairs: list[float] = field(default_factory=list)
    items: list[int] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    wall: float = 0.0
    server_cpu: float = 0.0  # CPU seconds of gunicorn and its PostgreSQL backends while timed
    floor_cpu: float = 0.0  # CPU seconds of the floor's PostgreSQL backends
    load: float = 0.0  # 1-minute load average at the end of the cell
    errors: list[str] = field(default_factory=list)

    @property
    def double_assignments(self) -> int:
        return len(self.items) - len(set(self.items))


def run_threads(bodies, seconds: float, total: int) -> float:
    """Run each body (a callable returning False to stop) in its own thread until ``total``
    calls in all or ``seconds`` have passed; returns the wall time."""
    lock, left = threading.Lock(), [total]
    deadline = [0.0]
    barrier = threading.Barrier(len(bodies) + 1)

    def loop(body):
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            if body() is False:
                return

    threads = [threading.Thread(target=loop, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def run_cell(args, cell: Cell, slug: str, tokens: list[str], floor_sql: str, server: Server) -> None:
    clients = [Client(args.port, token, slug) for token in tokens[: cell.reviewers]]
    for client in clients:  # untimed: connections open, gunicorn threads and caches warm
        for _ in range(args.warmup):
            client.pair()
    floor = PacedFloor(floor_sql) if cell.paced else None
    meter = CpuMeter(server, exclude=(floor.backend,) if floor else ())

    def body_for(client: Client, number: int):
        rng, first = random.Random(number), [cell.paced]

        def body():
            if first[0]:  # paced reviewers do not start in step
                first[0] = False
                time.sleep(rng.uniform(0, args.think[1]))
            try:
                result = client.pair(rng.uniform(*args.think) if cell.paced else 0.0)
            except Exception as exc:  # noqa: BLE001  (counted and shown, the cell goes on)
                cell.errors.append(str(exc)[:200])
                return False
            if result is None:
                return False
            claim, decision, item = result
            cell.claims.append(claim)
            cell.decisions.append(decision)
            cell.pairs.append(claim + decision)
            cell.items.append(item)
            return True
        return body

    bodies = [body_for(client, number) for number, client in enumerate(clients)]
    if floor is not None:
        floor.start()
        cell.wall = run_threads(bodies, args.paced_seconds, 1_000_000)
        cell.floor, cell.floor_cpu = floor.stop()
    else:
        cell.wall = run_threads(bodies, args.seconds, args.decisions)
    cell.server_cpu = meter.stop()
    cell.load = os.getloadavg()[0]
    for client in clients:
        client.connection.close()
    if floor is None:
        run_floor(cell, floor_sql, len(cell.claims))


class PacedFloor:
    """The claim query alone, once every ``every`` seconds on its own connection (rolled back),
    in a thread beside a paced cell: what a claim costs under that same load."""

    def __init__(self, sql: str, every: float = 0.25) -> None:
        import psycopg
        from django.db import connection as django_connection

        self.sql, self.every = sql, every
        self.connection = psycopg.connect(**django_connection.get_connection_params())
        self.backend = self.connection.info.backend_pid
        self.times: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _query(self) -> float:
        started = time.perf_counter()
        with self.connection.transaction(force_rollback=True):
            self.connection.execute(self.sql).fetchall()
        return time.perf_counter() - started

    def _run(self) -> None:
        self._query()  # warm
        while not self.done.wait(self.every):
            self.times.append(self._query())

    def start(self) -> None:
        self.cpu_before = cpu_seconds([self.backend])
        self.thread.start()

    def stop(self) -> tuple[list[float], float]:
        self.done.set()
        self.thread.join()
        cpu = cpu_seconds([self.backend]) - self.cpu_before
        self.connection.close()
        return self.times, cpu


def run_floor(cell: Cell, sql: str, calls: int) -> None:
    """The captured claim query, rolled back, over one persistent connection per thread."""
    import psycopg
    from django.db import connection as django_connection

    params = django_connection.get_connection_params()
    connections = [psycopg.connect(**params) for _ in range(cell.reviewers)]

    def body_for(connection):
        def body():
            started = time.perf_counter()
            with connection.transaction(force_rollback=True):
                connection.execute(sql).fetchall()
            cell.floor.append(time.perf_counter() - started)
        return body

    bodies = [body_for(connection) for connection in connections]
    for body in bodies:
        body()  # warm
    cell.floor.clear()
    backends = [connection.info.backend_pid for connection in connections]
    before = cpu_seconds(backends)
    run_threads(bodies, 30.0, max(calls, 200))
    cell.floor_cpu = cpu_seconds(backends) - before
    for connection in connections:
        connection.close()


# --- Statement counts and the floor's query ---------------------------------------------------


def statements_per_request(project, reviewer) -> tuple[int, int, str]:
    """One claim and one decision through Django's test client (same views, same settings):
    SQL statements of each, and the claim's SELECT ... SKIP LOCKED as executed."""
    from django.db import connection
    from django.test import Client as DjangoClient
    from django.test.utils import CaptureQueriesContext

    from classify.auth import issue_token

    client = DjangoClient(HTTP_AUTHORIZATION=f"Token {issue_token(reviewer)}", HTTP_HOST="127.0.0.1")
    client.post(f"/api/v1/projects/{project.slug}/review/claim/")  # token use, caches: as in a session
    first = client.post(f"/api/v1/projects/{project.slug}/review/claim/").json()
    client.post(f"/api/v1/reviews/{first['lease']['token']}/decision/", {"labels": [first["candidates"][0]["label_id"]]},
                content_type="application/json")
    with CaptureQueriesContext(connection) as claim_queries:
        claim = client.post(f"/api/v1/projects/{project.slug}/review/claim/").json()
    with CaptureQueriesContext(connection) as decision_queries:
        client.post(f"/api/v1/reviews/{claim['lease']['token']}/decision/",
                    {"labels": [claim["candidates"][0]["label_id"]]}, content_type="application/json")
    sql = next(q["sql"] for q in claim_queries.captured_queries if "SKIP LOCKED" in q["sql"])
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT")
    count = lambda queries: sum(1 for q in queries if not q["sql"].startswith(control))  # noqa: E731
    return count(claim_queries.captured_queries), count(decision_queries.captured_queries), sql


def stats_line(args, slug: str, token: str, calls: int = 20) -> str:
    """The review stats call (what the empty review screen asks: counts and what is hidden),
    one client, one call after another."""
    client, times = Client(args.port, token, slug), []
    for _ in range(calls + 2):
        started = time.perf_counter()
        client.connection.request("GET", f"/api/v1/projects/{slug}/review/stats/", headers=client.headers)
        response = client.connection.getresponse()
        response.read()
        if response.status != 200:
            return f"stats answered {response.status}"
        times.append(time.perf_counter() - started)
    client.connection.close()
    times = times[2:]  # the first two warm the connection
    return f"stats (with hidden) p50 {pct(times, 50):.1f} ms, p95 {pct(times, 95):.1f} ms ({calls} calls)"


# --- Output ------------------------------------------------------------------------------------


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] * 1000 if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def trio(values: list[float]) -> str:
    return f"{pct(values, 50):6.1f} {pct(values, 95):6.1f} {pct(values, 99):6.1f}"


HEADER = (f"{'pending':>9} {'rev':>3} | {'claim p50  p95    p99':>20} | {'decision p50 p95 p99':>20} | "
          f"{'claim+dec p50 p95 p99':>21} | {'dec/s':>6} | {'double':>6} | {'floor p50 p95 p99':>20} | "
          f"{'claim/floor p95':>15} | {'server CPU ms/pair':>18} | {'CPU-bound mean ms':>17} | "
          f"{'floor CPU ms':>12} | {'load':>5}")
CORES = os.cpu_count() or 1


def print_cell(cell: Cell) -> None:
    ratio = pct(cell.claims, 95) / pct(cell.floor, 95) if cell.floor and cell.claims else float("nan")
    rate = len(cell.decisions) / cell.wall if cell.wall else 0.0
    cpu_pair = cell.server_cpu * 1000 / max(1, len(cell.pairs))
    # Closed loop: R reviewers share the cores, so a pair takes at least R x CPU / cores on average.
    bound = f"{cell.reviewers * cpu_pair / CORES:17.1f}" if not cell.paced else f"{'-':>17}"
    print(f"{cell.size:>9,} {cell.reviewers:>3} | {trio(cell.claims):>20} | {trio(cell.decisions):>20} | "
          f"{trio(cell.pairs):>21} | {rate:6.1f} | {cell.double_assignments:>6} | {trio(cell.floor):>20} | "
          f"{ratio:15.1f} | {cpu_pair:18.1f} | {bound} | "
          f"{cell.floor_cpu * 1000 / max(1, len(cell.floor)):12.2f} | {cell.load:5.1f}"
          + (f"  ({len(cell.errors)} failed: {cell.errors[0]})" if cell.errors else ""),
          flush=True)


def print_targets(cells: list[Cell]) -> None:
    by_key = {(cell.size, cell.reviewers, cell.paced): cell for cell in cells}
    for paced, name in ((False, "closed loop"), (True, "paced")):
        target = by_key.get((100_000, 8, paced))
        if target and target.pairs:
            p95 = pct(target.pairs, 95)
            print(f"target: claim+decision p95 <= {TARGET_PAIR_P95_MS:.0f} ms at 8 reviewers, 100k pending, {name}: "
                  f"{p95:.1f} ms -> {'met' if p95 <= TARGET_PAIR_P95_MS else 'MISSED'}")
    small, large = by_key.get((20_000, 8, False)), by_key.get((1_000_000, 8, False))
    if small and large and small.pairs and large.pairs:
        growth = pct(large.pairs, 95) / pct(small.pairs, 95)
        print(f"target: claim+decision p95 at 1M within {TARGET_GROWTH}x of 20k (8 reviewers, closed loop): "
              f"{growth:.2f}x -> {'met' if growth <= TARGET_GROWTH else 'MISSED'}")
    doubles = sum(cell.double_assignments for cell in cells)
    print(f"double assignments in {sum(len(cell.items) for cell in cells):,} decisions: {doubles}")


# --- Main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    var_dir = Path(tempfile.mkdtemp(prefix="loupe-review-http-"))
    _seed.setup_django(var_dir / "bench")
    from classify.auth import issue_token
    from classify.models import ApiToken

    server = None
    cells: list[Cell] = []
    issued: list = []
    tokens: dict[int, list[str]] = {}
    try:
        projects = {}
        for size in args.sizes:
            slug, extra = PROJECTS[size]
            projects[size] = project = _seed.project(slug)
            _seed.ensure_items(project, pending=size, **extra)
            _seed.reset_project(project)
        server = Server(args.port, var_dir / "server")
        print(f"gunicorn {server.command}  (DATABASE_URL {os.environ['DATABASE_URL']})")
        print(f"{CORES} cores; load average at the start {os.getloadavg()[0]:.1f}")
        floors = {}
        print("closed loop (no think time):")
        print(HEADER)
        for size in args.sizes:
            project = projects[size]
            reviewers = _seed.reviewers_of(project, max(args.reviewers + args.paced))
            claim_n, decision_n, floors[size] = statements_per_request(project, reviewers[0])
            issued += reviewers
            tokens[size] = [issue_token(reviewer) for reviewer in reviewers]
            for count in args.reviewers:
                _seed.reset_project(project)
                cell = Cell(size, count)
                run_cell(args, cell, project.slug, tokens[size], floors[size], server)
                print_cell(cell)
                cells.append(cell)
            print(f"{size:>9,}     SQL statements per request: claim {claim_n}, decision {decision_n}; "
                  f"{stats_line(args, project.slug, tokens[size][0])}", flush=True)
            _seed.reset_project(project)
        if args.paced:
            print(f"paced (each reviewer: claim, think {args.think[0]:g}-{args.think[1]:g} s, decide; the floor: "
                  "one claim query every 0.25 s beside them):")
            print(HEADER)
        for size in args.sizes if args.paced else ():
            for count in args.paced:
                _seed.reset_project(projects[size])
                cell = Cell(size, count, paced=True)
                run_cell(args, cell, projects[size].slug, tokens[size], floors[size], server)
                print_cell(cell)
                cells.append(cell)
            _seed.reset_project(projects[size])
        print_targets(cells)
    finally:
        if server is not None:
            server.stop()
        ApiToken.objects.filter(user__in=issued).delete()
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
