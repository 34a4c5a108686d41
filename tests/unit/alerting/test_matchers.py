"""alerting.matchers: label matchers as Alertmanager's, with RE2 regular expressions."""

import pytest

from alerting.matchers import Matcher, MatcherError


def test_regex_matchers_are_re2_linear_whatever_the_pattern() -> None:
    # `(a+)+$` on "aaa…b" takes exponential time in a backtracking engine; RE2 answers at once
    m = Matcher.parse("host=~(a+)+$")
    assert not m.matches({"host": "a" * 50_000 + "b"})
    assert m.matches({"host": "aaa"})


def test_patterns_re2_cannot_run_are_refused_with_its_reason() -> None:
    with pytest.raises(MatcherError, match="not an RE2 regular expression"):
        Matcher.parse("host=~(?<=a)b")  # lookbehind: RE2 has none, as Alertmanager's Go regexp
