"""Label matchers (`k=v`, `k!=v`, `k=~re`, `k!~re`), shared by routes, inhibit rules and silences.

Regular expressions are RE2's, as Alertmanager's (Go's regexp is RE2), anchored as Alertmanager
anchors its own: matching takes time linear in the label's length whatever the pattern, so a silence
from the API cannot stall the notification pipeline with a catastrophic pattern such as `(a+)+$`.
Their length is bounded too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

OPS = ("=", "!=", "=~", "!~")
MAX_PATTERN_LENGTH = 1024
_TEXT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-/]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class MatcherError(ValueError):
    """A matcher that cannot be parsed or compiled; the message says what a matcher looks like."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the caller's error, raised; not a line on stderr


def compile_pattern(pattern: str) -> Any:
    """An RE2 pattern (RE2 syntax: no backreferences or lookaround); raises MatcherError with RE2's reason."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise MatcherError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise MatcherError(f"not an RE2 regular expression ({reason})") from None


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)  # a compiled RE2 pattern

    @classmethod
    def of(cls, name: str, op: str, value: str) -> Matcher:
        if op not in OPS:
            raise MatcherError(f"matcher {name}{op}{value}: the operator is one of {', '.join(OPS)}")
        if not name:
            raise MatcherError("a matcher needs a label name")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = compile_pattern(value)
            except MatcherError as exc:
                raise MatcherError(f"matcher {name}{op}{value[:80]!r}: {exc}") from None
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
