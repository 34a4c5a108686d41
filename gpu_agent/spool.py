"""Where batches wait while the collector does not answer: on disk (`--spool DIR`) or in memory.

A batch is one cycle's OTLP request, gzipped, with the idempotency key it keeps for life and a
sequence number that orders it. The spool is bounded by bytes: when a new batch does not fit, the
oldest batches are dropped (and returned, so the caller counts and reports them).

On disk each batch is one file `<seq>.batch`: a magic line, a JSON header line (key, sequence,
creation time, points, body length and CRC-32), then the body. Files are written to a temporary
name, fsynced and renamed, so a crash leaves either the whole batch or none; a file that fails its
length or CRC check at read time is dropped as corrupt. Sequence numbers continue from the largest
found at start, so batches spooled by an earlier run replay before the new run's.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vigil.logs import event
from vigil.pidlock import LockHeld, PidLock

log = logging.getLogger(__name__)

MAGIC = b"VIGIL-AGENT-BATCH 1\n"
SUFFIX = ".batch"


@dataclass
class Batch:
    seq: int
    key: str  # the Idempotency-Key: the same on every attempt, across restarts
    created_ns: int
    points: int
    body: bytes  # gzipped ExportMetricsServiceRequest

    @property
    def size(self) -> int:
        return len(self.body)


class SpoolError(Exception):
    pass


class Spool(Protocol):
    max_bytes: int

    def append(self, batch: Batch) -> list[Batch]: ...

    def oldest(self) -> Batch | None: ...

    def remove(self, seq: int) -> None: ...

    def next_seq(self) -> int: ...

    def __len__(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    @property
    def durable(self) -> bool: ...

    def close(self) -> None: ...


class MemorySpool:
    """The spool without `--spool`: same order and bounds, lost on exit."""

    durable = False

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._seqs: list[int] = []
        self._batches: dict[int, Batch] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def append(self, batch: Batch) -> list[Batch]:
        if batch.size > self.max_bytes:  # could never fit: keep the older batches rather than flush them for it
            return [batch]
        with self._lock:
            dropped = []
            while self._seqs and self._bytes + batch.size > self.max_bytes:
                dropped.append(self._pop(self._seqs[0]))
            bisect.insort(self._seqs, batch.seq)
            self._batches[batch.seq] = batch
            self._bytes += batch.size
            return dropped

    def _pop(self, seq: int) -> Batch:
        batch = self._batches.pop(seq)
        self._seqs.remove(seq)
        self._bytes -= batch.size
        return batch

    def oldest(self) -> Batch | None:
        with self._lock:
            return self._batches[self._seqs[0]] if self._seqs else None

    def remove(self, seq: int) -> None:
        with self._lock:
            if seq in self._batches:
                self._pop(seq)

    def next_seq(self) -> int:
        return 1

    def __len__(self) -> int:
        return len(self._seqs)

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        pass


@dataclass
class _Entry:
    seq: int
    path: Path
    size: int  # body bytes, what the bound counts


class DiskSpool:
    """Batches as files in one directory, which one agent holds locked."""

    durable = True

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []  # sorted by seq
        self._bytes = 0
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool directory {directory}: {exc}") from None
        self._lockfile = self._take_lock(directory / "lock")
        self.corrupt = 0
        self._load()

    @staticmethod
    def _take_lock(path: Path) -> PidLock:
        try:
            return PidLock(path, mode=0o600).acquire()
        except LockHeld as held:
            raise SpoolError(
                f"the spool {path.parent} is in use by another agent (pid {held.holder}); "
                "give each agent its own --spool"
            ) from None
        except OSError as exc:
            raise SpoolError(f"cannot open {path}: {exc}; is the spool directory writable?") from None

    def _load(self) -> None:
        for path in self.directory.iterdir():
            if path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)  # a write a crash interrupted: its batch was never acknowledged
                continue
            if not path.name.endswith(SUFFIX):
                continue
            try:
                seq = int(path.name[: -len(SUFFIX)])
                size = path.stat().st_size
            except (ValueError, OSError):
                continue
            self._entries.append(_Entry(seq, path, size))
        self._entries.sort(key=lambda e: e.seq)
        self._bytes = sum(e.size for e in self._entries)
        if self._entries:
            event(log, "spool_loaded", directory=self.directory, batches=len(self._entries), bytes=self._bytes)

    def next_seq(self) -> int:
        with self._lock:
            return self._entries[-1].seq + 1 if self._entries else 1

    def append(self, batch: Batch) -> list[Batch]:
        header = json.dumps(
            {
                "key": batch.key,
                "seq": batch.seq,
                "created_ns": batch.created_ns,
                "points": batch.points,
                "length": len(batch.body),
                "crc32": zlib.crc32(batch.body),
            },
            separators=(",", ":"),
        ).encode()
        data = MAGIC + header + b"\n" + batch.body
        if len(data) > self.max_bytes:  # could never fit: keep the older batches rather than flush them for it
            return [batch]
        with self._lock:
            dropped = []
            while self._entries and self._bytes + len(data) > self.max_bytes:
                entry = self._entries[0]
                dropped.append(self._read(entry) or Batch(entry.seq, "", 0, 0, b""))
                self._delete(entry)
            path = self.directory / f"{batch.seq:016d}{SUFFIX}"
            tmp = self.directory / f"{batch.seq:016d}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                self._fsync_dir()
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise SpoolError(f"cannot write to the spool {self.directory}: {exc}") from None
            bisect.insort(self._entries, _Entry(batch.seq, path, len(data)), key=lambda e: e.seq)
            self._bytes += len(data)
            return dropped

    def _fsync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read(self, entry: _Entry) -> Batch | None:
        try:
            data = entry.path.read_bytes()
        except OSError:
            return None
        if not data.startswith(MAGIC):
            return None
        header_end = data.find(b"\n", len(MAGIC))
        try:
            header = json.loads(data[len(MAGIC) : header_end])
            body = data[header_end + 1 :]
            if len(body) != header["length"] or zlib.crc32(body) != header["crc32"]:
                return None
            return Batch(int(header["seq"]), str(header["key"]), int(header["created_ns"]), int(header["points"]), body)
        except (ValueError, KeyError, TypeError):
            return None

    def _delete(self, entry: _Entry) -> None:
        with contextlib.suppress(OSError):
            entry.path.unlink()
        self._entries.remove(entry)
        self._bytes -= entry.size

    def oldest(self) -> Batch | None:
        with self._lock:
            while self._entries:
                entry = self._entries[0]
                batch = self._read(entry)
                if batch is not None:
                    return batch
                self.corrupt += 1
                event(log, "spool_batch_corrupt", level=logging.WARNING, path=entry.path)
                self._delete(entry)
            return None

    def remove(self, seq: int) -> None:
        with self._lock:
            for entry in self._entries:
                if entry.seq == seq:
                    self._delete(entry)
                    return

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._lockfile.release()
