"""collector.service: bearer tokens held as digests, each giving its own idempotency-key scope."""

import pytest

from collector.errors import Unauthorized
from collector.service import TokenCheck


def test_tokens_are_held_as_digests_and_checked() -> None:
    check = TokenCheck(["s3cret", "other"])
    assert check.enabled
    assert "s3cret" not in repr(vars(check))
    scope = check.check("Bearer s3cret")
    assert scope and "s3cret" not in scope
    assert check.check("bearer  s3cret ") == scope, "scheme case and spaces do not change the scope"
    assert check.check("Bearer other") not in ("", scope), "each token keys its own idempotency scope"
    for bad in (None, "", "Bearer", "Basic s3cret", "Bearer wrong"):
        with pytest.raises(Unauthorized):
            check.check(bad)


def test_no_tokens_means_open_ingest_in_one_shared_scope() -> None:
    check = TokenCheck([])
    assert not check.enabled
    assert check.check(None) == "" and check.check("Bearer anything") == ""
