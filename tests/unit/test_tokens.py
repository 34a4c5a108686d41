import pytest

from collector.errors import Unauthorized
from collector.service import TokenCheck


def test_tokens_are_held_as_digests_and_checked() -> None:
    check = TokenCheck(["s3cret", "other"])
    assert check.enabled
    assert "s3cret" not in repr(vars(check))
    check.check("Bearer s3cret")
    check.check("bearer other")
    for bad in (None, "", "Bearer", "Basic s3cret", "Bearer wrong"):
        with pytest.raises(Unauthorized):
            check.check(bad)


def test_no_tokens_means_open_ingest() -> None:
    TokenCheck([]).check(None)
