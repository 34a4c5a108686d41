"""Label matchers (`k=v`, `k!=v`, `k=~re`, `k!~re`), shared by routes, inhibit rules and silences.

Regular expressions are anchored (Python `re.fullmatch`), as Alertmanager anchors its own, and
their length is bounded so a silence from the API cannot hand the matcher a pathological pattern.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

OPS = ("=", "!=", "=~", "!~")
MAX_PATTERN_LENGTH = 1024
_TEXT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-/]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class MatcherError(ValueError):
    """A matcher that cannot be parsed or compiled; the message says what a matcher looks like."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, name: str, op: str, value: str) -> Matcher:
        if op not in OPS:
            raise MatcherError(f"matcher {name}{op}{value}: the operator is one of {', '.join(OPS)}")
        if not name:
            raise MatcherError("a matcher needs a label name")
        regex = None
        if op in ("=~", "!~"):
            if len(value) > MAX_PATTERN_LENGTH:
                raise MatcherError(f"matcher {name}{op}: the pattern is longer than {MAX_PATTERN_LENGTH} characters")
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise MatcherError(f"matcher {name}{op}{value!r}: not a regular expression ({exc})") from None
        return cls(name, op, value, regex)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """`severity="page"`, `team=~ml-.*`: quotes around the value are optional."""
        found = _TEXT.match(text)
        if not found:
            raise MatcherError(f"matcher {text!r}: expected NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX")
        name, op, value = found.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        return cls.of(name, op, value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        # A missing label reads as the empty string, as in Alertmanager.
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.name, self.op, self.value)

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
