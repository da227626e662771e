"""Faults injected into a real, running Loupe: does every upload end stored, classified once, and
in a known state, and how long after the fault does that take?

    .venv/bin/python bench/faults.py                 # both configurations, default settings
    .venv/bin/python bench/faults.py --quick         # the CI version: embedded only, small, fast settings
    .venv/bin/python bench/faults.py --configs embedded --uploads 40 --bulk 3000

Each configuration is a real Loupe started with ``bin/up`` (gunicorn, a Celery worker with beat,
supervised): the **embedded** default (SQLite, the filesystem broker) and **postgres** (a
``loupe_faults_bench`` database on 127.0.0.1:5432, recreated; its own ``redis-server`` on a spare port).
Uploads go through HTTP with an API token, several client threads, one ``Idempotency-Key`` per
file, and the upload page's retry policy (network errors and 5xx retried after 1, 2, 4, 8 s with
the same key). Images are distinct noisy PNGs classified by the test suite's ``colour`` backend
(0.3 s per image, so tasks are in flight when a fault hits; 0.01 s in the bulk scenario, which
measures the broker and intake), except for the throttling scenario,
which uses the real ``rekognition`` backend module against a local stub on
``AWS_ENDPOINT_URL_REKOGNITION`` that answers half the calls with ThrottlingException.

Scenarios (one project each; the fault hits when a third of the uploads are sent):
baseline (no fault; its time is the floor), worker pool processes SIGKILL, worker main process
SIGKILL (bin/up restarts it), broker killed for 5 s during uploads (Redis), broker flushed (Redis
FLUSHALL, or the embedded queue folder emptied), database connections terminated
(``pg_terminate_backend``, three times), cloud backend throttled 50%, and ``--bulk`` uploads from 4
clients (embedded). Columns: submitted; lost (uploads with no item, or an item without its image);
stuck (not in a final state at the deadline); 5xx (answers for uploads that were stored / all);
duplicates (a second item for one key, or a second prediction for one item); worker exits (and
how many were not restarted); time to recover: from the end of the fault until every item is
final, beside the floor: the baseline's time from its last upload until every item is final.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench._rekognition_stub import RekognitionStub
from tests.bin_up_process import read_var, stop_bin_up

ROOT = Path(__file__).resolve().parent.parent
PORTBASE = int(os.environ.get("LOUPE_BENCH_PORTBASE", "8120"))
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
PG_DB = "loupe_faults_bench"
RETRIES = (1, 2, 4, 8)
QUICK_SETTINGS = {  # CI: the same mechanisms on a faster clock
    "LOUPE_SWEEP_EVERY_SECONDS": "2", "LOUPE_STUCK_RECEIVED_AFTER": "2", "LOUPE_STUCK_QUEUED_AFTER": "4",
    "LOUPE_WORKER_HEARTBEAT_SECONDS": "1", "LOUPE_WORKER_SEEN_WITHIN": "6", "LOUPE_WORKER_STALLED_AFTER": "6",
}


@dataclass
class Row:
    config: str
    scenario: str
    submitted: int = 0
    lost: int = 0
    stuck: int = 0
    errors_stored: int = 0
    errors_all: int = 0
    duplicates: int = 0
    worker_exits: int = 0
    not_restarted: int = 0
    recover_seconds: float | None = None
    notes: str = ""
    answers: dict = field(default_factory=dict, repr=False)


# --- The uploading clients -------------------------------------------------------------------------


def image(index: int) -> bytes:
    from PIL import Image

    rng = random.Random(index)
    base = [rng.randrange(40, 216) for _ in range(3)]
    pixels = bytes(max(0, min(255, base[i % 3] + rng.randrange(-30, 31))) for i in range(96 * 80 * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", (96, 80), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload(base: str, token: str, slug: str, index: int, statuses: list[int]) -> None:
    """One file, with the upload page's retry policy; every HTTP status (0: no answer) is kept."""
    body, content_type = multipart(image(index), f"img-{index}.png")
    headers = {"Authorization": f"Token {token}", "Content-Type": content_type, "Idempotency-Key": f"{slug}-{index}"}
    for delay in (*RETRIES, None):
        request = urllib.request.Request(f"{base}/api/v1/projects/{slug}/items/", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                statuses.append(response.status)
                return
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
            if exc.code < 500:
                return
        except OSError:
            statuses.append(0)
        if delay is None:
            return
        time.sleep(delay)


def upload_all(base: str, token: str, slug: str, count: int, clients: int, *, at_third=None) -> dict[int, list[int]]:
    """``count`` uploads from ``clients`` threads; ``at_third`` runs once a third are sent."""
    answers: dict[int, list[int]] = {index: [] for index in range(count)}
    fired = threading.Event()

    def one(index: int) -> None:
        if at_third is not None and index >= count // 3 and not fired.is_set():
            fired.set()
            threading.Thread(target=at_third, daemon=True).start()
        upload(base, token, slug, index, answers[index])

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(count)))
    return answers


