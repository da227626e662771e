"""Loupe intake benchmark: what preparing an upload costs, against merely decoding the file.

Run from the repository root::

    .venv/bin/python bench/intake.py [--n 24] [--rounds 5] [--warmup 1]

What is measured, per image, on N distinct files made from scikit-image's bundled photographs
(upscaled, cropped, mirrored, brightness-jittered, sensor-like noise), in three groups:

- 12 MP JPEG: 4032x3024 phone-camera photos, quality 92, 4:2:0; every other one stored sideways
  with EXIF orientation 6 (as a phone held upright writes it), the others with orientation 1;
- 2 MP JPEG: 1600x1200, quality 92;
- 2 MP PNG: 1600x1200.

(a) intake: ``pipeline.preprocess(data, max_pixels=...)`` then ``pipeline.check_quality(prepared,
    rules=images.QualityRules())``: decode with the format allowlist (JPEG draft decoding), EXIF
    orientation, RGB conversion, bounding to ``images.DERIVATIVE_MAX_SIDE``, JPEG re-encode,
    SHA-256 and dHash, quality checks.
(b) decode: plain Pillow decode of the same bytes at full size, ``Image.open(io.BytesIO(data))``
    + ``load()`` (all files here decode to RGB already, so this is also ``convert("RGB")``
    without its extra copy: the cheapest honest baseline).

How to read the result: ratio = intake throughput / decode throughput (= decode time / intake
time). Above 1 the whole intake is faster than decoding the file at full size, which JPEG draft
decoding (libjpeg's 1/2, 1/4, 1/8 scaling) makes possible; below 1 the intake costs more than
a full decode.

The stage breakdown runs the same functions in the same order as ``pipeline.preprocess`` and
``check_quality``, timed one by one (decode = ``images.decode`` with orientation and RGB
conversion; bound = ``images.bounded``; re-encode = ``images.encode_jpeg``; sha256 =
``images.derivative_sha256``; dHash = ``images.analysis_copy`` + ``images.perceptual_hash``; quality =
``images.quality_problems``), and checks that its results equal ``preprocess``'s.

Fairness: one process, no Django setup (only ``classify.images`` and ``classify.pipeline`` are
imported; neither reads settings); every file is decoded once by both paths before timing; the
two paths are interleaved image by image, alternating which goes first; the median over rounds
is reported. Pillow decodes on one thread, so the machine's core count does not favour either.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import io
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from PIL import Image, features

from bench._photos import jittered, source_photo
from classify import images, pipeline

SOURCES = ("chelsea", "coffee", "rocket", "astronaut", "immunohistochemistry", "hubble_deep_field", "retina")
# The app's default upload limit (settings.LOUPE_MAX_IMAGE_PIXELS); importing config.settings
# would create var/ and a secret-key file, so the default is repeated here. Only compared.
MAX_PIXELS = 50_000_000
DECODE_MAX_BYTES = 256 * 2**20  # the shipped LOUPE_DECODE_MAX_MB
JPEG_QUALITY = 92
ORIENTATION = 0x0112
ROTATED = 6  # EXIF: stored sideways, to be turned 90° clockwise for display
STAGES = ("decode", "bound", "re-encode", "sha256", "dHash", "quality")


@dataclass(frozen=True)
class Kind:
    group: str  # the row the throughput table reports
    detail: str  # the sub-row (12 MP JPEGs split by orientation)
    size: tuple[int, int]  # upright width x height
    fmt: str
    orientation: int | None = None


TWELVE_MP = (4032, 3024)
TWO_MP = (1600, 1200)
KINDS = (
    Kind("12 MP JPEG", "  orientation 6", (TWELVE_MP[1], TWELVE_MP[0]), "JPEG", ROTATED),
    Kind("12 MP JPEG", "  orientation 1", TWELVE_MP, "JPEG", 1),
    Kind("2 MP JPEG", "", TWO_MP, "JPEG"),
    Kind("2 MP PNG", "", TWO_MP, "PNG"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24,
                        help="images (default 24: half 12 MP JPEG, a third 2 MP JPEG, the rest 2 MP PNG)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds; the median is reported (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes over every file first (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the synthetic photos (default 0)")
    return parser.parse_args(argv)


# --- Images ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    kind: Kind
    data: bytes


def kinds_for(n: int) -> list[Kind]:
    """Half 12 MP JPEGs (alternating orientation), a third 2 MP JPEGs, the rest PNGs; at least one PNG."""
    big = n // 2
    png = max(1, n - big - n // 3)
    mid = n - big - png
    return [KINDS[i % 2] for i in range(big)] + [KINDS[2]] * mid + [KINDS[3]] * png


def encode(upright: Image.Image, kind: Kind) -> bytes:
    """The file a camera or a person would upload: sideways pixels plus the EXIF tag if rotated."""
    buffer = io.BytesIO()
    if kind.fmt == "PNG":
        upright.save(buffer, "PNG")
        return buffer.getvalue()
    stored = upright
    exif = Image.Exif()
    if kind.orientation is not None:
        exif[ORIENTATION] = kind.orientation
        if kind.orientation == ROTATED:
            stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise: undone by 6
    stored.save(buffer, "JPEG", quality=JPEG_QUALITY, exif=exif)
    return buffer.getvalue()


def make_samples(n: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    photos = [source_photo(name) for name in SOURCES]
    return [
        Sample(kind, encode(jittered(photos[index % len(photos)], kind.size, rng), kind))
        for index, kind in enumerate(kinds_for(n))
    ]


# --- The two paths -----------------------------------------------------------------------------

RULES = images.QualityRules()


def run_intake(data: bytes) -> float:
    """Seconds to prepare one upload as ``intake.ingest_upload`` does, and check its quality."""
    started = time.perf_counter()
    prepared = pipeline.preprocess(data, max_pixels=MAX_PIXELS, max_bytes=DECODE_MAX_BYTES)
    pipeline.check_quality(prepared, rules=RULES)
    return time.perf_counter() - started


def run_decode(data: bytes) -> float:
    """Seconds to decode the same bytes with plain Pillow at full size, nothing else."""
    started = time.perf_counter()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return time.perf_counter() - started


def measure_round(samples: list[Sample], order_offset: int) -> list[tuple[float, float]]:
    """(intake, decode) seconds per image, interleaved, alternating which goes first."""
    timings = []
    for index, sample in enumerate(samples):
        if (index + order_offset) % 2 == 0:
            intake_s = run_intake(sample.data)
            decode_s = run_decode(sample.data)
        else:
            decode_s = run_decode(sample.data)
            intake_s = run_intake(sample.data)
        timings.append((intake_s, decode_s))
    return timings


# --- Stage breakdown ---------------------------------------------------------------------------


def staged(data: bytes) -> tuple[dict[str, float], pipeline.PreparedImage, list[str]]:
    """``preprocess`` + ``check_quality`` step by step, each step's seconds recorded."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage], clock = now - clock, now

    decoded = images.decode(data, max_pixels=MAX_PIXELS, max_side=images.DERIVATIVE_MAX_SIDE)
    lap("decode")
    derivative = images.bounded(decoded.image)
    lap("bound")
    jpeg = images.encode_jpeg(derivative)
    lap("re-encode")
    sha256 = images.derivative_sha256(jpeg)
    lap("sha256")
    grey = images.analysis_copy(derivative)
    phash = images.perceptual_hash(grey)
    lap("dHash")
    problems = images.quality_problems(grey, width=decoded.width, height=decoded.height, rules=RULES)
    lap("quality")
    prepared = pipeline.PreparedImage(derivative, jpeg, sha256, phash, grey, decoded.width, decoded.height,
                                      decoded.format)
    return seconds, prepared, problems


