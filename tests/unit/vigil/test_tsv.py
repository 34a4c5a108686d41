from vigil import tsv


def test_special_characters_are_escaped_as_clickhouse_does() -> None:
    # expected bytes taken from chdb: SELECT 'a\tb\nc\\d\0e\rf''g\bh\fi\x01j' FORMAT TabSeparated
    assert tsv.field("a\tb\nc\\d\0e\rf'g\bh\fi\x01j") == "a\\tb\\nc\\\\d\\0e\\rf\\'g\\bh\\fi\x01j"


def test_a_row_never_splits() -> None:
    line = tsv.row(["x\ny", None, 3, b"\x00\t", "plain"])
    assert "\n" not in line and "\0" not in line
    assert line.split("\t") == ["x\\ny", "\\N", "3", "\\0\\t", "plain"]
