"""Loupe review-queue benchmark: claiming and deciding under concurrency, against a bare
primary-key fetch + update of the same table.

Run from the repository root, against PostgreSQL (what is measured is the queue's
``SELECT ... FOR UPDATE SKIP LOCKED`` path; SQLite is refused)::

    createdb -h 127.0.0.1 -U postgres loupe_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_bench \\
        .venv/bin/python bench/queue.py [--pending 100000] [--threads 8] [--decisions 4000]

DATABASE_URL defaults to the URL above. The database must hold no items yet (so a wrong URL
cannot turn the benchmark loose on real data); every row the benchmark creates is deleted at exit.

Setup: migrate; one project on the ``colour`` test backend with the defaults that matter here
(margin order, consensus 1, 120 s leases); one reviewer per thread, each a plain member (not an
admin, so the ``escalated`` filter applies); N items waiting for review with varied
top_label/top_score/margin and one Prediction each, bulk-inserted in batches (the image key is
a dummy: nothing reads the file); then ``VACUUM ANALYZE`` of the queue's tables.

What is measured, per call, with ``time.perf_counter``, in T threads that each use their own
database connection:

(a) ours: ``reviewer.services.claim_many`` of one item (membership check, ``reviewable_items`` with
    ``FOR UPDATE SKIP LOCKED LIMIT 1``, the lease UPDATE, the item read back), then
    ``reviewer.services.record_decision`` on that lease (row lock, latest prediction, the
    decision and its label, settling, the status transition): timed separately and as a sum.
    With the colour backend ``maybe_schedule_refit`` returns at once: the local backend's refit
    check (two COUNTs per decision) is not in these times.
(b) floor: in one transaction, ``Item.objects.get(pk=<random pending item>)`` then
    ``Item.objects.filter(pk=...).update(lease_expires_at=now)``: the least any claim can cost
    (find one row by key, write it) through the same ORM, driver and connections. It writes an
    already-expired time, so it never takes an item out of the queue.

How to read the result: ratio = ours / floor at p50 and at p95. The floor pays the same fixed
costs (ORM, round trips, commits, T threads sharing one interpreter), so the ratio is what the
queue's rules cost on top of touching one row, on this machine. The issue's target, "p95 claim
<= 20 ms with 100k pending", is absolute, so that check is printed in milliseconds.

Each round also says how busy this process's interpreter was (CPU seconds of all threads per
wall second). Near 100% of a core, the T threads queue for the one interpreter (the GIL) after
every round trip, and a call's milliseconds measure that queue as much as PostgreSQL: the path
with more round trips and more ORM work per call pays more of it. Web workers in separate
processes do not share that queue; the ratio and the EXPLAIN are the machine-independent parts.

Fairness: both paths run in this one process, on the same table, with the same thread count;
both are warmed up untimed first; the timed calls are split into rounds that alternate which
path goes first, so the table's growth (decisions, dead row versions) falls on both; the
percentiles are over every timed call of all rounds. If the claim misses the target (or with
``--explain``), the claim query is shown with ``EXPLAIN (ANALYZE, BUFFERS)``.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loupe_bench"
LABELS = ("cat", "cup", "missile", "space shuttle")
TARGET_CLAIM_P95_MS = 20.0
TARGET_PENDING = 100_000
BATCH = 5_000
# Unset so the app cannot reach the developer's media, bucket or broker, and so timings are
# representative (DEBUG=true keeps every query in memory). DATABASE_URL is the one input.
ISOLATED_ENV = ("MEDIA_ROOT", "AWS_STORAGE_BUCKET_NAME", "CELERY_BROKER_URL", "DEBUG")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=TARGET_PENDING, help="items waiting for review (default 100000)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent reviewers, one connection each (default 8)")
    parser.add_argument("--decisions", type=int, default=4000, help="timed decisions, and as many floor calls (default 4000)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds, alternating which path goes first (default 2)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per path before timing (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed for scores and the floor's picks (default 0)")
    parser.add_argument("--explain", action="store_true", help="show the claim query's plan even if the target is met")
    parser.add_argument("--processes", action="store_true",
                        help="one process per reviewer instead of threads (no shared interpreter, as web workers)")
    args = parser.parse_args(argv)
    if min(args.pending, args.threads, args.decisions, args.rounds) < 1 or args.warmup < 0:
        parser.error("--pending, --threads, --decisions and --rounds must be at least 1, --warmup at least 0")
    if args.decisions + args.warmup > args.pending // 2:
        parser.error("--decisions plus --warmup must stay below half of --pending, so the queue stays full")
    return args


# --- Setup -------------------------------------------------------------------------------------


def require_postgresql() -> None:
    """Default DATABASE_URL to the benchmark database; exit unless it is PostgreSQL."""
    import dj_database_url

    url = os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    engine = dj_database_url.parse(url)["ENGINE"]
    if "postgresql" not in engine:
        raise SystemExit(
            f"bench/queue.py measures the PostgreSQL review queue (SELECT ... FOR UPDATE SKIP LOCKED), "
            f"but DATABASE_URL selects {engine}. Elsewhere claims take another code path (SQLite serialises "
            f"writers), so the numbers would say nothing about it. Point DATABASE_URL at PostgreSQL, "
            f"e.g. {DEFAULT_DATABASE_URL}"
        )


def setup_django(var_dir: Path) -> None:
    """Start Django with everything but the database under ``var_dir``, and migrate."""
    for name in ISOLATED_ENV:
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOUPE_VAR_DIR"] = str(var_dir)
    os.environ["LOUPE_EXTRA_BACKENDS"] = "colour=tests.colour_backend.ColourBackend"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit(f"bench/queue.py needs PostgreSQL, the connection is {connection.vendor}")
    call_command("migrate", verbosity=0)


def require_empty_database() -> None:
    from django.db import connection

    from classify.models import Item

    if Item.objects.exists():
        raise SystemExit(f"database {connection.settings_dict['NAME']!r} already holds items: the benchmark "
                         "runs on a database of its own (createdb ... loupe_bench) and leaves it as it found it")


@dataclass
class Fixture:
    project: object
    reviewers: list
    labels: dict  # name -> Label
    tag: str


def create_fixture(threads: int) -> Fixture:
    """The project (with its classes) and one member reviewer per thread."""
    from django.contrib.auth import get_user_model

    from classify.models import Membership
    from classify.services import projects

    tag = uuid.uuid4().hex[:8]
    project = projects.create_project(slug=f"queue-bench-{tag}", labels=list(LABELS), backend="colour")
    users = get_user_model()
    reviewers = []
    for number in range(threads):
        reviewer = users.objects.create_user(username=f"queue-bench-{tag}-{number}")
        Membership.objects.create(project=project, user=reviewer, role=Membership.Role.REVIEWER)
        reviewers.append(reviewer)
    return Fixture(project, reviewers, {label.name: label for label in project.labels.all()}, tag)


def fake_scores(names: list[str], rng: random.Random) -> dict[str, float]:
    """A score per class summing to 1, from a Dirichlet draw: sometimes sure, often torn."""
    draws = [rng.gammavariate(0.5, 1.0) for _ in names]
    total = sum(draws)
    return {name: round(draw / total, 6) for name, draw in zip(names, draws, strict=True)}


def pending_item(project, index: int, scores: dict[str, float]):
    from classify.models import Item

    ranked = sorted(scores.values(), reverse=True)
    return Item(
        project=project, image=f"items/{project.pk}/queue-bench.jpg", sha256=f"{index:064x}", width=640, height=480,
        status=Item.Status.NEEDS_REVIEW, status_reason="Below the accept threshold.",
        top_label=max(scores, key=scores.get), top_score=ranked[0], margin=ranked[0] - ranked[1],
    )


def prediction_for(item, scores: dict[str, float]):
    from classify.models import Prediction

    return Prediction(
        item=item, backend="colour", model_version="colour-1", scores=scores, top_label=item.top_label,
        top_score=item.top_score, margin=item.margin, latency_ms=1.0, thresholds={},
        decision=Prediction.Decision.NEEDS_REVIEW, reason=item.status_reason,
    )


def insert_pending(fixture: Fixture, n: int, seed: int) -> None:
    """``n`` items waiting for review, one Prediction each, in batches of ``BATCH``."""
    from django.db import transaction

    from classify.models import Item, Prediction

    rng = random.Random(seed)
    names = list(fixture.labels)
    for start in range(0, n, BATCH):
        scores = [fake_scores(names, rng) for _ in range(start, min(start + BATCH, n))]
        with transaction.atomic():
            items = Item.objects.bulk_create(
                [pending_item(fixture.project, start + offset, s) for offset, s in enumerate(scores)]
            )
            Prediction.objects.bulk_create([prediction_for(item, s) for item, s in zip(items, scores, strict=True)])


def vacuum_analyze() -> None:
    """Fresh statistics and visibility map on the tables the queue reads."""
    from django.db import connection

    from classify.models import Item, Prediction
    from reviewer.models import Decision

    with connection.cursor() as cursor:
        for model in (Item, Prediction, Decision, Decision.labels.through):
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(model._meta.db_table)}")


# --- Running threads ---------------------------------------------------------------------------


class Tickets:
    """A shared countdown: each thread takes a ticket before each call."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def run_threads(bodies: list[Callable[[], tuple | None]], total: int) -> tuple[list[tuple], float, float]:
    """Run ``bodies`` (one per thread, each on its own connection) until ``total`` calls are made;
    a body returning None stops its thread. Returns every call's sample, the wall seconds and this
    process's CPU seconds (all threads: the share of one core the interpreter was busy)."""
    tickets = Tickets(total)
    barrier = threading.Barrier(len(bodies) + 1)
    samples: list[tuple] = []
    errors: list[BaseException] = []

    def loop(body: Callable[[], tuple | None]) -> None:
        from django.db import connection

        try:
            connection.ensure_connection()  # connecting is not part of any timed call
            barrier.wait()
            while tickets.take():
                sample = body()
                if sample is None:
                    break
                samples.append(sample)  # list.append is atomic under the GIL
        except BaseException as error:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(error)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=loop, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if errors:
        raise errors[0]
    return samples, wall, cpu


