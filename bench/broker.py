"""The embedded broker: Loupe's filesystem transport (config/broker.py) against kombu's own, and
both against the floor of any one-file-per-message broker.

    .venv/bin/python bench/broker.py [--messages 2000] [--race 3000]

No server, no database: kombu channels on a temporary folder (on the same disk as var/).

(1) publish: N messages of a Celery-sized payload (~1 KB), one ``_put`` each; floor: open, write,
    close of the same bytes under a fresh name (what any file-per-message broker must do).
    Loupe's transport is measured with and without fsync (LOUPE_BROKER_FSYNC).
(2) consume: N messages taken one by one with ``_get``, with N waiting (the backlog sizes show
    how the cost grows); floor: list once, then rename, read and unlink each file.
(3) the race behind the worker deaths: two publisher processes write M messages while a
    consumer process polls the folder as fast as it can; counted: messages the consumer could
    not parse (each one a worker exit with kombu's transport), messages lost, duplicates.
"""

from __future__ import annotations

import _benchpath  # noqa: F401  (first: keeps bench/ off sys.path)

import argparse
import multiprocessing
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu import Connection

ROOT = Path(__file__).resolve().parent.parent
URL = "filesystem://localhost//"
TRANSPORTS = {"stock": "kombu.transport.filesystem:Transport", "loupe": "config.broker:FilesystemTransport"}
PAYLOAD = {"body": "x" * 900, "content-encoding": "utf-8", "content-type": "application/json", "headers": {},
           "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "", "routing_key": "celery"}}}


def folders(root: Path, *, fsync: bool = True) -> dict:
    options = {"fsync": fsync}
    for name in ("queue", "claimed", "quarantine", "processed"):
        (root / name).mkdir(parents=True, exist_ok=True)
    options.update(data_folder_in=str(root / "queue"), data_folder_out=str(root / "queue"),
                   control_folder=str(root / "queue"), claim_folder=str(root / "claimed"),
                   quarantine_folder=str(root / "quarantine"), processed_folder=str(root / "processed"))
    return options


def channel(transport: str, options: dict):
    return Connection(URL, transport=TRANSPORTS[transport], transport_options=options).default_channel


def publish_rate(transport: str, n: int, root: Path, *, fsync: bool = True) -> float:
    chan = channel(transport, folders(root, fsync=fsync))
    start = time.perf_counter()
    for index in range(n):
        chan._put("celery", {**PAYLOAD, "properties": {**PAYLOAD["properties"], "delivery_tag": str(index)}})
    return n / (time.perf_counter() - start)


def publish_floor(n: int, root: Path) -> float:
    folder = root / "floor"
    folder.mkdir(parents=True, exist_ok=True)
    data = str(PAYLOAD).encode()
    start = time.perf_counter()
    for _ in range(n):
        with open(folder / f"{uuid.uuid4()}.msg", "wb") as handle:
            handle.write(data)
    return n / (time.perf_counter() - start)


def consume_rate(transport: str, n: int, root: Path) -> float:
    options = folders(root, fsync=False)
    publisher = channel(transport, options)
    for index in range(n):
        publisher._put("celery", {**PAYLOAD, "properties": {**PAYLOAD["properties"], "delivery_tag": str(index)}})
    consumer = channel(transport, options)
    start = time.perf_counter()
    for _ in range(n):
        consumer._get("celery")
    return n / (time.perf_counter() - start)


def consume_floor(n: int, root: Path) -> float:
    source, target = root / "floor-in", root / "floor-out"
    source.mkdir(parents=True)
    target.mkdir()
    for index in range(n):
        (source / f"{index:08d}.msg").write_bytes(b"{}")
    start = time.perf_counter()
    for name in sorted(os.listdir(source)):
        os.rename(source / name, target / name)
        (target / name).read_bytes()
        os.unlink(target / name)
    return n / (time.perf_counter() - start)


def _publisher(transport: str, options: dict, start: int, count: int) -> None:
    chan = channel(transport, options)
    for index in range(start, start + count):
        chan._put("celery", {**PAYLOAD, "properties": {**PAYLOAD["properties"], "delivery_tag": str(index)}})


def _consumer(transport: str, options: dict, total: int, results) -> None:
    chan = channel(transport, options)
    seen, unreadable, deadline = [], 0, time.monotonic() + 120
    while len(seen) + unreadable < total and time.monotonic() < deadline:
        try:
            seen.append(chan._get("celery")["properties"]["delivery_tag"])
        except Empty:
            time.sleep(0.0005)
        except ValueError:  # JSONDecodeError: with kombu's transport, the worker exits here
            unreadable += 1
    results.put((seen, unreadable))


def race(transport: str, m: int, root: Path) -> dict:
    options = folders(root, fsync=False)
    results = multiprocessing.Queue()
    consumer = multiprocessing.Process(target=_consumer, args=(transport, options, m, results))
    consumer.start()
    publishers = [multiprocessing.Process(target=_publisher, args=(transport, options, k * (m // 2), m // 2))
                  for k in range(2)]
    for process in publishers:
        process.start()
    for process in publishers:
        process.join()
    seen, unreadable = results.get(timeout=180)
    consumer.join()
    quarantined = len(list((root / "quarantine").iterdir()))
    return {"unreadable": unreadable + quarantined, "lost": m - len(set(seen)), "duplicates": len(seen) - len(set(seen))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--race", type=int, default=3000, help="messages in the race (two publishers)")
    args = parser.parse_args()
    base = ROOT / "var"
    base.mkdir(exist_ok=True)

    def fresh() -> Path:
        return Path(tempfile.mkdtemp(prefix="bench-broker-", dir=base))

    roots = []
    try:
        n = args.messages
        print(f"(1) publish {n} messages, messages/s (floor: open+write+close of the same bytes)")
        floor = publish_floor(n, root := fresh())
        roots.append(root)
        for name, kwargs in (("stock", {}), ("loupe", {"fsync": False}), ("loupe", {"fsync": True})):
            rate = publish_rate(name, n, root := fresh(), **kwargs)
            roots.append(root)
            label = name + ("" if name == "stock" else f" fsync={'on' if kwargs['fsync'] else 'off'}")
            print(f"    {label:18s} {rate:9.0f}/s   floor {floor:9.0f}/s   ratio {floor / rate:5.2f}")
        print("(2) consume with N waiting, messages/s (floor: list once, rename+read+unlink each)")
        for size in (100, 1000, 10 * n if n <= 1000 else 10000):
            floor = consume_floor(size, root := fresh())
            roots.append(root)
            for name in TRANSPORTS:
                rate = consume_rate(name, size, root := fresh())
                roots.append(root)
                print(f"    N={size:<6d} {name:6s} {rate:9.0f}/s   floor {floor:9.0f}/s   ratio {floor / rate:6.2f}")
        print(f"(3) race: 2 publishers x {args.race // 2} messages, 1 consumer polling")
        for name in TRANSPORTS:
            outcome = race(name, args.race, root := fresh())
            roots.append(root)
            print(f"    {name:6s} unreadable {outcome['unreadable']:4d}   lost {outcome['lost']:4d}   "
                  f"duplicates {outcome['duplicates']:4d}   (each unreadable one: a worker exit with kombu's transport)")
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
