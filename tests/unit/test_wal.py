from pathlib import Path

from collector.wal import WalEntry, WriteAheadLog


def test_written_batches_come_back_in_order(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    a = [WalEntry("k1", "application/x-protobuf", "gzip", b"\x00\x01"), WalEntry("k2", "application/json", "", b"{}")]
    wal.write("0002-b", [WalEntry("k3", "application/json", "identity", b"x")])
    wal.write("0001-a", a)
    assert [(batch, entries) for batch, entries in wal.pending()] == [
        ("0001-a", a),
        ("0002-b", [WalEntry("k3", "application/json", "identity", b"x")]),
    ]
    wal.remove("0001-a")
    assert [b for b, _ in wal.pending()] == ["0002-b"]


def test_torn_and_corrupt_files(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    (tmp_path / ".0003-c.tmp").write_bytes(b"half a batch")  # crash before rename: never inserted
    wal.write("0004-d", [WalEntry("k", "application/json", "", b"{}")])
    path = tmp_path / "0004-d.wal"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert list(wal.pending()) == [("0004-d", None)]
    assert not (tmp_path / ".0003-c.tmp").exists()
