"""Reading runbook files: YAML with the line of every key, and errors that name `file:line`.

PyYAML's composer keeps each node's `start_mark`; plain dicts and lists are built from the nodes here
(scalars through the safe constructor, so no tag can build an object), each map remembering the line
of each key. The shape follows `alerting/source.py`; feature packages share no code, so it is repeated.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1024 * 1024  # a runbook is a page of steps; a larger file is a mistake


class RunbookFileError(ValueError):
    """A runbook file that cannot load: the message names file:line and what to do."""


class YMap(dict[str, Any]):
    line: int
    key_lines: dict[str, int]


class YList(list[Any]):
    line: int
    item_lines: list[int]


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_TYPE_NAMES = {
    str: "text",
    int: "a whole number",
    float: "a number",
    YMap: "a mapping",
    YList: "a list",
    bool: "true/false",
}


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit, e.g. 500ms, 30s, 5m, 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


class Source:
    """One runbook file: its single document, and errors that point into it."""

    def __init__(self, path: Path, text: str | None = None) -> None:
        self.path = path
        if text is None:
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise RunbookFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes: is it a runbook?")
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise RunbookFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
            except UnicodeDecodeError:
                raise RunbookFileError(f"{path}: not UTF-8 text") from None
        self.text = text
        self._constructor = SafeConstructor()

    def document(self) -> YMap:
        try:
            nodes = [n for n in yaml.compose_all(self.text, Loader=yaml.SafeLoader) if n is not None]
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else 1
            raise RunbookFileError(f"{self.path}:{line}: not valid YAML: {exc.problem}") from None
        if len(nodes) != 1:
            self.fail(nodes[1].start_mark.line + 1 if nodes else 1, "a runbook file holds exactly one runbook")
        data = self._build(nodes[0])
        if not isinstance(data, YMap):
            self.fail(nodes[0].start_mark.line + 1, "a runbook is a mapping: name, description, target, steps")
        return data

    def _build(self, node: Node) -> Any:
        if isinstance(node, MappingNode):
            out = YMap()
            out.line, out.key_lines = node.start_mark.line + 1, {}
            for key_node, value_node in node.value:
                key = self._build(key_node)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    self.fail(line, f"key {key!r} must be text")
                if key in out:
                    self.fail(line, f"{key!r} is given twice in one mapping: keep one")
                out[key] = self._build(value_node)
                out.key_lines[key] = line
            return out
        if isinstance(node, SequenceNode):
            items = YList(self._build(item) for item in node.value)
            items.line, items.item_lines = node.start_mark.line + 1, [i.start_mark.line + 1 for i in node.value]
            return items
        assert isinstance(node, ScalarNode)
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.fail(node.start_mark.line + 1, f"cannot read this value: {exc}")

    def fail(self, line: int, message: str) -> NoReturn:
        raise RunbookFileError(f"{self.path}:{line}: {message}")


class Section:
    """A mapping of a runbook file with its place (`steps[2].wait_for`) and typed access to its keys."""

    def __init__(self, source: Source, data: Any, where: str, line: int) -> None:
        self.source, self.where = source, where
        if not isinstance(data, YMap):
            source.fail(line, f"{where or 'the runbook'}: expected a mapping")
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
        return key in self.data and self.data[key] is not None

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        if not self.has(key):
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
            return parse_duration(value)
        except ValueError as exc:
            self.fail(key, str(exc))

    def section(self, key: str, required: bool = False) -> Section | None:
        if not self.has(key):
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


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
