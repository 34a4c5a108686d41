"""vigil.tokens: bearer tokens held as digests, each offered token checked against every one."""

import pytest

from vigil.tokens import BearerTokens, TokenRefused, digest


def test_a_known_token_gives_its_digest_and_the_token_is_never_kept() -> None:
    tokens = BearerTokens(["s3cret", "other"])
    assert tokens.enabled
    assert "s3cret" not in repr(vars(tokens))
    assert tokens.verify("Bearer s3cret") == digest("s3cret")
    assert tokens.verify("bearer  other ") == digest("other")


@pytest.mark.parametrize(
    ("authorization", "why"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Bearer ", "missing bearer token"),
        ("Basic s3cret", "missing bearer token"),
        ("Bearer wrong", "bearer token not recognised"),
    ],
)
def test_anything_else_is_refused_saying_why(authorization: str | None, why: str) -> None:
    with pytest.raises(TokenRefused, match=why):
        BearerTokens(["s3cret"]).verify(authorization)


def test_no_tokens_means_none_is_accepted_and_the_caller_decides() -> None:
    tokens = BearerTokens([])
    assert not tokens.enabled
    with pytest.raises(TokenRefused):
        tokens.verify("Bearer anything")
