"""Loupe export benchmark: Custom Labels manifests of N reviewed items on PostgreSQL, beside a
floor that writes the same JSON lines from a plain cursor.

Run from the repository root, against a PostgreSQL database kept between runs (created if
missing; seeding is set-based SQL, a few seconds per 100,000 items, once per size)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_bench_export \\
        .venv/bin/python bench/export.py [--sizes 20000,100000,200000] [--test-split 0.2] [--rounds 1]

Per size N, a project ``export-<N>`` (10 classes) holds N reviewed items, each with its
prediction and a LABEL ``Decision`` with its labels, as the review screen stores them. Every item
names the same small stored JPEG, written into a fresh media folder each run, so the per-item
file check (a stat) runs for real.

**Export** (a fresh process that did nothing else first): ``reviewer.export.runs.execute_export``
to a local zip, 20% stratified test split, manifests only (``copy_images=False``: copying images
is I/O bound and the same per image whatever N). Timed: the whole job (the count, the walk over
the items with their decisions, every per-item rule, the lines, the split, the dataset checks,
the zip).

**Floor** (another fresh process): one plain server-side psycopg cursor over the same items
(id, stored name, label, labelled time), building each manifest line with ``json.dumps`` and
writing it to a file: what the lines cost with nothing else around them. The bench checks that
the floor's lines are exactly the export's train and test lines.

Printed per size: lines/s of both, export/floor, and each process's peak RSS
(``resource.getrusage``) before and after (the export's peak RSS must not grow with N). Target
(issue 14): >= 50,000 manifest lines/s.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC
from pathlib import Path

from PIL import Image

from bench import _seed

ROOT = Path(__file__).resolve().parent.parent
CLASSES = 10
TARGET_LINES_PER_SECOND = 50_000
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loupe_bench_export"
ISOLATED_ENV = (*_seed.ISOLATED_ENV, "CELERY_BROKER_URL")  # no worker here: exports run in process


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def slug(n: int) -> str:
    return f"export-{n}"


def shared_image(project_id: int) -> str:
    return f"items/{project_id}/shared.jpg"


# --- Seeding (its own process) -----------------------------------------------------------------


def seed(n: int) -> None:
    """Project ``export-<n>`` with CLASSES classes and n reviewed items (kept between runs)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from classify.models import Item, Project
    from classify.services import projects

    project = Project.objects.filter(slug=slug(n)).first()
    if project is not None and Item.objects.filter(project=project).count() == n:
        return
    if project is not None:
        raise SystemExit(f"project {slug(n)} holds another number of items: drop the bench database")
    reviewer, _ = get_user_model().objects.get_or_create(username="export-bench")
    project = projects.create_project(slug=slug(n), labels=[f"class-{c}" for c in range(CLASSES)],
                                      created_by=reviewer)
    labels = list(project.labels.filter(is_unknown=False).order_by("order").values_list("pk", flat=True))
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO classify_item (image, original, original_filename, source_format, sha256, width, height,
                status, status_reason, attempts, created_at, updated_at, project_id, audit, escalated,
                reviews_needed, top_label, top_score, margin, backend, label_id, labelled_by_id, labelled_at,
                error_detail, claimed_by, idempotency_key)
            SELECT %(image)s, '', 'photo-' || g || '.jpg', 'JPEG', md5(%(p)s || ':' || g) || md5(g || ':' || %(p)s),
                96, 80, 'reviewed', '', 1, timestamptz '2026-11-20 00:00:00+00' + make_interval(secs => g * 0.25),
                now(), %(p)s, false, false, 1, 'class-' || (g %% %(k)s), 0.5, 0.1, 'local',
                (%(labels)s::bigint[])[1 + g %% %(k)s], %(reviewer)s,
                timestamptz '2026-11-21 00:00:00+00' + make_interval(secs => g * 0.25), '', '', ''
            FROM generate_series(0, %(n)s - 1) AS g ORDER BY g
            """,
            {"image": shared_image(project.pk), "p": project.pk, "k": CLASSES, "labels": labels,
             "reviewer": reviewer.pk, "n": n},
        )
        cursor.execute(
            """
            INSERT INTO classify_prediction (item_id, backend, model_version, scores, top_label, top_score, margin,
                latency_ms, thresholds, decision, reason, created_at, cost_usd, saved_usd, provenance)
            SELECT id, 'local', 'bench', '{}'::jsonb, top_label, 0.5, 0.1, 1.0, '{}'::jsonb, 'needs_review', '',
                created_at, 0, 0, '' FROM classify_item WHERE project_id = %s ORDER BY id
            """,
            [project.pk],
        )
        cursor.execute(
            """
            INSERT INTO reviewer_decision (created_at, item_id, label_id, reviewer_id, audit, kind, undone)
            SELECT labelled_at, id, label_id, %s, false, 'label', false FROM classify_item WHERE project_id = %s
            ORDER BY id
            """,
            [reviewer.pk, project.pk],
        )
        cursor.execute(
            """
            INSERT INTO reviewer_decision_labels (decision_id, label_id)
            SELECT d.id, d.label_id FROM reviewer_decision d JOIN classify_item i ON i.id = d.item_id
            WHERE i.project_id = %s
            """,
            [project.pk],
        )
    with connection.cursor() as cursor:
        for table in ("classify_item", "classify_prediction", "reviewer_decision", "reviewer_decision_labels"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"  seeded {slug(n)}: {n:,} items in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def write_shared_image(project_id: int) -> None:
    from django.conf import settings

    path = Path(settings.MEDIA_ROOT) / shared_image(project_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.new("RGB", (96, 80), (200, 30, 30)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue())


# --- The export and the floor (each in a fresh process) ----------------------------------------


def run_export(n: int, test_split: float, out: Path) -> dict:
    from django.db import connection

    from classify.models import Project
    from reviewer.export.rules import Options
    from reviewer.export.runs import execute_export
    from reviewer.models import Export

    connection.ensure_connection()
    project = Project.objects.get(slug=slug(n))
    write_shared_image(project.pk)
    before = peak_rss_mb()
    options = Options(test_split=test_split, seed=1, source_prefix="s3://bench/loupe", copy_images=False)
    row = Export.objects.create(project=project, target=str(out), options=options.as_dict())
    started = time.perf_counter()
    row = execute_export(export=row)
    seconds = time.perf_counter() - started
    Export.objects.filter(pk=row.pk).delete()
    if row.state != "done":
        raise SystemExit(f"export failed: {row.error}")
    return {"lines": row.counts["exported"], "train": row.counts["train"], "test": row.counts.get("test", 0),
            "seconds": seconds, "rss_before_mb": before, "rss_peak_mb": peak_rss_mb(),
            "digest": lines_digest(zip_lines(out))}


def run_floor(n: int, out: Path) -> dict:
    """The same lines from one plain server-side cursor: no ORM, no rules, no split."""
    import psycopg
    from django.db import connection

    from classify.models import Project

    connection.ensure_connection()
    project = Project.objects.get(slug=slug(n))
    index = {pk: i for i, pk in enumerate(project.labels.order_by("order", "pk").values_list("pk", flat=True))}
    job = f"loupe/{project.slug}"
    before = peak_rss_mb()
    started = time.perf_counter()
    lines = 0
    with psycopg.connect(os.environ["DATABASE_URL"]) as plain, out.open("w", encoding="utf-8") as handle:
        with plain.cursor(name="floor") as cursor:
            cursor.itersize = 2000
            cursor.execute(
                "SELECT i.id, i.image, l.id, l.name, i.labelled_at FROM classify_item i "
                "JOIN classify_label l ON l.id = i.label_id WHERE i.project_id = %s AND i.status = 'reviewed' "
                "ORDER BY i.id", [project.pk])
            for item_id, image, label_id, name, labelled_at in cursor:
                record = {"source-ref": f"s3://bench/loupe/images/{item_id}{os.path.splitext(image)[1]}",
                          "loupe-label-0": index[label_id],
                          "loupe-label-0-metadata": {
                              "confidence": 1.0, "job-name": job, "class-name": name, "human-annotated": "yes",
                              "creation-date": labelled_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"),
                              "type": "groundtruth/image-classification"}}
                handle.write(json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n")
                lines += 1
    seconds = time.perf_counter() - started
    with out.open(encoding="utf-8") as handle:
        digest = lines_digest(line.rstrip("\n") for line in handle)
    return {"lines": lines, "seconds": seconds, "rss_before_mb": before, "rss_peak_mb": peak_rss_mb(),
            "digest": digest}


def zip_lines(path: Path):
    with zipfile.ZipFile(path) as archive:
        for name in ("train.manifest", "test.manifest"):
            if name in archive.namelist():
                with archive.open(name) as handle:
                    for raw in io.TextIOWrapper(handle, encoding="utf-8"):
                        yield raw.rstrip("\n")


def lines_digest(lines) -> str:
    """The same set of lines, whatever their order or set: XOR of each line's SHA-256 (and the count)."""
    total, count = 0, 0
    for line in lines:
        total ^= int.from_bytes(hashlib.sha256(line.encode()).digest(), "big")
        count += 1
    return f"{count}:{total:064x}"