def check_staged(samples: list[Sample]) -> list[list[str]]:
    """The staged path must give what ``preprocess`` gives, upright and bounded; otherwise the
    breakdown describes some other code and the benchmark is void. Returns the quality problems."""
    found = []
    for sample in samples:
        _, mine, problems = staged(sample.data)
        theirs = pipeline.preprocess(sample.data, max_pixels=MAX_PIXELS, max_bytes=DECODE_MAX_BYTES)
        same = (mine.sha256, mine.phash, mine.width, mine.height) == (
            theirs.sha256, theirs.phash, theirs.width, theirs.height)
        upright = (mine.width, mine.height) == sample.kind.size
        bounded = max(mine.image.size) <= images.DERIVATIVE_MAX_SIDE
        landscape = (mine.image.width >= mine.image.height) == (mine.width >= mine.height)
        if not (same and upright and bounded and landscape):
            raise SystemExit(f"benchmark void: staged intake disagrees with pipeline.preprocess "
                             f"({sample.kind.group}{sample.kind.detail}, {mine.width}x{mine.height})")
        found.append(problems)
    return found


def measure_stages(samples: list[Sample], rounds: int) -> list[dict[str, float]]:
    """Per image, the median over rounds of each stage's seconds."""
    per_round = [[staged(sample.data)[0] for sample in samples] for _ in range(rounds)]
    return [
        {stage: statistics.median(run[index][stage] for run in per_round) for stage in STAGES}
        for index in range(len(samples))
    ]


