"""Annotation templates: `{{ $labels.key }}`, `{{ $value }}` and `{{ $value | printf "%.2f" }}`.

Prometheus writes annotations as Go templates; we accept the three forms on-call actually uses and
substitute them ourselves. A template engine would let a rule file run code in the evaluator, and
an annotation is text for a human, not a program. Anything else between `{{ }}` is refused when
the rule file loads, so a typo shows in `vigil alerting check`, not in a page at 3 a.m.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)
# `$labels.gpu.uuid` (keys may hold dots here), or `$labels["gpu.uuid"]` and Go's `index $labels "gpu.uuid"`
_LABEL = re.compile(
    r'^(?:\$labels\.([A-Za-z_][A-Za-z0-9_.\-/]*)|\$labels\[\s*"([^"]*)"\s*\]|index\s+\$labels\s+"([^"]*)")$'
)
_VALUE = re.compile(r'^\$value(?:\s*\|\s*printf\s+"(%[-+ 0#]?\d*(?:\.\d+)?[fgeEdsx])")?$')


class TemplateError(ValueError):
    """A placeholder we do not know; the message names it and lists the ones we do."""


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and placeholders in turn (`("label", key)`, `("value", fmt)`)."""

    parts: tuple[tuple[str, str], ...]

    def render(self, labels: Mapping[str, str], value: float) -> str:
        out = []
        for kind, arg in self.parts:
            if kind == "text":
                out.append(arg)
            elif kind == "label":
                out.append(labels.get(arg, ""))
            else:
                out.append(_format(value, arg))
        return "".join(out)


def format_value(value: float) -> str:
    """`{{ $value }}` as Prometheus prints it: shortest round-trip text, `+Inf`, `NaN`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)).removesuffix(".0") if value == int(value) and abs(value) < 1e15 else repr(value)


def _format(value: float, fmt: str) -> str:
    if not fmt or not math.isfinite(value):  # printf of NaN or Inf as an integer would raise
        return format_value(value)
    if fmt[-1] in "dx":
        return fmt % int(value)
    if fmt[-1] == "s":
        return fmt % f"{value:g}"
    return fmt % value


@lru_cache(maxsize=1024)
def parse(text: str) -> Template:
    """Parse `text` once; a TemplateError names the first placeholder we cannot substitute."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > pos:
            parts.append(("text", text[pos : match.start()]))
        inner = match.group(1).strip()
        if label := _LABEL.match(inner):
            parts.append(("label", label.group(1) or label.group(2) or label.group(3) or ""))
        elif value := _VALUE.match(inner):
            parts.append(("value", value.group(1) or ""))
        else:
            raise TemplateError(
                f"unknown placeholder {match.group(0)!r}: use {{{{ $labels.KEY }}}}, {{{{ $value }}}} "
                f'or {{{{ $value | printf "%.2f" }}}}'
            )
        pos = match.end()
    if pos < len(text):
        parts.append(("text", text[pos:]))
    if "{{" in "".join(arg for kind, arg in parts if kind == "text"):
        raise TemplateError("an unclosed '{{': close it with '}}'")
    return Template(tuple(parts))


def render(text: str, labels: Mapping[str, str], value: float) -> str:
    """The annotation `text` for an alert with these labels and value (a missing label renders empty)."""
    return parse(text).render(labels, value)
