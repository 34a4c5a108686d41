"""Reading hand-written YAML files (rules, SLOs, runbooks): the line of every value, durations, and errors
that name `file:line`.

PyYAML's composer keeps each node's `start_mark`; we build plain dicts and lists from the nodes ourselves
(through the safe constructor for scalars, so no tag can build an object) and keep, for every map, the line
of each key, so an error can say `rules.yaml:17: ...` and what to do. Each feature subclasses `Source` to
say how its files are read, which error it raises, which duration units it allows and what a document is.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


class YMap(dict[str, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int
    key_lines: dict[str, int]


class YList(list[Any]):
    line: int
    item_lines: list[int]


UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([a-z]+)$")


def parse_duration(text: str, units: Collection[str] = tuple(UNIT_S), example: str = "30s, 5m, 1h, 1d") -> float:
    """`"30s"`, `"5m"`, `"1h"` → seconds, in the `units` the caller allows; a ValueError shows `example`."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or match.group(2) not in units:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit, e.g. {example}")
    return float(match.group(1)) * UNIT_S[match.group(2)]


def format_duration(seconds: float) -> str:
    for unit in ("d", "h", "m", "s"):
        if seconds >= UNIT_S[unit] and seconds % UNIT_S[unit] == 0:
            return f"{int(seconds // UNIT_S[unit])}{unit}"
    return f"{seconds:g}s"


class Source:
    """One file's text, its YAML nodes built into YMap/YList, and errors that point into it."""

    error: ClassVar[type[ValueError]] = ValueError
    duration_units: ClassVar[Collection[str]] = tuple(UNIT_S)
    duration_example: ClassVar[str] = "30s, 5m, 1h, 1d"
    whole: ClassVar[str] = "the file"  # how an error names the top-level mapping, which has no key

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text
        self._constructor = SafeConstructor()

    def nodes(self) -> list[Node]:
        """The file's non-empty documents, composed but not yet built."""
        try:
            return [n for n in yaml.compose_all(self.text, Loader=yaml.SafeLoader) if n is not None]
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else 1
            raise self.error(f"{self.path}:{line}: not valid YAML: {exc.problem}") from None

    def build(self, node: Node) -> Any:
        if isinstance(node, MappingNode):
            out = YMap()
            out.line, out.key_lines = node.start_mark.line + 1, {}
            for key_node, value_node in node.value:
                key = self.build(key_node)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    self.fail(line, f"key {key!r} must be text")
                if key in out:
                    self.fail(line, f"{key!r} is given twice in one mapping: keep one")
                out[key] = self.build(value_node)
                out.key_lines[key] = line
            return out
        if isinstance(node, SequenceNode):
            items = YList(self.build(item) for item in node.value)
            items.line, items.item_lines = node.start_mark.line + 1, [i.start_mark.line + 1 for i in node.value]
            return items
        assert isinstance(node, ScalarNode)
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.fail(node.start_mark.line + 1, f"cannot read this value: {exc}")

    def parse_duration(self, text: str) -> float:
        return parse_duration(text, self.duration_units, self.duration_example)

    def fail(self, line: int, message: str) -> NoReturn:
        raise self.error(f"{self.path}:{line}: {message}")


class Section:
    """A mapping of a file with its place (`groups[0].rules[2]`, `steps[2].wait_for`) and typed access to its
    keys; every error names the file, the line and the place."""

    def __init__(self, source: Source, data: Any, where: str, line: int) -> None:
        self.source, self.where = source, where
        if not isinstance(data, YMap):
            source.fail(line, f"{where or source.whole}: expected a mapping")
        self.data = data

    def line(self, key: str | None = None) -> int:
        return self.data.key_lines.get(key, self.data.line) if key else self.data.line

    def fail(self, key: str | None, message: str) -> NoReturn:
        where = _join(self.where, key) if key else self.where
        self.source.fail(self.line(key), f"{where}: {message}" if where else message)

    def allow(self, *keys: str) -> None:
        for key in self.data:
            if key not in keys:
                self.fail(key, f"unknown key {key!r}: expected one of {', '.join(keys)}")

    def has(self, key: str) -> bool:
        """The key is written, even as `key:` with nothing (null) after it."""
        return key in self.data

    def given(self, key: str) -> bool:
        """The key is written with a value: what `get` reads; a null counts as not given."""
        return key in self.data and self.data[key] is not None

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if not self.given(key):
            if required:
                self.fail(None, f"{key!r} is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.fail(key, f"expected {names}, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None, required: bool = False) -> Any:
        return self.get(key, str, default, required)

    def duration(self, key: str, default: float | None = None, required: bool = False) -> Any:
        value = self.get(key, (str, int, float), None, required)
        if value is None:
            return default
        if isinstance(value, (int, float)):
            self.fail(key, f"{value!r} needs a unit, e.g. {value}s or {value}m")
        try:
            return self.source.parse_duration(value)
        except ValueError as exc:
            self.fail(key, str(exc))

    def labels(self, key: str) -> dict[str, str]:
        value = self.get(key, YMap, YMap())
        out = {}
        for k, v in value.items():
            if not isinstance(v, (str, int, float)) or isinstance(v, bool):
                self.fail(key, f"label {k!r}: expected text, got {v!r}")
            out[k] = str(v)
        return out

    def section(self, key: str, required: bool = False) -> Section | None:
        if not self.given(key):
            if required:
                self.fail(None, f"{key!r} is required")
            return None
        return Section(self.source, self.data[key], _join(self.where, key), self.line(key))

    def sections(self, key: str, required: bool = False) -> list[Section]:
        items = self.get(key, YList, YList(), required)
        return [
            Section(self.source, item, f"{_join(self.where, key)}[{i}]", items.item_lines[i])
            for i, item in enumerate(items)
        ]


_TYPE_NAMES = {
    str: "text",
    int: "a whole number",
    float: "a number",
    YMap: "a mapping",
    YList: "a list",
    bool: "true/false",
}


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