# --- The two paths -----------------------------------------------------------------------------


def ours_body(fixture: Fixture, reviewer) -> Callable[[], tuple[float, float] | None]:
    """Claim the next item and decide it with the model's top class: (claim s, decide s)."""
    from reviewer import services

    def body() -> tuple[float, float] | None:
        started = time.perf_counter()
        items = services.claim_many(project=fixture.project, reviewer=reviewer, limit=1)
        item = items[0] if items else None
        claimed = time.perf_counter()
        if item is None:
            return None
        services.record_decision(token=str(item.lease_token), reviewer=reviewer, labels=[fixture.labels[item.top_label]])
        return claimed - started, time.perf_counter() - claimed

    return body


def floor_body(pending: list[int], rng: random.Random) -> Callable[[], tuple[float]]:
    """Fetch a random pending item by key and write its lease time, in one transaction: (s,)."""
    from django.db import transaction
    from django.utils import timezone

    from classify.models import Item

    def body() -> tuple[float]:
        pk = rng.choice(pending)
        started = time.perf_counter()
        with transaction.atomic():
            item = Item.objects.get(pk=pk)
            Item.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now())
        return (time.perf_counter() - started,)

    return body


def pending_ids(project) -> list[int]:
    from classify.models import Item

    return list(Item.objects.filter(project=project, status=Item.Status.NEEDS_REVIEW).values_list("pk", flat=True))