# --- The throttling Rekognition stub ----------------------------------------------------------------


def throttling(request: dict) -> tuple[int, dict]:
    """DetectLabels that answers ThrottlingException to half the calls, at random."""
    if random.random() < 0.5:
        return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
    return 200, {"Labels": [{"Name": "Cat", "Confidence": 97.0}], "LabelModelVersion": "3.0"}


# --- One configuration ------------------------------------------------------------------------------


class Loupe:
    """bin/up with the configuration's environment, and the faults that can be done to it."""

    def __init__(self, config: str, folder: Path, *, quick: bool, database: str = PG_DB) -> None:
        self.config, self.folder, self.quick, self.database = config, folder, quick, database
        self.var = folder / "var"
        self.port = PORTBASE + (0 if config == "embedded" else 2)
        self.redis = None
        self.env = {key: value for key, value in os.environ.items()
                    if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "LOUPE_VAR_DIR", "DJANGO_SETTINGS_MODULE"}}
        self.env.update({
            "LOUPE_VAR_DIR": str(self.var), "PORT": str(self.port), "HOST": "127.0.0.1", "LOUPE_DEMO": "0",
            "LOUPE_EXTRA_BACKENDS": "colour=tests.colour_backend.ColourBackend",
            "AWS_ENDPOINT_URL_REKOGNITION": f"http://127.0.0.1:{PORTBASE + 3}", "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1", "PYTHONUNBUFFERED": "1",
        })
        if quick:
            self.env.update(QUICK_SETTINGS)
        if config == "postgres":
            from tests.redis_server import RedisServer

            subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=True)
            subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {database}"], check=True)
            self.redis = RedisServer(folder / "redis", port=PORTBASE + 1)
            self.redis.start()
            self.env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
            self.env["CELERY_BROKER_URL"] = self.redis.url
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.out = (self.folder / "bin-up.out").open("wb")
        self.process = subprocess.Popen([str(ROOT / "bin" / "up")], cwd=ROOT, env=self.env, stdout=self.out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while not (self._answers("/livez") and " ready." in self.text("worker.log")):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bin/up did not start:\n{(self.folder / 'bin-up.out').read_text()}")
            time.sleep(0.3)

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.base + path, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def text(self, name: str) -> str:
        return read_var(self.var, name)

    def worker_exits(self) -> int:
        return sum(1 for line in self.text("restarts.log").splitlines() if " worker " in line)

    def worker_running(self) -> bool:
        try:
            os.kill(int(self.text("worker.pid")), 0)
            return True
        except (ValueError, ProcessLookupError):
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_bin_up(self.process, self.var, grace=60)
        if self.redis is not None:
            self.redis.kill()

    # --- faults ---

    # Each fault returns what it did, for the table's notes.

    def find_pool(self) -> None:
        """The worker's pool processes, asked before the uploads start (the answer takes seconds)."""
        from celery import current_app

        stats = current_app.control.inspect(timeout=3).stats() or {}
        self.pool = [pid for node in stats.values() for pid in node.get("pool", {}).get("processes", [])]

    def kill_pool_process(self) -> str:
        """SIGKILL every pool process of the worker while one of them is classifying (an OOM
        kill); the worker's main process lives on and starts new ones."""
        from classify.models import Item

        if not self.pool:
            return "no pool process found (celery inspect stats did not answer)"
        deadline = time.monotonic() + 30
        while not Item.objects.filter(project__slug=self.current, status=Item.Status.CLASSIFYING).exists():
            if time.monotonic() > deadline:
                return "no task in flight to kill"
            time.sleep(0.02)
        for pid in self.pool:
            os.kill(pid, signal.SIGKILL)
        return f"SIGKILL {len(self.pool)} pool processes mid-task"

    def kill_worker(self) -> str:
        pid = int(self.text("worker.pid"))
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL worker {pid}"

    def kill_broker(self) -> str:
        self.redis.kill()
        time.sleep(5)
        self.redis.start()
        return "redis-server SIGKILL, back after 5 s"

    def flush_broker(self) -> str:
        if self.redis is not None:
            waiting = _redis_llen(self.redis.port, "celery")
            self.redis.flush()
            return f"FLUSHALL: {waiting} messages dropped"
        files = list((self.var / "broker" / "queue").glob("*.msg"))
        for path in files:
            path.unlink(missing_ok=True)
        return f"{len(files)} message files deleted"

    def terminate_connections(self) -> str:
        sql = (f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{self.database}' "
               "AND pid <> pg_backend_pid()")
        killed = 0
        for _ in range(3):
            result = subprocess.run(["psql", PG_ADMIN, "-qAtc", sql], check=True, capture_output=True, text=True)
            killed += int(result.stdout.strip() or 0)
            time.sleep(1)
        return f"{killed} connections terminated in 3 rounds"


def _redis_llen(port: int, key: str) -> int:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"LLEN {key}\r\n".encode())
        return int(sock.recv(64).strip().lstrip(b":") or 0)