def child(args: argparse.Namespace) -> None:
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    _seed.setup_django(Path(args.var_dir), isolated_env=ISOLATED_ENV)
    if args.child == "seed":
        seed(args.n)
    elif args.child == "export":
        print(json.dumps(run_export(args.n, args.test_split, Path(args.var_dir) / "export.zip")))
    else:
        print(json.dumps(run_floor(args.n, Path(args.var_dir) / "floor.jsonl")))


def measure(n: int, test_split: float, base: Path) -> tuple[dict, dict]:
    var_dir = base / str(n)
    var_dir.mkdir()
    common = [sys.executable, __file__, "--var-dir", str(var_dir), "--n", str(n), "--test-split", str(test_split)]
    subprocess.run([*common, "--child", "seed"], check=True, cwd=ROOT)
    results = []
    for kind in ("export", "floor"):
        done = subprocess.run([*common, "--child", kind], check=True, cwd=ROOT, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    shutil.rmtree(var_dir)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,100000,200000")
    parser.add_argument("--test-split", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=1, help="export + floor per size, interleaved (default 1)")
    parser.add_argument("--child", choices=["seed", "export", "floor"])
    parser.add_argument("--var-dir")
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.child:
        return child(args)
    _seed.ensure_database(os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL))
    sizes = [int(size) for size in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="loupe-bench-export-"))
    rows = []
    try:
        for round_number in range(args.rounds):
            for n in sizes:
                export, floor = measure(n, args.test_split, _round_dir(base, round_number))
                if export["digest"] != floor["digest"]:
                    raise SystemExit(f"{n:,} items: the export's lines differ from the floor's "
                                     f"({export['digest'][:24]} vs {floor['digest'][:24]})")
                rows.append((n, export, floor))
                print(f"  {n:,} items: export {export['lines'] / export['seconds']:,.0f} lines/s, "
                      f"floor {floor['lines'] / floor['seconds']:,.0f} lines/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(rows)


def _round_dir(base: Path, number: int) -> Path:
    path = base / f"r{number}"
    path.mkdir(exist_ok=True)
    return path


def report(rows: list[tuple[int, dict, dict]]) -> None:
    print(f"\n{'items':>8} | {'lines':>8} | {'test':>6} | {'export s':>8} | {'export lines/s':>14} | "
          f"{'floor lines/s':>13} | {'export/floor':>12} | {'export RSS before/peak':>22} | {'floor RSS peak':>14}")
    for n, export, floor in rows:
        rate, floor_rate = export["lines"] / export["seconds"], floor["lines"] / floor["seconds"]
        print(f"{n:>8,} | {export['lines']:>8,} | {export['test']:>6,} | {export['seconds']:>8.2f} | {rate:>14,.0f} | "
              f"{floor_rate:>13,.0f} | {rate / floor_rate:>12.2f} | "
              f"{export['rss_before_mb']:>8.1f} / {export['rss_peak_mb']:>6.1f} MB | {floor['rss_peak_mb']:>11.1f} MB")
    small = min(rows, key=lambda row: row[0])
    large = max(rows, key=lambda row: row[0])
    print(f"\nexport peak RSS {large[0]:,} / {small[0]:,} items: {large[1]['rss_peak_mb'] / small[1]['rss_peak_mb']:.2f} "
          f"(memory flat: {'yes' if large[1]['rss_peak_mb'] / small[1]['rss_peak_mb'] < 1.2 else 'NO'})")
    worst = min(export["lines"] / export["seconds"] for _n, export, _floor in rows)
    print(f"target >= {TARGET_LINES_PER_SECOND:,} lines/s at every size: slowest {worst:,.0f} lines/s -> "
          f"{'met' if worst >= TARGET_LINES_PER_SECOND else 'MISSED'}")


if __name__ == "__main__":
    main()
