"""Near-duplicate lookup at intake: what it costs per upload as a project grows.

Run from the repository root (PostgreSQL; the database is created if missing and kept)::

    .venv/bin/python bench/near_duplicates.py [--sizes 10000,100000] [--lookups 200]

For each size N, a project holding N items whose perceptual hashes are uniform random 64-bit
values (set-based SQL, no image files), then ``--lookups`` lookups, half for a near duplicate
(2 bits away) of a random existing item, half for a fresh hash that matches nothing:

- **bands**: ``classify.services.intake.find_near_duplicate``, the banded, indexed lookup over
  the whole project;
- **window**: the lookup it replaced, the project's last 5,000 hashes read and compared in Python
  (kept here only to measure against);
- **floor**: the exact-duplicate lookup every upload makes anyway (the project's items with the
  upload's SHA-256, one index probe).

It prints p50 and p95 in milliseconds per lookup, for planted and fresh hashes apart (a fresh
hash is the common upload and the window's worst case: it compares all 5,000), and how many
planted near duplicates each found (the window misses those older than its 5,000 items). Uniform hashes share a 13-bit band
by chance about once in 1,400 items; photographs of one scene cluster more, so read the
candidates column as the best case.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench import _seed

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/loupe_bench_neardup"
WINDOW = 5000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="items per project, comma-separated")
    parser.add_argument("--lookups", type=int, default=200, help="lookups timed per size and method")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


def seeded_project(size: int):
    """The project ``neardup-<size>`` holding ``size`` items with random hashes (seeded once)."""
    from django.db import connection

    from classify.models import Item
    from classify.services import projects

    slug = f"neardup-{size}"
    project = projects.Project.objects.filter(slug=slug).first() or projects.create_project(
        slug=slug, labels=["a", "b"], backend="local")
    if Item.objects.filter(project=project).count() != size:
        Item.objects.filter(project=project).delete()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO classify_item (image, original, original_filename, source_format, sha256, phash, width,
                    height, status, status_reason, attempts, created_at, updated_at, project_id, audit, escalated,
                    reviews_needed, top_label, backend, error_detail, claimed_by, idempotency_key)
                SELECT 'items/bench.jpg', '', 'photo-' || g || '.jpg', 'JPEG',
                    md5(%(project)s || ':' || g) || md5(g || ':' || %(project)s),
                    ('x' || substr(md5('phash:' || %(project)s || ':' || g), 1, 16))::bit(64)::bigint,
                    640, 480, 'received', 'seeded by bench/near_duplicates.py', 0, now(), now(), %(project)s,
                    false, false, 1, '', '', '', '', ''
                FROM generate_series(1, %(size)s) AS g ORDER BY g
                """,
                {"project": project.pk, "size": size},
            )
            cursor.execute("VACUUM ANALYZE classify_item")
        print(f"  seeded {slug}: {size:,} items in {time.perf_counter() - started:.1f} s")
    return project


def windowed_lookup(project, phash: int):
    """The lookup before the bands: the last WINDOW hashes of the project, compared in Python."""
    from classify.images import hamming
    from classify.models import Item
    from classify.services.intake import NEAR_DUPLICATE_BITS

    recent = Item.objects.filter(project=project, phash__isnull=False).order_by("-pk")
    for item_id, other in recent.values_list("pk", "phash")[:WINDOW]:
        if hamming(phash, other) <= NEAR_DUPLICATE_BITS:
            return Item.objects.get(pk=item_id)
    return None


def exact_lookup(project, sha256: str):
    from classify.models import Item

    return Item.objects.filter(project=project, sha256=sha256).order_by("pk").first()


def flipped(value: int, bits) -> int:
    unsigned = value & ((1 << 64) - 1)
    for bit in bits:
        unsigned ^= 1 << bit
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


def candidates(project, phash: int) -> int:
    from django.db.models import Q

    from classify.images import phash_bands
    from classify.models import Item

    bands = Q()
    for index, value in enumerate(phash_bands(phash)):
        bands |= Q(**{f"phash_band{index}": value})
    return Item.objects.filter(bands, project=project).count()


def measure(project, lookups: int, rng: random.Random) -> None:
    from classify.models import Item
    from classify.services.intake import find_near_duplicate

    rows = list(Item.objects.filter(project=project).values_list("pk", "phash"))
    planted = [(pk, flipped(phash, rng.sample(range(64), 2))) for pk, phash in rng.sample(rows, lookups // 2)]
    fresh = [(None, rng.getrandbits(64) - (1 << 63)) for _ in range(lookups - len(planted))]
    queries = planted + fresh
    rng.shuffle(queries)
    methods = {"bands": find_near_duplicate, "window": windowed_lookup}
    times: dict[tuple[str, str], list[float]] = {}
    found = dict.fromkeys(methods, 0)
    for expected, phash in queries:
        kind = "fresh" if expected is None else "planted"
        for name in rng.sample(list(methods), len(methods)):  # alternate which goes first
            started = time.perf_counter()
            item = methods[name](project, phash)
            times.setdefault((name, kind), []).append((time.perf_counter() - started) * 1000)
            found[name] += expected is not None and item is not None and item.pk == expected
        started = time.perf_counter()
        exact_lookup(project, f"{rng.getrandbits(256):064x}")
        times.setdefault(("floor", "any"), []).append((time.perf_counter() - started) * 1000)
    read = statistics.mean(candidates(project, phash) for _expected, phash in queries[:50])
    floor = statistics.median(times[("floor", "any")])
    for (name, kind), samples in times.items():
        samples = sorted(samples)
        p50, p95 = statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]
        hit = f"{found[name]:>4}/{len(planted)}" if name in found and kind == "planted" else "      -"
        print(f"  {name:7} {kind:8} p50 {p50:8.2f} ms  p95 {p95:8.2f} ms  p50/floor {p50 / floor:7.1f}  found {hit}")
    print(f"  candidates read per banded lookup (mean of 50): {read:.1f}")


def main() -> None:
    args = parse_args()
    url = os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    _seed.ensure_database(url)
    _seed.setup_django(Path(tempfile.mkdtemp(prefix="loupe-bench-neardup-")))
    rng = random.Random(args.seed)
    for size in (int(value) for value in args.sizes.split(",")):
        project = seeded_project(size)
        print(f"{size:,} items, {args.lookups} lookups (half planted near duplicates, half fresh hashes):")
        measure(project, args.lookups, rng)


if __name__ == "__main__":
    main()