def setup_django(loupe: Loupe) -> None:
    os.environ.update({key: value for key, value in loupe.env.items() if key.startswith(("LOUPE_", "DATABASE_", "CELERY_"))})
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()


def make_project(slug: str, *, backend: str = "colour", sleep: float = 0.3):
    from classify.models import Label, Project
    from classify.services.projects import create_project

    user = _bench_user()
    project = create_project(slug=slug, labels=["red", "green", "blue"], backend=backend, created_by=user)
    for name, colour in {"red": "#ff0000", "green": "#00ff00", "blue": "#0000ff"}.items():
        Label.objects.filter(project=project, name=name).update(
            mappings={"colour": [colour], "rekognition": ["Cat"] if name == "red" else [name.title()]}, audit_rate=0)
    config = {"sleep": sleep} if backend == "colour" else {"region": "us-east-1"}
    Project.objects.filter(pk=project.pk).update(backend_config=config, min_sharpness=0, refit_every=0)
    return project


def _bench_user():
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    return user


def wait_final(slug: str, count: int, *, deadline: float) -> tuple[float, int]:
    """Seconds until every item of the project is final (measured from now), and how many are not."""
    from classify.models import TRANSIENT_STATUSES, Item

    start = time.monotonic()
    while True:
        items = Item.objects.filter(project__slug=slug)
        moving = items.filter(status__in=TRANSIENT_STATUSES).count()
        if items.count() >= count and moving == 0:
            return time.monotonic() - start, 0
        if time.monotonic() > deadline:
            return time.monotonic() - start, moving + max(0, count - items.count())
        time.sleep(0.5)


def measure(row: Row, slug: str, answers: dict[int, list[int]]) -> None:
    from django.db.models import Count

    from classify.models import TRANSIENT_STATUSES, Item

    items = list(Item.objects.filter(project__slug=slug).annotate(predictions_count=Count("predictions")))
    keys = {item.idempotency_key for item in items}
    stored = {index for index in answers if f"{slug}-{index}" in keys}
    missing_files = sum(1 for item in items if not item.image.storage.exists(item.image.name))
    row.submitted = len(answers)
    row.lost = len(answers) - len(stored) + missing_files
    row.stuck = sum(1 for item in items if item.status in TRANSIENT_STATUSES)
    row.errors_stored = sum(1 for index in stored for code in answers[index] if code >= 500)
    row.errors_all = sum(1 for codes in answers.values() for code in codes if code >= 500)
    row.duplicates = (len(items) - len(keys)) + sum(max(0, item.predictions_count - 1) for item in items)
    no_answer = sum(1 for codes in answers.values() for code in codes if code == 0)
    row.notes = f"{no_answer} dropped connections retried" if no_answer else ""


def run_scenario(loupe: Loupe, name: str, uploads: int, *, fault=None, clients: int = 4, backend: str = "colour",
                 settle: float, sleep: float = 0.3) -> Row:
    slug = name.replace(" ", "-").replace("%", "pct").replace(",", "").lower()[:40]
    make_project(slug, backend=backend, sleep=sleep)
    from classify.auth import issue_token

    token = issue_token(_bench_user())
    row = Row(loupe.config, name)
    exits_before = loupe.worker_exits()
    fault_done = threading.Event()
    loupe.current = slug
    did = []

    def inject() -> None:
        try:
            did.append(fault())
        except Exception as exc:
            did.append(f"fault failed: {exc}")
        finally:
            fault_done.set()

    if fault == loupe.kill_pool_process:
        loupe.find_pool()
    started = time.monotonic()
    answers = upload_all(loupe.base, token, slug, uploads, clients, at_third=inject if fault else None)
    sent = time.monotonic() - started
    if fault:
        fault_done.wait(120)
    from django.db import connection

    connection.close()  # a fault may have ended this process's connection too
    recover, _ = wait_final(slug, uploads, deadline=time.monotonic() + settle)
    row.recover_seconds = round(recover, 1)
    measure(row, slug, answers)
    row.notes = "; ".join(filter(None, [*did, row.notes, f"uploads took {sent:.1f} s ({uploads / sent:.0f}/s)"]))
    row.worker_exits = loupe.worker_exits() - exits_before
    row.not_restarted = 0 if loupe.worker_running() else 1
    return row


