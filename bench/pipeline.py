"""Loupe pipeline benchmark: what one upload costs end to end, against the bare model floor.

Run from the repository root::

    .venv/bin/python bench/pipeline.py [--n 40] [--rounds 5] [--warmup 3]

What is measured, per image, on N distinct JPEGs of about 1.2-1.6 megapixels made from
scikit-image's bundled photographs (upscaled, cropped, mirrored, jittered; quality 90):

(a) pipeline: ``intake.ingest_upload`` (validate, orient, re-encode, hash, store, save the
    Item). Celery runs eagerly (``task_always_eager``), so when the upload commits the
    classification task body runs in the same process, exactly as a worker would run it:
    ``start_classification`` + ``classification.score_item`` (read the stored JPEG back, model
    forward, route, record the Prediction). No broker is involved.
(b) floor: the same JPEG bytes decoded with Pillow (``Image.open`` + ``convert("RGB")``) and
    pushed through ``classify.backends.local.embed_and_probabilities`` in a plain loop.

How to read the result: ratio = floor time / pipeline time, which is the pipeline's throughput
as a fraction of the bare decode+model cost. 1.0 means Loupe adds nothing on top of decoding and
the model; 0.85 (the target) means 15% of an upload's time is Loupe's own work (re-encode, hash,
storage, database, reading the image back).

Fairness: the model is loaded and warmed up before timing; both paths run in this one process
with the torch thread count the app configures (``settings.LOUPE_TORCH_THREADS``); they are
interleaved image by image, alternating which goes first; each round uses a fresh project, so no
prediction is reused (identical-pixel reuse is per project); the median over rounds is reported.

Everything is written to a fresh temporary ``LOUPE_VAR_DIR`` (SQLite database, media, broker
folder), deleted at exit: the developer's ``var/`` is never touched.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import io
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
SIZES = ((1600, 1000), (1280, 960))
LABELS = ("cat", "cup", "missile", "space shuttle")
TARGET_RATIO = 0.85
# Unset so the app cannot reach the developer's data (database, media, bucket, broker) and so
# timings are representative (DEBUG=true keeps every query in memory).
ISOLATED_ENV = ("DATABASE_URL", "MEDIA_ROOT", "AWS_STORAGE_BUCKET_NAME", "CELERY_BROKER_URL", "DEBUG")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="images per round (default 40)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the median is reported (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up images per path (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the synthetic photos (default 0)")
    return parser.parse_args(argv)


# --- Setup -------------------------------------------------------------------------------------


def setup_django(var_dir: Path) -> None:
    """Point Loupe at ``var_dir`` only, start Django, migrate the empty database, run Celery eagerly."""
    for name in ISOLATED_ENV:
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOUPE_VAR_DIR"] = str(var_dir)
    os.chdir(ROOT)  # Celery puts the working directory first on sys.path: make it this checkout
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from config.celery import app

    call_command("migrate", verbosity=0)
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # one "succeeded" line per task
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True  # a failing task fails the benchmark instead of hiding


def new_project(slug: str):
    from classify.services import projects

    return projects.create_project(slug=slug, labels=list(LABELS), backend="local")


# --- Images ------------------------------------------------------------------------------------


def source_photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")


def jittered(photo: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """``photo`` upscaled to cover ``size`` (plus a random zoom), randomly cropped, maybe
    mirrored, with a brightness change and sensor-like noise, so every image has its own pixels."""
    width, height = size
    scale = max(width / photo.width, height / photo.height) * rng.uniform(1.0, 1.3)
    big = photo.resize((int(photo.width * scale) + 1, int(photo.height * scale) + 1), Image.Resampling.BICUBIC)
    left = int(rng.integers(0, big.width - width + 1))
    top = int(rng.integers(0, big.height - height + 1))
    pixels = np.asarray(big.crop((left, top, left + width, top + height)), dtype=np.float32)
    pixels = pixels * rng.uniform(0.85, 1.15) + rng.normal(0.0, 3.0, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def make_jpegs(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    photos = [source_photo(name) for name in SOURCES]
    jpegs = []
    for index in range(n):
        buffer = io.BytesIO()
        jittered(photos[index % len(photos)], SIZES[index % len(SIZES)], rng).save(buffer, "JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    return jpegs


# --- The two paths -----------------------------------------------------------------------------


def run_pipeline(project, data: bytes, index: int) -> float:
    """Seconds for one upload: ingest, then (eagerly, on commit) the classification task."""
    from classify.services import intake

    started = time.perf_counter()
    intake.ingest_upload(project=project, data=data, filename=f"photo-{index}.jpg")
    return time.perf_counter() - started


def run_floor(data: bytes) -> float:
    """Seconds to decode the same bytes and run the same model forward, nothing else."""
    from classify.backends.local import embed_and_probabilities

    started = time.perf_counter()
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    embed_and_probabilities([rgb])
    return time.perf_counter() - started


def check_project(project, expected: int) -> None:
    """Every upload was classified afresh (no reuse) and routed; otherwise the timing is void."""
    from classify.models import Item, Prediction

    decided = (Item.Status.AUTO_ACCEPTED, Item.Status.NEEDS_REVIEW)
    items = Item.objects.filter(project=project)
    predictions = Prediction.objects.filter(item__project=project, reused_from__isnull=True)
    if items.filter(status__in=decided).count() != expected or predictions.count() != expected:
        statuses = sorted(set(items.values_list("status", flat=True)))
        raise SystemExit(f"benchmark void: {project.slug} has statuses {statuses}, "
                         f"{predictions.count()} fresh predictions for {expected} uploads")


def measure_round(jpegs: list[bytes], slug: str, order_offset: int) -> tuple[float, float]:
    """Total (pipeline, floor) seconds over all images, interleaved, alternating which goes first."""
    project = new_project(slug)
    pipeline_s = floor_s = 0.0
    for index, data in enumerate(jpegs):
        if (index + order_offset) % 2 == 0:
            pipeline_s += run_pipeline(project, data, index)
            floor_s += run_floor(data)
        else:
            floor_s += run_floor(data)
            pipeline_s += run_pipeline(project, data, index)
    check_project(project, len(jpegs))
    return pipeline_s, floor_s


def warm_up(jpegs: list[bytes]) -> None:
    """Load the model (untimed) and run both paths a few times before anything is measured."""
    from classify.backends.local import _network

    _network()
    measure_round(jpegs, "warmup", 0)


# --- Report ------------------------------------------------------------------------------------


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def describe(jpegs: list[bytes]) -> str:
    sizes = sorted({image_size(data) for data in jpegs})
    kilobytes = statistics.mean(len(data) for data in jpegs) / 1024
    dims = " / ".join(f"{w}x{h}" for w, h in sizes)
    return f"{len(jpegs)} distinct JPEGs ({dims}, quality 90, mean {kilobytes:.0f} KB) from skimage photos"


def print_header(jpegs: list[bytes], rounds: int, warmup: int) -> None:
    import torch
    from django.conf import settings

    print(f"Loupe pipeline benchmark: {describe(jpegs)}; {rounds} rounds after {warmup} warm-up images")
    print("pipeline = intake.ingest_upload with Celery task_always_eager: the classification task "
          "(start_classification + classify_item) runs in-process on commit; no broker")
    print("floor    = Image.open + convert('RGB') + local.embed_and_probabilities on the same bytes")
    print(f"torch threads: {torch.get_num_threads()} for both paths "
          f"(settings.LOUPE_TORCH_THREADS={settings.LOUPE_TORCH_THREADS}); model load excluded")


def print_round(number: int, n: int, pipeline_s: float, floor_s: float) -> None:
    print(f"round {number}: pipeline {n / pipeline_s:6.2f} items/s   floor {n / floor_s:6.2f} items/s   "
          f"ratio {floor_s / pipeline_s:.3f}")


def print_summary(n: int, results: list[tuple[float, float]]) -> None:
    ratio = statistics.median(floor_s / pipeline_s for pipeline_s, floor_s in results)
    pipeline_rate = statistics.median(n / pipeline_s for pipeline_s, _ in results)
    floor_rate = statistics.median(n / floor_s for _, floor_s in results)
    verdict = "meets" if ratio >= TARGET_RATIO else "below"
    print(f"median:  pipeline {pipeline_rate:6.2f} items/s   floor {floor_rate:6.2f} items/s   "
          f"ratio floor/pipeline {ratio:.3f} ({verdict} the {TARGET_RATIO} target; "
          f"Loupe's own share of an upload: {1 - ratio:.0%})")


# --- Main --------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> None:
    jpegs = make_jpegs(args.n + args.warmup, args.seed)
    warmup, timed = jpegs[: args.warmup], jpegs[args.warmup:]
    warm_up(warmup)
    print_header(timed, args.rounds, args.warmup)
    results = []
    for number in range(1, args.rounds + 1):
        results.append(measure_round(timed, f"round-{number}", number))
        print_round(number, len(timed), *results[-1])
    print_summary(len(timed), results)


def close_database() -> None:
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.n < 1 or args.rounds < 1 or args.warmup < 1:
        raise SystemExit("--n, --rounds and --warmup must be at least 1")
    var_dir = Path(tempfile.mkdtemp(prefix="loupe-bench-"))
    try:
        setup_django(var_dir)
        benchmark(args)
    finally:
        close_database()
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
