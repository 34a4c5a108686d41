"""Reading rule and SLO files: how a rule file is read, its error, and its durations (up to weeks).

The YAML-with-line-numbers machinery (YMap, YList, Section, file:line errors) is the kernel's
`vigil.yamlfile`, shared with the runbook files; it is re-exported here for the rule compiler.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from vigil.yamlfile import UNIT_S, Section, YList, YMap, format_duration
from vigil.yamlfile import Source as YamlSource
from vigil.yamlfile import parse_duration as _parse_duration

__all__ = ["RuleError", "Section", "Source", "YList", "YMap", "format_duration", "parse_duration"]

_EXAMPLE = "30s, 5m, 1h, 1d"


class RuleError(ValueError):
    """A rule or SLO file that cannot load: the message names file:line and what to do."""


def parse_duration(text: str) -> float:
    """`"30s"`, `"5m"`, `"1h"`, `"1d"` → seconds; a ValueError says how a duration is written."""
    return _parse_duration(text, UNIT_S, _EXAMPLE)


class Source(YamlSource):
    """One rule file: its documents, and errors that point into it."""

    error = RuleError
    duration_example = _EXAMPLE

    def __init__(self, path: Path, text: str | None = None) -> None:
        try:
            text = path.read_text() if text is None else text
        except OSError as exc:
            raise RuleError(f"{path}: cannot read: {exc.strerror or exc}") from None
        super().__init__(path, text)

    def documents(self) -> Iterator[YMap]:
        for node in self.nodes():
            data = self.build(node)
            if not isinstance(data, YMap):
                self.fail(node.start_mark.line + 1, "a rule file holds mappings (`groups:` or an SLO document)")
            yield data
