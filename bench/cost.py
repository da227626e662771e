"""What the cascade saves on a mixed workload, and what precision it keeps: the same uploads
through the cascade and through the paid backend alone (the floor), at two sizes.

    .venv/bin/python bench/cost.py                   # sizes 100 and 400
    .venv/bin/python bench/cost.py --sizes 30,90

The real path: a Loupe started by ``bin/up`` (gunicorn with config/gunicorn.py, a Celery worker
process supervised) on PostgreSQL (a ``loupe_cost_bench`` database, recreated) and its own
``redis-server``; uploads over HTTP with an API token. The paid backend is the real ``rekognition``
module against a local DetectLabels stub on ``AWS_ENDPOINT_URL_REKOGNITION`` that answers the true
class (it reads it from a corner patch only it looks at) at 95% confidence, so every paid call is
counted by the stub and priced by Loupe ($0.001 a call). The cascade's first stage
(``LOUPE_CASCADE_BACKEND``) is the test suite's ``colour`` backend standing in for the local model:
free, confident on easy images, unsure on hard ones.

The workload, for N uploads: first 40% easy images (a saturated class colour under a random
block pattern; one in ten a lookalike, whose colour says another class than its true one) and 30%
hard ones (the class colour washed with grey), then, once those are final,
15% exact copies and 15% near-duplicates (the same pattern with faint pixel noise) of random
earlier images. The bench knows each image's true class. Columns: items; paid calls (the stub's
count) and dollars (recorded ``cost_usd``); calls and dollars saved against the floor; who answered
(reused scores of an identical image / a settled near-duplicate / the confident first stage / the
paid backend); items auto-accepted and the precision kept (auto-accepted labels that are the true
class); items left for review.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import base64
import io
import os
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("LOUPE_BENCH_PORTBASE", "8200")  # before bench.faults reads it

from bench import faults  # noqa: E402  (the port above first)
from bench._rekognition_stub import RekognitionStub  # noqa: E402

CLASSES = ("red", "green", "blue")
PRICE = 0.001


@dataclass
class Row:
    size: int
    mode: str
    items: int = 0
    paid_calls: int = 0
    dollars: float = 0.0
    reused: int = 0
    near_duplicate: int = 0
    first_stage: int = 0
    paid: int = 0
    auto: int = 0
    correct: int = 0
    review: int = 0
    seconds: float = 0.0


# --- The workload ----------------------------------------------------------------------------------


def picture(seed: int, body: int, truth: int, *, hard: bool, noise: int = 0) -> bytes:
    """128x128 PNG: an 8x8 block pattern (from ``seed``: what the perceptual hash sees) tinted with
    the ``body`` class colour, saturated when easy, washed with grey when hard, and a 16x16 corner
    in the ``truth`` class colour (what the paid backend stub reads: a detail only it sees); ``noise``
    adds faint pixel noise (a near-duplicate of the same seed)."""
    import numpy as np
    from PIL import Image

    blocks = np.random.default_rng(seed).random((8, 8))
    shade = np.kron(blocks, np.ones((16, 16)))
    low, high = (80 + 50 * shade, 130 + 60 * shade) if hard else (10 + 30 * shade, 170 + 85 * shade)
    pixels = np.stack([high if channel == body else low for channel in range(3)], axis=-1)
    pixels[:16, :16] = [255 if channel == truth else 0 for channel in range(3)]
    if noise:
        pixels = pixels + np.random.default_rng(seed * 7919 + noise).integers(-3, 4, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(buffer, format="PNG")
    return buffer.getvalue()


def workload(size: int, seed: int) -> tuple[list[tuple[str, bytes, str]], list[tuple[str, bytes, str]]]:
    """Two phases of (name, bytes, true class): the originals, then copies and near-duplicates.
    One easy image in ten is a lookalike: its colour says one class, its true class is another."""
    rng = random.Random(seed)
    easy, hard = round(size * 0.4), round(size * 0.3)
    first = []
    for index in range(easy + hard):
        truth = rng.randrange(3)
        body = (truth + 1) % 3 if index < easy and index % 10 == 9 else truth
        kind = "hard" if index >= easy else "lookalike" if body != truth else "easy"
        first.append((f"{kind}-{index}", (index, body, truth, index >= easy, 0)))
    second = []
    for index in range(size - len(first)):
        name, (base, body, truth, is_hard, _) = rng.choice(first)
        kind = "copy" if index % 2 == 0 else "near"
        second.append((f"{kind}-{index}-of-{name}", (base, body, truth, is_hard, 0 if kind == "copy" else index + 1)))

    def render(phase):
        return [(name, picture(base + seed * 100_000, body, truth, hard=is_hard, noise=noise), CLASSES[truth])
                for name, (base, body, truth, is_hard, noise) in phase]

    return render(first), render(second)


def truthful(request: dict) -> tuple[int, dict]:
    """DetectLabels answering the image's true class (its corner's colour) at 95%."""
    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(request["Image"]["Bytes"]))).convert("RGB")
    corner = np.asarray(image, dtype=float)[: image.height // 10, : image.width // 10]
    klass = CLASSES[int(corner.mean(axis=(0, 1)).argmax())]
    return 200, {"Labels": [{"Name": klass.title(), "Confidence": 95.0}], "LabelModelVersion": "3.0"}


# --- One run -----------------------------------------------------------------------------------------


def make_project(slug: str, *, cascade: bool):
    from classify.models import Label, Project
    from classify.services.budgets import set_cost_options
    from classify.services.projects import create_project

    project = create_project(slug=slug, labels=list(CLASSES), backend="rekognition", created_by=faults._bench_user())
    for name, colour in zip(CLASSES, ("#ff0000", "#00ff00", "#0000ff"), strict=True):
        Label.objects.filter(project=project, name=name).update(
            mappings={"colour": [colour], "rekognition": [name.title()]}, audit_rate=0)
    Project.objects.filter(pk=project.pk).update(backend_config={"region": "us-east-1"}, min_sharpness=0, refit_every=0)
    set_cost_options(project=project, over_budget=project.over_budget, cascade=cascade)
    return project


def send(base: str, token: str, slug: str, uploads: list[tuple[str, bytes, str]]) -> None:
    statuses: dict[str, list[int]] = {name: [] for name, _, _ in uploads}

    def one(upload: tuple[str, bytes, str]) -> None:
        name, data, _ = upload
        body, content_type = faults.multipart(data, f"{name}.png")
        headers = {"Authorization": f"Token {token}", "Content-Type": content_type, "Idempotency-Key": f"{slug}-{name}"}
        import urllib.request

        request = urllib.request.Request(f"{base}/api/v1/projects/{slug}/items/", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            statuses[name].append(response.status)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, uploads))


def run(loupe, stub: RekognitionStub, size: int, *, cascade: bool, seed: int) -> Row:
    from django.db import connection
    from django.db.models import Sum

    from classify.auth import issue_token
    from classify.models import Item, Prediction

    slug = f"cost-{size}-{'cascade' if cascade else 'paid'}"
    make_project(slug, cascade=cascade)
    token = issue_token(faults._bench_user())
    first, second = workload(size, seed)
    calls_before, started = stub.calls, time.monotonic()
    row = Row(size, "cascade" if cascade else "paid alone (floor)")
    for phase in (first, second):  # near-duplicates find their twin settled
        send(loupe.base, token, slug, phase)
        _, stuck = faults.wait_final(slug, len(first) + (len(second) if phase is second else 0),
                                     deadline=time.monotonic() + 300)
        if stuck:
            raise SystemExit(f"{slug}: {stuck} items not final after 300 s")
    row.seconds = time.monotonic() - started
    row.paid_calls = stub.calls - calls_before
    truth = {f"{name}.png": klass for name, _, klass in first + second}
    items = Item.objects.filter(project__slug=slug).select_related("label")
    row.items = items.count()
    for item in items:
        if item.status == Item.Status.AUTO_ACCEPTED:
            row.auto += 1
            row.correct += item.label is not None and item.label.name == truth[item.original_filename]
        elif item.status == Item.Status.NEEDS_REVIEW:
            row.review += 1
    predictions = Prediction.objects.filter(item__project__slug=slug)
    row.dollars = float(predictions.aggregate(total=Sum("cost_usd"))["total"] or 0)
    row.reused = predictions.filter(reused_from__isnull=False).count()
    row.near_duplicate = predictions.filter(raw__cascade="near_duplicate").count()
    row.first_stage = predictions.filter(raw__cascade="first_stage").count()
    row.paid = predictions.filter(backend="rekognition", reused_from__isnull=True).count()
    connection.close()
    return row


# --- The table ---------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    floors = {row.size: row for row in rows if row.mode.startswith("paid")}
    lines = [f"{'items':>5s} {'run':18s} {'paid calls':>10s} {'dollars':>8s} {'calls saved':>11s} {'$ saved':>8s} "
             f"{'reused/near-dup/first/paid':>26s} {'auto':>5s} {'precision kept':>14s} {'review':>6s} {'s':>5s}"]
    for row in rows:
        floor = floors[row.size]
        saved_calls = floor.paid_calls - row.paid_calls
        saved = f"{saved_calls} ({saved_calls / floor.paid_calls:.0%})" if floor.paid_calls else "-"
        precision = f"{row.correct / row.auto:.1%}" if row.auto else "-"
        answered = f"{row.reused}/{row.near_duplicate}/{row.first_stage}/{row.paid}"
        lines.append(f"{row.items:5d} {row.mode:18s} {row.paid_calls:10d} {row.dollars:8.3f} {saved:>11s} "
                     f"{floor.dollars - row.dollars:8.3f} {answered:>26s} {row.auto:5d} {precision:>14s} "
                     f"{row.review:6d} {row.seconds:5.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,400")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cost-", dir=_benchpath.ROOT / "var"))
    loupe = faults.Loupe("postgres", folder, quick=False, database="loupe_cost_bench")
    loupe.env.update({"LOUPE_CASCADE_BACKEND": "colour"})
    stub = RekognitionStub(faults.PORTBASE + 3, truthful).start()
    rows = []
    try:
        loupe.start()
        faults.setup_django(loupe)
        for size in (int(size) for size in args.sizes.split(",")):
            rows.append(run(loupe, stub, size, cascade=False, seed=args.seed))
            rows.append(run(loupe, stub, size, cascade=True, seed=args.seed))
    finally:
        stub.stop()
        loupe.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print(table(rows))


if __name__ == "__main__":
    main()