def run_config(config: str, args) -> list[Row]:
    (ROOT / "var").mkdir(exist_ok=True)  # a fresh clone has none yet
    folder = Path(tempfile.mkdtemp(prefix=f"faults-{config}-", dir=ROOT / "var"))
    loupe = Loupe(config, folder, quick=args.quick)
    stub, rows = None, []
    try:
        loupe.start()
        setup_django(loupe)
        settle = 60 if args.quick else 300
        n = args.uploads
        rows.append(run_scenario(loupe, "baseline", n, settle=settle))
        scenarios = [("worker pool processes SIGKILL", loupe.kill_pool_process),
                     ("worker main process SIGKILL", loupe.kill_worker)]
        if config == "postgres":
            scenarios.append(("broker killed during uploads", loupe.kill_broker))
        scenarios.append(("broker flushed", loupe.flush_broker))
        if config == "postgres":
            scenarios.append(("database connections terminated", loupe.terminate_connections))
        for name, fault in scenarios:
            rows.append(run_scenario(loupe, name, n, fault=fault, settle=settle))
        if not args.quick:
            stub = RekognitionStub(PORTBASE + 3, throttling).start()
            rows.append(run_scenario(loupe, "cloud backend throttled 50%", n, backend="rekognition", settle=settle))
        if args.bulk and config == "embedded":
            rows.append(run_scenario(loupe, f"{args.bulk} uploads, 4 clients", args.bulk, settle=settle * 2, sleep=0.01))
        return rows
    finally:
        if stub is not None:
            stub.stop()
        loupe.stop()
        if any(row.lost or row.stuck or row.errors_stored or row.duplicates for row in rows):
            report_logs(loupe)  # what the worker and the server said, for whoever reads the failure
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def report_logs(loupe: Loupe, lines: int = 300) -> None:
    """Each log of the failed run on stderr (the run's folder is removed next), without the
    routine lines of tasks received and succeeded, so the failure's story fits."""
    for name in ("worker.log", "web.log", "restarts.log"):
        story = [line for line in loupe.text(name).splitlines()
                 if not re.search(r"\] (received|succeeded in)|\b(GET|POST) /", line)][-lines:]
        print(f"--- {name} (last {len(story)} lines, routine ones left out) ---", *story, sep="\n", file=sys.stderr)


# --- The table ----------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    floors = {row.config: row.recover_seconds for row in rows if row.scenario == "baseline"}
    lines = [f"{'config':9s} {'scenario':34s} {'submitted':>9s} {'lost':>5s} {'stuck':>5s} {'5xx stored/all':>14s} "
             f"{'dups':>5s} {'worker exits (not restarted)':>28s} {'recover s':>9s} {'floor s':>7s}  notes"]
    for row in rows:
        recover = "-" if row.recover_seconds is None else f"{row.recover_seconds:.1f}"
        lines.append(
            f"{row.config:9s} {row.scenario:34s} {row.submitted:9d} {row.lost:5d} {row.stuck:5d} "
            f"{f'{row.errors_stored}/{row.errors_all}':>14s} {row.duplicates:5d} "
            f"{f'{row.worker_exits} ({row.not_restarted})':>28s} {recover:>9s} {floors.get(row.config, 0):7.1f}  {row.notes}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="embedded,postgres")
    parser.add_argument("--uploads", type=int, default=60, help="uploads per scenario")
    parser.add_argument("--bulk", type=int, default=3000, help="uploads of the bulk scenario (embedded; 0: skip)")
    parser.add_argument("--quick", action="store_true", help="CI: embedded only, 16 uploads, fast sweeper settings")
    parser.add_argument("--json-out", help="also write the rows as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (logs, database) under var/")
    parser.add_argument("--run-config", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.configs, args.uploads, args.bulk = "embedded", 16, 0
    if args.run_config:  # a child: one configuration, one Django setup
        rows = run_config(args.run_config, args)
        Path(args.json).write_text(json.dumps([asdict(row) for row in rows]))
        return
    rows = []
    for config in args.configs.split(","):
        out = Path(tempfile.mkstemp(suffix=".json")[1])
        command = [sys.executable, __file__, "--run-config", config, "--json", str(out), "--uploads", str(args.uploads),
                   "--bulk", str(args.bulk)] + (["--quick"] if args.quick else []) + (["--keep"] if args.keep else [])
        subprocess.run(command, check=True)
        rows += [Row(**{k: v for k, v in row.items() if k != "answers"}) for row in json.loads(out.read_text())]
        out.unlink()
    print(table(rows))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps([asdict(row) for row in rows], indent=1))
    if any(row.lost or row.stuck or row.errors_stored or row.duplicates or row.not_restarted for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
