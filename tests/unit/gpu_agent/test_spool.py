"""The spool: order, bounds, restarts, torn and corrupt files, one agent per directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_agent.spool import Batch, DiskSpool, MemorySpool, SpoolError


def batch(seq: int, size: int = 100) -> Batch:
    return Batch(seq, f"key-{seq}", 1_800_000_000 * 10**9 + seq, points=seq * 10, body=bytes([seq % 256]) * size)


def drain(spool: DiskSpool | MemorySpool) -> list[int]:
    out = []
    while (b := spool.oldest()) is not None:
        out.append(b.seq)
        spool.remove(b.seq)
    return out


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_batches_come_back_oldest_first_whatever_order_they_arrived_in(kind: str, tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool", 10_000) if kind == "disk" else MemorySpool(10_000)
    for seq in (3, 1, 2, 5, 4):
        assert spool.append(batch(seq)) == []
    assert len(spool) == 5
    first = spool.oldest()
    assert first is not None and (first.seq, first.key, first.points) == (1, "key-1", 10)
    assert first.body == bytes([1]) * 100
    assert drain(spool) == [1, 2, 3, 4, 5]
    assert spool.bytes == 0
    spool.close()


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_when_full_the_oldest_batches_are_dropped_and_returned(kind: str, tmp_path: Path) -> None:
    def make(bound: int, where: str) -> DiskSpool | MemorySpool:
        return DiskSpool(tmp_path / where, bound) if kind == "disk" else MemorySpool(bound)

    probe = make(1_000_000, "probe")
    probe.append(batch(1))
    one = probe.bytes  # what one batch counts against the bound (on disk: with its header)
    probe.close()
    spool = make(3 * one, "spool")
    for seq in (1, 2, 3):
        assert spool.append(batch(seq)) == []
    dropped = spool.append(batch(4))
    assert [b.seq for b in dropped] == [1]
    assert dropped[0].points == 10  # the caller counts what was lost
    too_big = batch(9, size=10 * one)
    assert spool.append(too_big) == [too_big]  # refused alone: the batches that fit stay
    assert drain(spool) == [2, 3, 4]
    spool.close()


def test_a_restarted_agent_finds_its_batches_and_numbers_after_them(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1_000_000)
    for seq in (7, 8):
        spool.append(batch(seq))
    spool.close()
    (tmp_path / "0000000000000009.tmp").write_bytes(b"half a batch")  # a crash mid-write
    again = DiskSpool(tmp_path, 1_000_000)
    assert len(again) == 2 and again.next_seq() == 9
    assert not (tmp_path / "0000000000000009.tmp").exists()
    b = again.oldest()
    assert b is not None and (b.seq, b.key) == (7, "key-7")  # the key survives: a replay is recognised
    again.close()


def test_a_corrupt_batch_is_skipped_not_sent(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 1_000_000)
    spool.append(batch(1))
    spool.append(batch(2))
    path = tmp_path / "0000000000000001.batch"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # a flipped bit in the body
    path.write_bytes(bytes(data))
    assert drain(spool) == [2]
    assert spool.corrupt == 1
    spool.close()


def test_one_spool_directory_belongs_to_one_agent(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, 1000)
    with pytest.raises(SpoolError, match=r"in use by another agent \(pid \d+\)"):
        DiskSpool(tmp_path, 1000)
    first.close()
    DiskSpool(tmp_path, 1000).close()
