"""Loupe learning curve: how good the local trained head gets after K human labels per class.

Run from the repository root::

    .venv/bin/python bench/learning_curve.py [--ks 2,5,10,20,40] [--pool 60] [--target 0.95] [--side 64]

Data: scikit-learn's digits (1,797 real handwritten digits, 8x8 greyscale, bundled with
scikit-learn, nothing downloaded), upscaled to ``--side`` px RGB so they pass the same pipeline
as uploads (and Custom Labels' 64 px minimum). Every image is embedded once by the local
backend's network.

Per class, ``--pool`` images are set aside as never-labelled items to measure on. For each K,
K labels per class go through the product's retrain path (``classify.retrain.evaluation``):
seeded stratified split, head fitted on the train part, per-class thresholds suggested on the
test part at the target precision. Printed per K, on the pool: accuracy; the share auto-accepted
at the suggested thresholds and how precise that was; and the share that could be auto-accepted
at the target precision with thresholds picked on the pool itself (hindsight, an upper reference).
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="2,5,10,20,40", help="labels per class to try (default 2,5,10,20,40)")
    parser.add_argument("--pool", type=int, default=60, help="never-labelled images per class to measure on (default 60)")
    parser.add_argument("--target", type=float, default=0.95, help="target precision for auto-accept (default 0.95)")
    parser.add_argument("--side", type=int, default=64, help="upscaled image side in px, at least 64 (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def setup_django(var_dir: Path) -> None:
    """Settings only (the network reads its thread count from them); no database is touched."""
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "DEBUG"):
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["LOUPE_VAR_DIR"] = str(var_dir)
    import django

    django.setup()


def digit_images(side: int) -> tuple[list[Image.Image], list[str]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [Image.fromarray((pixels * 255 / 16).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
              .convert("RGB") for pixels in digits.images]
    return images, [str(target) for target in digits.target]


def embed_all(images: list[Image.Image], batch: int = 64) -> np.ndarray:
    from classify.backends.local import embed_and_probabilities

    return np.vstack([embed_and_probabilities(images[i : i + batch])[0] for i in range(0, len(images), batch)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.side < 64:
        sys.exit("--side must be at least 64 (Custom Labels' minimum, and what the issue asks for)")
    var_dir = Path(tempfile.mkdtemp(prefix="loupe-bench-curve-"))
    try:
        setup_django(var_dir)
        from tests.learning_curve import learning_curve

        images, labels = digit_images(args.side)
        started = time.perf_counter()
        embeddings = embed_all(images)
        print(f"digits: {len(images)} images, {len(set(labels))} classes, upscaled to {args.side} px; "
              f"embedded in {time.perf_counter() - started:.1f} s")
        ks = [int(k) for k in args.ks.split(",")]
        rows = learning_curve(embeddings, labels, ks=ks, pool_per_class=args.pool, target_precision=args.target,
                              seed=args.seed)
        print(f"held-out pool: {rows[0]['pool']} never-labelled images; chance accuracy {1 / len(set(labels)):.0%}; "
              f"target precision {args.target:.0%}")
        print(f"{'K/class':>8} {'labels':>7} {'accuracy':>9} {'auto-accept':>12} {'its precision':>14} {'at target (hindsight)':>22}")
        for row in rows:
            precision = "-" if row["auto_accept_precision"] is None else f"{row['auto_accept_precision']:.1%}"
            print(f"{row['k']:>8} {row['labels']:>7} {row['accuracy']:>9.1%} {row['auto_accept_share']:>12.1%} "
                  f"{precision:>14} {row['oracle_share']:>22.1%}")
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