@dataclass
class Phase:
    samples: list[tuple] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0

    def add(self, samples: list[tuple], wall: float, cpu: float) -> None:
        self.samples += samples
        self.wall += wall
        self.cpu += cpu


# With --processes each reviewer is its own process (forked, so it inherits the fixture), as web
# workers are in production: no shared interpreter between them.
PROCESSES = False
_FORKED: dict = {}


def _child(job: tuple[str, int, int, int]) -> tuple[list[tuple], float, float]:
    kind, index, quota, seed = job
    from django.db import connection

    fixture = _FORKED["fixture"]
    body = (ours_body(fixture, fixture.reviewers[index]) if kind == "ours"
            else floor_body(_FORKED["pending"], random.Random(seed * 1000 + index)))
    connection.ensure_connection()
    samples: list[tuple] = []
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(quota):
        sample = body()
        if sample is None:
            break
        samples.append(sample)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    connection.close()
    return samples, wall, cpu


def run_processes(kind: str, fixture: Fixture, calls: int, seed: int = 0, pending=None) -> tuple[list[tuple], float, float]:
    """One forked process per reviewer, each with a fixed share of the calls; wall time is the
    slowest process's, CPU time the sum of all of theirs."""
    import multiprocessing

    from django.db import connections

    _FORKED.update(fixture=fixture, pending=pending)
    connections.close_all()  # a connection must not cross a fork
    count = len(fixture.reviewers)
    jobs = [(kind, index, calls // count + (index < calls % count), seed) for index in range(count)]
    with multiprocessing.get_context("fork").Pool(count) as pool:
        results = pool.map(_child, jobs)
    return [s for r in results for s in r[0]], max(r[1] for r in results), sum(r[2] for r in results)


def run_ours(fixture: Fixture, calls: int, into: Phase) -> None:
    if PROCESSES:
        into.add(*run_processes("ours", fixture, calls))
        return
    into.add(*run_threads([ours_body(fixture, reviewer) for reviewer in fixture.reviewers], calls))


def run_floor(fixture: Fixture, calls: int, seed: int, into: Phase) -> None:
    pending = pending_ids(fixture.project)
    if PROCESSES:
        into.add(*run_processes("floor", fixture, calls, seed, pending))
        return
    bodies = [floor_body(pending, random.Random(seed * 1000 + number)) for number in range(len(fixture.reviewers))]
    into.add(*run_threads(bodies, calls))


# --- Checks and report -------------------------------------------------------------------------


def check_decisions(fixture: Fixture, expected: int) -> None:
    """Every claim ended in exactly one decision on its own item; otherwise the timing is void."""
    from classify.models import Item
    from reviewer.models import Decision

    decisions = Decision.objects.filter(item__project=fixture.project)
    reviewed = Item.objects.filter(project=fixture.project, status=Item.Status.REVIEWED).count()
    distinct = decisions.values("item").distinct().count()
    if not (decisions.count() == distinct == reviewed == expected):
        raise SystemExit(f"benchmark void: {decisions.count()} decisions on {distinct} items, {reviewed} reviewed, "
                         f"expected {expected} of each")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def print_header(args: argparse.Namespace, fixture: Fixture, pending: int) -> None:
    from django.db import connection

    print(f"Loupe review-queue benchmark: PostgreSQL {connection.pg_version // 10000}.{connection.pg_version % 10000}, "
          f"{pending} items waiting in one project, {args.threads} {'processes' if PROCESSES else 'threads'} "
          f"(one connection each) on {os.cpu_count()} CPUs, "
          f"{args.decisions} decisions + {args.decisions} floor calls in {args.rounds} rounds "
          f"after {args.warmup} + {args.warmup} untimed")
    print(f"ours  = services.claim_many(limit=1), then services.record_decision (backend {fixture.project.backend}, "
          f"order {fixture.project.review_order}, consensus {fixture.project.consensus_reviews}, plain reviewers)")
    print("floor = one transaction: Item.objects.get(pk=random pending) + .filter(pk=...).update(lease_expires_at=now)")


def rate(phase: Phase, unit: str) -> str:
    calls = len(phase.samples)
    return (f"{calls} {unit} in {phase.wall:5.1f} s ({calls / phase.wall:6.1f}/s, "
            f"interpreter busy {phase.cpu / phase.wall:4.0%} of a core)")


def print_round(number: int, ours: Phase, floor: Phase) -> None:
    print(f"round {number}: ours {rate(ours, 'decisions')}   floor {rate(floor, 'calls')}")


def print_table(ours: Phase, floor: Phase) -> dict[str, list[float]]:
    series = {
        "claim": [claim for claim, _ in ours.samples],
        "decide": [decide for _, decide in ours.samples],
        "claim+decide": [claim + decide for claim, decide in ours.samples],
    }
    floor_times = [sample[0] for sample in floor.samples]
    floor_p50, floor_p95 = percentile(floor_times, 50), percentile(floor_times, 95)
    print(f"{'':14}{'p50 ms':>8}{'p95 ms':>9}   ratio p50  ratio p95   (ratio = ours / floor)")
    for name, values in series.items():
        p50, p95 = percentile(values, 50), percentile(values, 95)
        print(f"{name:14}{ms(p50)} {ms(p95)}   {p50 / floor_p50:9.2f}  {p95 / floor_p95:9.2f}")
    print(f"{'floor':14}{ms(floor_p50)} {ms(floor_p95)}")
    return series


def print_summary(args: argparse.Namespace, ours: Phase, floor: Phase, pending: int) -> bool:
    series = print_table(ours, floor)
    ours_rate, floor_rate = len(ours.samples) / ours.wall, len(floor.samples) / floor.wall
    print(f"throughput: ours {ours_rate:.1f} decisions/s, floor {floor_rate:.1f} calls/s "
          f"(ours / floor {ours_rate / floor_rate:.2f}) with {args.threads} threads")
    claim_p95 = percentile(series["claim"], 95) * 1000
    met = claim_p95 <= TARGET_CLAIM_P95_MS
    scale = "" if args.pending >= TARGET_PENDING else f"; only {args.pending} inserted, below the target's load"
    print(f"target p95 claim <= {TARGET_CLAIM_P95_MS:g} ms with {TARGET_PENDING} pending: "
          f"{'met' if met else 'MISSED'} (p95 claim {claim_p95:.2f} ms with {pending} pending{scale})")
    return met


def explain_claim(fixture: Fixture) -> None:
    """The claim's SELECT, as claim_many builds it, under EXPLAIN (ANALYZE, BUFFERS); rolled back."""
    from django.db import connection, transaction

    from reviewer import selectors

    queryset = (selectors.reviewable_items(fixture.project, fixture.reviewers[0])
                .select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)[:1])
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = queryset.query.sql_with_params()  # FOR UPDATE compiles inside a transaction only
        print("\nclaim query:\n" + connection.ops.compose_sql(sql, params))
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        print("\n".join(row[0] for row in cursor.fetchall()))
        transaction.set_rollback(True)


# --- Main --------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace, fixture: Fixture) -> None:
    insert_pending(fixture, args.pending, args.seed)
    vacuum_analyze()
    warm = Phase()
    if args.warmup:
        run_ours(fixture, args.warmup, warm)
        run_floor(fixture, args.warmup, args.seed, warm)
    pending = len(pending_ids(fixture.project))
    print_header(args, fixture, pending)
    ours, floor = Phase(), Phase()
    for number in range(1, args.rounds + 1):
        calls = args.decisions // args.rounds + (number <= args.decisions % args.rounds)
        round_ours, round_floor = Phase(), Phase()
        ours_first = number % 2 == 1
        if ours_first:
            run_ours(fixture, calls, round_ours)
        run_floor(fixture, calls, args.seed + number, round_floor)
        if not ours_first:
            run_ours(fixture, calls, round_ours)
        print_round(number, round_ours, round_floor)
        ours.add(round_ours.samples, round_ours.wall, round_ours.cpu)
        floor.add(round_floor.samples, round_floor.wall, round_floor.cpu)
    check_decisions(fixture, args.warmup + len(ours.samples))
    met = print_summary(args, ours, floor, pending)
    if args.explain or not met:
        explain_claim(fixture)


def delete_fixture(fixture: Fixture) -> None:
    """Remove every row the benchmark made, scoped to its project and users (set-based SQL: the
    ORM's cascade would load all items into memory), then vacuum the tables it bloated."""
    from django.db import connection, transaction

    from classify.models import Item, Prediction
    from reviewer.models import Decision

    name = connection.ops.quote_name
    items = f"SELECT id FROM {name(Item._meta.db_table)} WHERE project_id = %s"
    decisions = f"SELECT id FROM {name(Decision._meta.db_table)} WHERE item_id IN ({items})"
    statements = (
        f"DELETE FROM {name(Decision.labels.through._meta.db_table)} WHERE decision_id IN ({decisions})",
        f"DELETE FROM {name(Decision._meta.db_table)} WHERE item_id IN ({items})",
        f"DELETE FROM {name(Prediction._meta.db_table)} WHERE item_id IN ({items})",
        f"DELETE FROM {name(Item._meta.db_table)} WHERE project_id = %s",
    )
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement, [fixture.project.pk])
        fixture.project.delete()
        for reviewer in fixture.reviewers:
            reviewer.delete()
    vacuum_analyze()


def close_database() -> None:
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()


def main(argv: list[str] | None = None) -> None:
    global PROCESSES
    args = parse_args(argv)
    PROCESSES = args.processes
    require_postgresql()
    var_dir = Path(tempfile.mkdtemp(prefix="loupe-bench-"))
    fixture = None
    try:
        setup_django(var_dir)
        require_empty_database()
        fixture = create_fixture(args.threads)
        benchmark(args, fixture)
    finally:
        if fixture is not None:
            delete_fixture(fixture)
        close_database()
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
