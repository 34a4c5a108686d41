"""The collector's write-ahead log: a batch's request bodies, on disk before its insert starts.

Why: one batch is several inserts (one per table, then the ledger). If the process dies
between them, the batch is replayed at start-up with the same deduplication tokens, so the
tables that already hold it skip it and the rest receive it; the client's retry then finds its
key in the ledger. That closes the one window in which a retry could otherwise duplicate rows.

A file is written to a temporary name, fsynced, then renamed, so a file under its final name is
always complete; its CRC is checked anyway before replay.

Format 2 adds, per entry, the time the request was accepted (so replay validates timestamps
against the clock the request first met, not today's) and the SHA-256 of its decompressed body
(recorded in the ledger with the key). Format 1 files stay readable: their entries have neither.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

MAGIC_V1 = b"VWAL1\n"
MAGIC = b"VWAL2\n"
_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class WalEntry:
    key: str
    media: str
    encoding: str
    body: bytes
    accepted_ns: int = 0  # 0: not recorded (a format-1 file); replay then uses the current clock
    digest: str = ""  # SHA-256 hex of the decompressed body; "" when not recorded


class CorruptWal(Exception):
    pass


def _pack(entries: list[WalEntry]) -> bytes:
    parts = [MAGIC, _LEN.pack(len(entries))]
    for e in entries:
        for field in (
            e.key.encode(),
            e.media.encode(),
            e.encoding.encode(),
            e.body,
            b"%d" % e.accepted_ns,
            e.digest.encode(),
        ):
            parts.append(_LEN.pack(len(field)))
            parts.append(field)
    payload = b"".join(parts)
    return payload + _LEN.pack(zlib.crc32(payload))


def _unpack(data: bytes) -> list[WalEntry]:
    if len(data) < len(MAGIC) + 8 or not (data.startswith(MAGIC) or data.startswith(MAGIC_V1)):
        raise CorruptWal("bad header")
    n_fields = 6 if data.startswith(MAGIC) else 4
    payload, (crc,) = data[:-4], _LEN.unpack(data[-4:])
    if zlib.crc32(payload) != crc:
        raise CorruptWal("checksum mismatch")
    pos = len(MAGIC)
    (count,) = _LEN.unpack_from(payload, pos)
    pos += 4
    entries = []
    for _ in range(count):
        fields = []
        for _ in range(n_fields):
            (n,) = _LEN.unpack_from(payload, pos)
            pos += 4
            fields.append(payload[pos : pos + n])
            pos += n
        if pos > len(payload):
            raise CorruptWal("truncated entry")
        extra = (int(fields[4]), fields[5].decode()) if n_fields == 6 else (0, "")
        entries.append(WalEntry(fields[0].decode(), fields[1].decode(), fields[2].decode(), fields[3], *extra))
    return entries


class WriteAheadLog:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, batch_id: str, entries: list[WalEntry], suffix: str = ".wal") -> None:
        final = self.directory / f"{batch_id}{suffix}"
        tmp = self.directory / f".{batch_id}.tmp"
        with open(tmp, "wb") as f:
            f.write(_pack(entries))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remove(self, batch_id: str) -> None:
        (self.directory / f"{batch_id}.wal").unlink(missing_ok=True)

    def discard_torn(self) -> int:
        """Delete files never renamed into place: their batches were never inserted. Start-up only."""
        torn = list(self.directory.glob(".*.tmp"))
        for tmp in torn:
            tmp.unlink(missing_ok=True)
        return len(torn)

    def quarantine(self, batch_id: str) -> None:
        """Set an unreadable batch aside (`.corrupt`), out of the log but kept for inspection."""
        path = self.directory / f"{batch_id}.wal"
        if path.exists():
            path.replace(path.with_suffix(".corrupt"))

    def set_aside(self, batch_id: str, entries: list[WalEntry]) -> None:
        """Keep requests the store refused (`<batch>.refused`, same format) out of replay, for inspection."""
        self.write(batch_id, entries, suffix=".refused")

    def batch_ids(self) -> list[str]:
        """Batches in the log, oldest first."""
        return sorted(path.stem for path in self.directory.glob("*.wal"))

    def read(self, batch_id: str) -> list[WalEntry] | None:
        """A batch's entries, or None when its file is unreadable."""
        try:
            return _unpack((self.directory / f"{batch_id}.wal").read_bytes())
        except (OSError, CorruptWal, struct.error, UnicodeDecodeError, ValueError):
            return None
