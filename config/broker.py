"""Kombu transports with the fixes Loupe needs; chosen by ``CELERY_BROKER_TRANSPORT`` in settings.

``FilesystemTransport`` (the embedded default's broker, no server). Kombu 5.7's filesystem
transport creates a message file and then writes it, while a consumer renames any ``*.msg`` it
lists: a worker polling at the wrong moment took an empty file, failed to parse it and exited
("Unrecoverable error: JSONDecodeError", celery/kombu#1551), losing the message. Here a message
is written and flushed under a hidden name the consumer never picks, then ``os.replace``d into
the queue folder (atomic on one filesystem), so a consumer sees a whole file or none. A file
that still cannot be read (a disk error, a stray file) is moved to the quarantine folder with a
log line and the consumer carries on: no message can stop the worker.

``RedisTransport``. When the Redis connection drops while tasks are in flight (acks_late), Celery
closes the old connection before closing its default channel a second time; that close tries to
put the unacknowledged messages back through a transport whose client is already gone and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``, which Celery does not treat as
a connection error: the worker exited (family of celery/kombu#582). Here that case raises Redis's
own ``ConnectionError``, which kombu ignores while closing, and the worker reconnects. The
messages stay in Redis's unacked set and come back after the visibility timeout; the database
claim makes a second delivery harmless.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import deque
from pathlib import Path
from queue import Empty

from kombu.transport import filesystem, redis
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

PARTIAL_PREFIX = "."  # "<.name>.partial": never "<anything>.<queue>.msg", so never consumed
PARTIAL_SUFFIX = ".partial"


class FilesystemChannel(filesystem.Channel):
    """Atomic publish, a cached folder listing, and quarantine instead of a crash."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._candidates: dict[str, deque[str]] = {}

    # --- publish ---------------------------------------------------------------------------

    def _put(self, queue, payload, **kwargs) -> None:
        """Write the whole message under a hidden name, then rename it into the queue folder."""
        name = f"{time.time_ns() // 1000:016d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f"{PARTIAL_PREFIX}{name}{PARTIAL_SUFFIX}")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
            os.replace(partial, final)
        except OSError as exc:
            _unlink_quietly(partial)
            raise filesystem.ChannelError(f"Cannot add message {name!r} to {self.data_folder_out}") from exc

    # --- consume ---------------------------------------------------------------------------

    def _get(self, queue):
        """The next readable message of ``queue``; unreadable files are quarantined, skipped."""
        suffix = f"{queue}.msg"
        candidates = self._candidates.get(queue)
        if not candidates:
            candidates = self._candidates[queue] = deque(
                sorted(name for name in os.listdir(self.data_folder_in) if name.partition(".")[2] == suffix)
            )
        while candidates:
            name = candidates.popleft()
            claimed = os.path.join(self.claim_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another consumer took it first
            message = self._read_claimed(claimed)
            if message is not None:
                return message
        raise Empty()

    def _read_claimed(self, path: str) -> dict | None:
        """The message in a file this consumer owns, or None after quarantining the file."""
        try:
            with open(path, "rb") as handle:
                message = loads(bytes_to_str(handle.read()))
            if not isinstance(message, dict) or not isinstance(message.get("properties"), dict):
                raise ValueError("not a kombu message")
        except (OSError, ValueError) as exc:
            self._quarantine(path, exc)
            return None
        if self.store_processed:
            os.replace(path, os.path.join(self.processed_folder, os.path.basename(path)))
        else:
            _unlink_quietly(path)
        return message

    def _quarantine(self, path: str, exc: Exception) -> None:
        target = os.path.join(self.quarantine_folder, os.path.basename(path))
        try:
            os.replace(path, target)
        except OSError:
            target = "(could not move it)"
        log.error("broker: unreadable message %s set aside in %s: %s", os.path.basename(path), target, exc)

    def _purge(self, queue) -> int:
        self._candidates.pop(queue, None)
        return super()._purge(queue)

    # --- folders (transport options; defaults beside the queue folder, on the same disk) ----

    def _folder(self, option: str, default_name: str) -> str:
        folder = self.transport_options.get(option) or os.path.join(
            os.path.dirname(os.path.abspath(self.data_folder_in)), default_name
        )
        Path(folder).mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def claim_folder(self) -> str:
        return self.__dict__.setdefault("_claim_folder", self._folder("claim_folder", "claimed"))

    @property
    def quarantine_folder(self) -> str:
        return self.__dict__.setdefault("_quarantine_folder", self._folder("quarantine_folder", "quarantine"))

    @property
    def fsync(self) -> bool:
        return bool(self.transport_options.get("fsync", False))


class FilesystemTransport(filesystem.Transport):
    Channel = FilesystemChannel
    global_state = filesystem.Transport.global_state


class RedisChannel(redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict:
        """A closed connection is a connection error (kombu ignores it while closing), not an
        AttributeError that stops the worker."""
        if getattr(self.connection, "client", None) is None:
            from redis.exceptions import ConnectionError as RedisConnectionError

            raise RedisConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(redis.Transport):
    Channel = RedisChannel


def transport_for(url: str) -> str | None:
    """The transport class for a broker URL, when Loupe patches that transport."""
    scheme = url.partition("://")[0]
    if scheme == "filesystem":
        return "config.broker:FilesystemTransport"
    if scheme in {"redis", "rediss"}:
        return "config.broker:RedisTransport"
    return None


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
