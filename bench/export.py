"""Loupe export benchmark: Custom Labels manifests for 20,000 and 200,000 reviewed items.

Run from the repository root::

    .venv/bin/python bench/export.py [--sizes 20000,200000] [--test-split 0.2]

What is measured, per size N, in a fresh process that did nothing else first:
``reviewer.services.run_export`` of a project with N reviewed items (10 classes, every item
labelled through a ``Decision`` with its labels, as the review screen stores them), to a local zip,
with a 20% stratified test split, **manifests only** (``copy_images=False``: image copying is I/O
bound and the same per image whatever N). Every per-item rule is still checked, including a stat
of the stored file: all items share one tiny JPEG on disk. Timed: the whole export (count, walk
the items in id order in chunks with their decisions prefetched, check, write lines, split,
dataset checks, zip).

Printed: lines/s; the process's peak RSS (``resource.getrusage``, a high-water mark) before the
export (Django loaded, database open) and after; the RSS the export added; and the ratio of peak
RSS at the largest N to the smallest. A streaming export keeps that ratio near 1.0: memory must not
grow with N.

Seeding runs in its own process (bulk inserts into a temporary SQLite database), so its memory does
not count. Everything lives in a temporary ``LOUPE_VAR_DIR``, deleted at exit.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CLASSES = 10
BATCH = 5000
ISOLATED_ENV = ("DATABASE_URL", "MEDIA_ROOT", "AWS_STORAGE_BUCKET_NAME", "CELERY_BROKER_URL", "DEBUG")


def setup_django(var_dir: Path) -> None:
    for name in ISOLATED_ENV:
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOUPE_VAR_DIR"] = str(var_dir)
    import django

    django.setup()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def seed(n: int) -> None:
    """A project with CLASSES classes and n reviewed items, each with a LABEL decision."""
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command

    from classify.models import Item
    from classify.services import projects
    from reviewer.models import Decision

    call_command("migrate", verbosity=0)
    buffer = io.BytesIO()
    Image.new("RGB", (96, 80), (200, 30, 30)).save(buffer, format="JPEG")
    reviewer = get_user_model().objects.create_user("bench")
    project = projects.create_project(slug="bench", labels=[f"class-{c}" for c in range(CLASSES)], created_by=reviewer)
    image = default_storage.save(f"items/{project.pk}/shared.jpg", ContentFile(buffer.getvalue()))
    labels = list(project.labels.filter(is_unknown=False).order_by("order"))
    when = datetime(2026, 11, 21, tzinfo=UTC)
    through = Decision.labels.through
    for start in range(0, n, BATCH):
        size = min(BATCH, n - start)
        items = Item.objects.bulk_create(
            Item(project=project, image=image, sha256=f"{start + i:064x}", width=96, height=80, status="reviewed",
                 label=labels[(start + i) % CLASSES], labelled_at=when, labelled_by=reviewer, top_score=0.5)
            for i in range(size)
        )
        decisions = Decision.objects.bulk_create(
            Decision(item=item, reviewer=reviewer, label=item.label) for item in items
        )
        through.objects.bulk_create(through(decision_id=d.pk, label_id=d.label_id) for d in decisions)


def run(n: int, test_split: float, out: Path) -> dict:
    from django.db import connection

    from reviewer.export.rules import Options
    from reviewer.export.runs import execute_export
    from reviewer.models import Export

    connection.ensure_connection()
    Export.objects.exists()
    before = peak_rss_mb()
    options = Options(test_split=test_split, seed=1, source_prefix="s3://bench/loupe", copy_images=False)
    row = Export.objects.create(project_id=1, target=str(out), options=options.as_dict())
    started = time.perf_counter()
    row = execute_export(export=row)
    seconds = time.perf_counter() - started
    if row.state != "done":
        raise SystemExit(f"export failed: {row.error}")
    return {"n": n, "lines": row.counts["exported"], "train": row.counts["train"], "test": row.counts.get("test", 0),
            "seconds": seconds, "rss_before_mb": before, "rss_peak_mb": peak_rss_mb(), "zip_bytes": out.stat().st_size}


def child(args: argparse.Namespace) -> None:
    setup_django(Path(args.var_dir))
    if args.child == "seed":
        seed(args.n)
    else:
        print(json.dumps(run(args.n, args.test_split, Path(args.var_dir) / "export.zip")))


def measure(n: int, test_split: float, base: Path) -> dict:
    var_dir = base / str(n)
    var_dir.mkdir()
    common = [sys.executable, __file__, "--var-dir", str(var_dir), "--n", str(n), "--test-split", str(test_split)]
    started = time.perf_counter()
    subprocess.run([*common, "--child", "seed"], check=True, cwd=ROOT)
    print(f"  seeded {n:,} items in {time.perf_counter() - started:.0f} s", flush=True)
    result = subprocess.run([*common, "--child", "export"], check=True, cwd=ROOT, capture_output=True, text=True)
    shutil.rmtree(var_dir)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,200000")
    parser.add_argument("--test-split", type=float, default=0.2)
    parser.add_argument("--child", choices=["seed", "export"])
    parser.add_argument("--var-dir")
    parser.add_argument("--n", type=int)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sizes = [int(size) for size in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="loupe-bench-export-"))
    try:
        results = [measure(n, args.test_split, base) for n in sizes]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{'items':>9} {'lines':>9} {'train':>8} {'test':>7} {'seconds':>8} {'lines/s':>9} "
          f"{'RSS before':>11} {'RSS peak':>9} {'added':>7}")
    for r in results:
        print(f"{r['n']:>9,} {r['lines']:>9,} {r['train']:>8,} {r['test']:>7,} {r['seconds']:>8.1f} "
              f"{r['lines'] / r['seconds']:>9,.0f} {r['rss_before_mb']:>9.1f}MB {r['rss_peak_mb']:>7.1f}MB "
              f"{r['rss_peak_mb'] - r['rss_before_mb']:>5.1f}MB")
    small, large = results[0], results[-1]
    ratio = large["rss_peak_mb"] / small["rss_peak_mb"]
    added = (large["rss_peak_mb"] - large["rss_before_mb"]) / max(0.1, small["rss_peak_mb"] - small["rss_before_mb"])
    print(f"\npeak RSS ratio {large['n']:,} / {small['n']:,} items: {ratio:.2f} "
          f"(RSS added by the export: {added:.2f}); {large['n'] / small['n']:.0f}× the items")
    print("memory flat: " + ("yes" if ratio < 1.2 else "NO"))


if __name__ == "__main__":
    main()
