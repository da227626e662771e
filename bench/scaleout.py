"""Loupe scale-out: 1, 2 and 4 worker processes with separate working folders, sharing one
PostgreSQL and one Redis, classifying the same backlog; nothing may be classified twice.

Run from the repository root::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/loupe_bench_scale CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
        .venv/bin/python bench/scaleout.py [--items 10000] [--workers 1,2,4] [--backend colour]

Per worker count W: a fresh project of ``--items`` items, each a distinct small JPEG stored in
the shared media folder (as S3 or a shared volume would be), made ``queued`` and their
classification messages published (untimed: what intake does after each upload commits; it
has bench/intake.py) before W ``celery -A config worker -Q classify_local --concurrency 1``
processes start, each in its own folder (its own ``LOUPE_VAR_DIR``), and work the backlog.
Timed: from the moment the last of the W workers is ready to the last item routed, over the
items still waiting then (so a worker that starts sooner and takes a head start does not count
as speed). Printed per W: items/s beside the ideal (one worker's rate x W, capped at the number
of cores: the database, Redis and this process share them too), the speed-up, and the checks:
items classified twice (must be 0), items without a prediction, items claimed more than once,
and how many messages each worker handled.

The default backend is ``colour`` (the deterministic test backend, registered through
``LOUPE_EXTRA_BACKENDS`` as the test suite does): the local model does 5-10 items/s per core on
this 2-core machine, so 10,000 items would take half an hour per worker count, and what
scale-out tests (claims and batches under several workers, the broker, the database) is the
same; the colour backend makes that path, not the forward pass, the work. ``--backend local``
runs the real model (use fewer items).
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image

from bench._worker import Worker

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"red": "#ff0000", "green": "#00ff00", "blue": "#0000ff"}
COLOUR_BACKEND = "colour=tests.colour_backend.ColourBackend"  # the test suite's deterministic backend


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="items per worker count (default 10000)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    parser.add_argument("--backend", default="colour", choices=["colour", "local"])
    args = parser.parse_args(argv)
    args.workers = [int(count) for count in args.workers.split(",")]
    return args


def setup(var_dir: Path) -> dict[str, str]:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/loupe_bench_scale")
    for name in ("AWS_STORAGE_BUCKET_NAME", "DEBUG", "CELERY_TASK_ALWAYS_EAGER"):
        os.environ.pop(name, None)
    media = var_dir / "media"
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings", "LOUPE_VAR_DIR": str(var_dir / "bench"),
                       "MEDIA_ROOT": str(media), "LOUPE_EXTRA_BACKENDS": COLOUR_BACKEND})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        raise SystemExit("scale-out needs a shared broker: set CELERY_BROKER_URL=redis://...")
    return {"DATABASE_URL": settings.DATABASE_URL, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "MEDIA_ROOT": str(media), "LOUPE_EXTRA_BACKENDS": COLOUR_BACKEND, "LOUPE_TORCH_THREADS": "1",
            "DJANGO_SETTINGS_MODULE": "config.settings"}


def make_backlog(slug: str, n: int, backend: str) -> list[int]:
    """n received items with distinct stored JPEGs (their messages are published later)."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from classify.models import Item, Label
    from classify.services import projects

    project = projects.create_project(slug=slug, labels=list(COLOURS), backend=backend)
    for name, colour in COLOURS.items():
        Label.objects.filter(project=project, name=name).update(mappings={"colour": [colour], "local": []})
    items = []
    for index in range(n):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (index % 256, (index // 256) % 256, 90)).save(buffer, "JPEG", quality=90)
        key = default_storage.save(f"items/{project.pk}/{index}.jpg", ContentFile(buffer.getvalue()))
        items.append(Item(project=project, image=key, sha256=f"{project.pk:08x}{index:056x}", width=64, height=48,
                          status=Item.Status.RECEIVED))
    return [item.pk for item in Item.objects.bulk_create(items, batch_size=2000)]


def wait_routed(ids: list[int], workers: list[Worker], timeout: float, stall: float = 120.0) -> float:
    """When every item is routed. Gives up (and so frees the shared lock) when the workers die, at
    ``timeout``, or when no item was routed for ``stall`` seconds: items left queued with no
    message (a purged or lost queue) would otherwise be waited for until the timeout."""
    from classify.models import Item

    done = (Item.Status.AUTO_ACCEPTED, Item.Status.NEEDS_REVIEW, Item.Status.FAILED)
    deadline, last, moved = time.monotonic() + timeout, -1, time.monotonic()
    while (count := Item.objects.filter(pk__in=ids, status__in=done).count()) < len(ids):
        if count != last:
            last, moved = count, time.monotonic()
        if (time.monotonic() > deadline or time.monotonic() - moved > stall
                or any(worker.process.poll() is not None for worker in workers)):
            raise SystemExit(f"the workers did not finish: {count} of {len(ids)} routed, none for "
                             f"{time.monotonic() - moved:.0f} s\n" + "\n".join(w.log()[-2000:] for w in workers))
        time.sleep(0.2)
    return time.perf_counter()


def checks(ids: list[int]) -> tuple[str, Counter]:
    from django.db.models import Count

    from classify.models import Item, Prediction

    per_item = Counter(dict(Prediction.objects.filter(item_id__in=ids).values_list("item_id").annotate(n=Count("pk"))))
    twice = sum(1 for n in per_item.values() if n > 1)
    missing = len(ids) - len(per_item)
    retried = Item.objects.filter(pk__in=ids, attempts__gt=1).count()
    failed = Item.objects.filter(pk__in=ids, status=Item.Status.FAILED).count()
    return f"classified twice {twice}, without a prediction {missing}, claimed more than once {retried}, failed {failed}", per_item


def by_worker(workers: list[Worker]) -> list[int]:
    """Messages each worker handled, from its log (a message whose item another worker took in
    its batch is handled too, as a no-op)."""
    return [worker.log().count("succeeded in") for worker in workers]


def publish(ids: list[int]) -> None:
    """The items' classification messages, as intake hands them over after commit (in bulk)."""
    from django.utils import timezone

    from classify.enqueue import enqueue
    from classify.models import Item
    from classify.services.queueing import CLASSIFY_TASK

    for item_id in ids:
        enqueue(CLASSIFY_TASK, item_id)
    now = timezone.now()
    Item.objects.filter(pk__in=ids).update(status=Item.Status.QUEUED, enqueued_at=now, updated_at=now)


def routed(ids: list[int]) -> int:
    from classify.models import Item

    return Item.objects.filter(pk__in=ids, status__in=(Item.Status.AUTO_ACCEPTED, Item.Status.NEEDS_REVIEW,
                                                       Item.Status.FAILED)).count()


def run(args, count: int, env: dict, folder: Path) -> tuple[float, str, list[int]]:
    """(items/s with all W workers running, the checks, messages handled per worker)."""
    from classify.models import Project

    slug = f"scaleout-{count}w-{int(time.time())}"
    ids = make_backlog(slug, args.items, args.backend)
    publish(ids)
    workers = [Worker(name=f"scaleout-{count}-{number}", folder=folder / f"w{count}-{number}", queues="classify_local",
                      env={**env, "LOUPE_VAR_DIR": str(folder / f"w{count}-{number}" / "var")}) for number in range(count)]
    try:
        for worker in workers:
            worker.wait_ready()
        started, head_start = time.perf_counter(), routed(ids)
        finished = wait_routed(ids, workers, timeout=3600)
        verdict, _ = checks(ids)
        return (len(ids) - head_start) / (finished - started), verdict, by_worker(workers)
    finally:
        for worker in workers:
            worker.stop()
        Project.objects.filter(slug=slug).delete()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="loupe-scaleout-"))
    try:
        env = setup(folder)
        from bench.pipeline import purge_queue

        purge_queue()
        from django.conf import settings

        cores = os.cpu_count() or 1
        print(f"{args.items:,} items per run, backend {args.backend}, workers -Q classify_local --concurrency 1 each, "
              f"own folders, shared PostgreSQL + Redis + media; {cores} CPUs; LOUPE_BATCH_SIZE {settings.LOUPE_BATCH_SIZE}")
        print(f"{'workers':>7} | {'items/s':>8} | {'ideal':>8} | {'speed-up':>8} | checks | messages handled per worker")
        base = None
        for count in args.workers:
            rate, verdict, handled = run(args, count, env, folder)
            base = base or rate / min(count, cores)
            ideal = base * min(count, cores)
            print(f"{count:>7} | {rate:8.1f} | {ideal:8.1f} | {rate / base:7.2f}x | {verdict} | {handled}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
