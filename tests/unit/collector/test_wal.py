from pathlib import Path

from collector.wal import WalEntry, WriteAheadLog


def test_written_batches_come_back_in_order(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    a = [WalEntry("k1", "application/x-protobuf", "gzip", b"\x00\x01"), WalEntry("k2", "application/json", "", b"{}")]
    b = [WalEntry("k3", "application/json", "identity", b"x")]
    wal.write("0002-b", b)
    wal.write("0001-a", a)
    assert wal.batch_ids() == ["0001-a", "0002-b"]
    assert wal.read("0001-a") == a and wal.read("0002-b") == b
    wal.remove("0001-a")
    assert wal.batch_ids() == ["0002-b"]


def test_torn_and_corrupt_files(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    (tmp_path / ".0003-c.tmp").write_bytes(b"half a batch")  # crash before rename: never inserted
    wal.write("0004-d", [WalEntry("k", "application/json", "", b"{}")])
    path = tmp_path / "0004-d.wal"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert wal.read("0004-d") is None
    assert wal.read("missing") is None
    assert wal.discard_torn() == 1
    assert not (tmp_path / ".0003-c.tmp").exists()
    assert wal.batch_ids() == ["0004-d"]
