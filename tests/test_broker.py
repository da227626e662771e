"""The embedded broker (config/broker.py): a consumer never takes half a message, and an
unreadable message is set aside with a log line instead of stopping the worker."""

from __future__ import annotations

import os
import time
from pathlib import Path
from queue import Empty

import pytest
from kombu import Connection
from kombu.transport import filesystem

import config.broker
from classify import health
from classify.models import Item, WorkerHeartbeat
from classify.tasks import prune_broker
from config.broker import transport_for
from tests.base import make_colour_project, solid_image
from tests.test_worker import upload, wait_until_terminal

URL = "filesystem://localhost//"


def options(root: Path) -> dict:
    folders = {name: root / name for name in ("queue", "claimed", "quarantine")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
        "control_folder": str(folders["queue"]), "claim_folder": str(folders["claimed"]),
        "quarantine_folder": str(folders["quarantine"]),
    }


@pytest.fixture
def channels(tmp_path):
    """A publishing and a consuming channel on one queue folder, with the transport settings wire."""
    opts = options(tmp_path)
    with Connection(URL, transport=transport_for(URL), transport_options=opts) as producer_conn, \
            Connection(URL, transport=transport_for(URL), transport_options=opts) as consumer_conn:
        yield producer_conn.default_channel, consumer_conn.default_channel, tmp_path


def payload(body: str) -> dict:
    return {"body": body, "properties": {"delivery_tag": body}, "headers": {}}


class FilesystemBrokerTests:
    def test_the_settings_use_loupes_transport_for_the_embedded_broker(self):
        assert transport_for(URL) == "config.broker:FilesystemTransport"

    def test_a_consumer_polling_during_a_publish_never_takes_a_half_written_message(self, channels, monkeypatch):
        """kombu's own transport creates the file, then writes it: a poll in between took an
        empty file and the worker died on JSONDecodeError (celery/kombu#1551)."""
        producer, consumer, _ = channels
        seen = []

        def poll_then_dump(obj, *args, **kwargs):
            try:  # the moment the message is being written
                seen.append(consumer._get("celery"))
            except Empty:
                seen.append("nothing")
            return real_dumps(obj, *args, **kwargs)

        real_dumps = config.broker.dumps
        monkeypatch.setattr(config.broker, "dumps", poll_then_dump)
        monkeypatch.setattr(filesystem, "dumps", poll_then_dump)

        producer._put("celery", payload("one"))

        assert seen == ["nothing"]
        assert consumer._get("celery")["body"] == "one"

    def test_an_unreadable_message_is_quarantined_and_the_next_one_is_delivered(self, channels, caplog):
        producer, consumer, root = channels
        queue = root / "queue"
        (queue / "0000000000000001_empty.celery.msg").write_bytes(b"")
        (queue / "0000000000000002_garbage.celery.msg").write_bytes(b"\xff{not json")
        (queue / "0000000000000003_other.celery.msg").write_bytes(b'["a list"]')
        producer._put("celery", payload("good"))

        assert consumer._get("celery")["body"] == "good"
        with pytest.raises(Empty):
            consumer._get("celery")
        quarantined = sorted(path.name for path in (root / "quarantine").iterdir())
        assert quarantined == ["0000000000000001_empty.celery.msg", "0000000000000002_garbage.celery.msg",
                               "0000000000000003_other.celery.msg"]
        assert caplog.text.count("unreadable message") == 3
        assert not list(queue.glob("*.msg")) and not list((root / "claimed").iterdir())

    def test_a_publish_leaves_no_partial_file_and_messages_come_out_oldest_first(self, channels):
        producer, consumer, root = channels
        for body in ("a", "b", "c"):
            producer._put("celery", payload(body))
        assert [path.name.startswith(".") for path in (root / "queue").iterdir()] == [False] * 3
        assert [consumer._get("celery")["body"] for _ in range(3)] == ["a", "b", "c"]

    def test_a_message_published_after_the_consumer_listed_the_folder_is_still_delivered(self, channels):
        producer, consumer, _ = channels
        producer._put("celery", payload("first"))
        producer._put("celery", payload("second"))
        assert consumer._get("celery")["body"] == "first"  # the listing is cached: "second" is in it
        producer._put("celery", payload("third"))
        assert [consumer._get("celery")["body"] for _ in range(2)] == ["second", "third"]

    def test_two_consumers_never_get_the_same_message(self, channels, tmp_path):
        producer, consumer, _ = channels
        with Connection(URL, transport=transport_for(URL), transport_options=options(tmp_path)) as other:
            second = other.default_channel
            for index in range(20):
                producer._put("celery", payload(str(index)))
            got = []
            for turn in range(40):
                try:
                    got.append((consumer if turn % 2 else second)._get("celery")["body"])
                except Empty:
                    pass
        assert sorted(got, key=int) == [str(index) for index in range(20)]

def test_prune_broker_requeues_orphaned_claims_and_drops_old_leftovers(settings, tmp_path):
    opts = options(tmp_path)
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = opts
    queue, claimed, quarantine = (Path(opts[name]) for name in ("data_folder_in", "claim_folder", "quarantine_folder"))
    files = {
        "orphan": claimed / "1_a.celery.msg", "fresh_claim": claimed / "2_b.celery.msg",
        "partial": queue / ".3_c.celery.msg.partial", "fresh_partial": queue / ".4_d.celery.msg.partial",
        "old_bad": quarantine / "5_e.celery.msg", "new_bad": quarantine / "6_f.celery.msg",
    }
    for path in files.values():
        path.write_text("{}")
    hour_ago, month_ago = time.time() - 3700, time.time() - 30 * 86400
    for name, when in {"orphan": hour_ago, "partial": hour_ago, "old_bad": month_ago}.items():
        os.utime(files[name], (when, when))

    assert prune_broker() == 3

    assert (queue / "1_a.celery.msg").exists()  # a consumer died between claiming and reading it
    assert not files["partial"].exists() and not files["old_bad"].exists()
    assert files["fresh_claim"].exists() and files["fresh_partial"].exists() and files["new_bad"].exists()


@pytest.mark.worker
def test_a_real_worker_survives_an_empty_message_file_and_keeps_working(celery_worker_process, settings):
    """The worker that died in the field, now: an empty message file (what kombu's own publish
    leaves for an instant) is set aside, and the next upload is classified by the same worker."""
    if not settings.CELERY_BROKER_URL.startswith("filesystem://"):
        pytest.skip("the embedded filesystem broker only")
    queue = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    (queue / "0000000000000000_broken.celery.msg").write_bytes(b"")
    project = make_colour_project()

    [item] = wait_until_terminal([upload(project, solid_image((255, 0, 0)), "red.png")])

    assert item.status == Item.Status.AUTO_ACCEPTED
    assert celery_worker_process.worker.running
    assert "unreadable message 0000000000000000_broken.celery.msg" in celery_worker_process.log()
    assert "Unrecoverable error" not in celery_worker_process.log()


@pytest.mark.worker
def test_a_running_worker_beats_and_health_counts_it(celery_worker_process):
    deadline = time.monotonic() + 20
    while not WorkerHeartbeat.objects.exists():
        assert time.monotonic() < deadline, celery_worker_process.log()
        time.sleep(0.1)
    [worker] = health.health_report().workers
    assert worker["name"].startswith("celery@") and worker["seen_seconds_ago"] < 5