# --- Report ------------------------------------------------------------------------------------


def rows(samples: list[Sample]) -> dict[str, list[int]]:
    """Row label -> indices of the images it covers: each group, its detail rows, and all."""
    table: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        table[sample.kind.group].append(index)
        if sample.kind.detail:
            table[sample.kind.detail].append(index)
    table["all"] = list(range(len(samples)))
    return table


def image_info(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


def print_header(samples: list[Sample], rounds: int, warmup: int) -> None:
    print(f"Loupe intake benchmark: {len(samples)} distinct files from skimage photos; "
          f"{rounds} rounds after {warmup} warm-up pass(es); Pillow {Image.__version__}, "
          f"libjpeg-turbo {features.version('libjpeg_turbo')}")
    for label, indices in rows(samples).items():
        if label == "all" or label.startswith(" "):
            continue
        group = [samples[index] for index in indices]
        fmt, size = image_info(group[0].data)
        megabytes = statistics.mean(len(sample.data) for sample in group) / 1e6
        rotated = sum(sample.kind.orientation == ROTATED for sample in group)
        note = f", {rotated} stored sideways with EXIF orientation 6" if rotated else ""
        print(f"  {label:<11} x{len(group):<3} {fmt} {size[0]}x{size[1]} (as stored), "
              f"mean {megabytes:.2f} MB{note}")
    print("intake = pipeline.preprocess (draft decode, orient, RGB, bound to "
          f"{images.DERIVATIVE_MAX_SIDE} px, JPEG q{images.DERIVATIVE_QUALITY}, sha256, dHash) "
          "+ pipeline.check_quality (default QualityRules)")
    print("decode = Image.open(BytesIO(data)) + load(), full size")


def print_round(number: int, timings: list[tuple[float, float]]) -> None:
    intake_s = sum(intake for intake, _ in timings)
    decode_s = sum(decode for _, decode in timings)
    n = len(timings)
    print(f"round {number}: intake {n / intake_s:6.2f} images/s   decode {n / decode_s:6.2f} images/s   "
          f"ratio {decode_s / intake_s:.3f}")


def print_throughput(samples: list[Sample], results: list[list[tuple[float, float]]]) -> None:
    print(f"\nmedian over rounds     {'intake img/s':>12} {'decode img/s':>12} {'ratio':>7}"
          f"   (ratio = intake throughput / decode throughput)")
    for label, indices in rows(samples).items():
        intake = [sum(timings[i][0] for i in indices) for timings in results]
        decode = [sum(timings[i][1] for i in indices) for timings in results]
        intake_rate = statistics.median(len(indices) / s for s in intake)
        decode_rate = statistics.median(len(indices) / s for s in decode)
        ratio = statistics.median(d / i for i, d in zip(intake, decode, strict=True))
        print(f"{label:<22} {intake_rate:12.2f} {decode_rate:12.2f} {ratio:7.3f}")


def print_stages(samples: list[Sample], stages: list[dict[str, float]]) -> None:
    print("\nintake stages, share of staged intake time (ms per image in brackets; median over rounds)")
    print(f"{'':<22} {'ms/img':>7}  " + "".join(f"{stage:>16}" for stage in STAGES))
    for label, indices in rows(samples).items():
        totals = {stage: sum(stages[i][stage] for i in indices) for stage in STAGES}
        whole = sum(totals.values())
        cells = "".join(
            f"{totals[stage] / whole:>7.1%} ({totals[stage] / len(indices) * 1000:5.1f})" for stage in STAGES)
        print(f"{label:<22} {whole / len(indices) * 1000:7.1f}  {cells}")


def print_quality(problems: list[list[str]]) -> None:
    flagged = sum(bool(found) for found in problems)
    note = "" if not flagged else " (the sharpness check runs only on images with no other problem)"
    print(f"\nquality: {flagged} of {len(problems)} images flagged with default QualityRules{note}")


# --- Main --------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> None:
    samples = make_samples(args.n, args.seed)
    problems = check_staged(samples)
    for number in range(args.warmup):
        measure_round(samples, number)
    print_header(samples, args.rounds, args.warmup)
    results = []
    for number in range(1, args.rounds + 1):
        results.append(measure_round(samples, number))
        print_round(number, results[-1])
    print_throughput(samples, results)
    print_stages(samples, measure_stages(samples, args.rounds))
    print_quality(problems)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.n < 3 or args.rounds < 1 or args.warmup < 1:
        raise SystemExit("--n must be at least 3 (one image per group); --rounds and --warmup at least 1")
    benchmark(args)


if __name__ == "__main__":
    main()
