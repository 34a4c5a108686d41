"""What a runbook is once loaded: parameters, a target kind and steps. Pure data, no I/O."""

from __future__ import annotations

import enum
import math
import operator
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.store.window import Matcher, WindowQuery, WindowValue

OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class TargetKind(enum.StrEnum):
    WORKLOAD = "workload"  # the reference workload of the run plan: target is its llm.endpoint
    GPU = "gpu"  # target is a gpu.uuid
    NODE = "node"  # target is a host.name (a Kubernetes node name)


# The label of an alert that names a runbook's target, by target kind.
TARGET_LABEL = {TargetKind.WORKLOAD: "llm.endpoint", TargetKind.GPU: "gpu.uuid", TargetKind.NODE: "host.name"}

ArgSpec = dict[str, tuple[type, bool]]  # argument → (type, required)

# Every action by target kind, with its arguments: what a file may name, checked at load.
ACTIONS: dict[TargetKind, dict[str, ArgSpec]] = {
    TargetKind.WORKLOAD: {
        "set_config": {
            "max_num_seqs": (int, False),
            "max_num_batched_tokens": (int, False),
            "num_blocks": (int, False),
        },
        "shed": {"fraction": (float, True)},
        "restart": {"drain_timeout_s": (float, False)},
        "clear_faults": {"kind": (str, False)},
    },
    TargetKind.GPU: {"clear_fault": {}, "reset": {}, "power_cap": {"watts": (float, True)}},
    TargetKind.NODE: {"cordon": {}, "uncordon": {}, "drain": {"grace_period_s": (int, False)}},
}

PARAM_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


class StepKind(enum.StrEnum):
    ACTION = "action"
    CHECK = "check"
    WAIT_FOR = "wait_for"
    APPROVE = "approve"
    NOTE = "note"


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # a key of PARAM_TYPES
    default: Any
    description: str = ""
    min: float | None = None
    max: float | None = None
    label: str = ""  # the alert label that fills it in a run an alert starts; "" means the label of its own name

    @property
    def alert_label(self) -> str:
        return self.label or self.name

    def coerce(self, value: Any) -> Any:
        """The value as this parameter's type; ValueError says why not."""
        kind = PARAM_TYPES[self.type]
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(f"parameter {self.name}: expected true or false, got {value!r}")
        if isinstance(value, bool):
            raise ValueError(f"parameter {self.name}: expected {self.type}, got {value!r}")
        try:
            out = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"parameter {self.name}: expected {self.type}, got {value!r}") from None
        if isinstance(out, float) and not math.isfinite(out):
            raise ValueError(f"parameter {self.name}: must be a finite number")
        if kind is int and isinstance(value, float) and value != out:
            raise ValueError(f"parameter {self.name}: expected a whole number, got {value!r}")
        if kind in (int, float):
            if self.min is not None and out < self.min:
                raise ValueError(f"parameter {self.name}: {out} is below its minimum {self.min:g}")
            if self.max is not None and out > self.max:
                raise ValueError(f"parameter {self.name}: {out} is above its maximum {self.max:g}")
        if kind is str and len(out) > 1024:
            raise ValueError(f"parameter {self.name}: longer than 1024 characters")
        return out


@dataclass(frozen=True)
class CheckExpr:
    """A windowed read of one metric (optionally divided by another), compared with a value.

    It passes when the read has at least one series and every series satisfies `op value`; no data
    fails it (a verification on no fresh data proves nothing), unless `empty_passes`.
    Matcher values may hold `${param}` and `${target}`, filled in when the run starts.
    """

    metric: str
    kind: str  # the window table kind: gauge, sum, histogram
    function: str
    window_s: int
    matchers: tuple[Matcher, ...]
    by: tuple[str, ...]
    op: str
    value: float
    ratio_to: tuple[str, str, str] | None = None  # (metric, kind, function) over the same window and matchers
    ratio_matchers: tuple[Matcher, ...] = ()
    quantile: float | None = None
    le: float | None = None
    empty_passes: bool = False

    def bound(self, values: Mapping[str, str]) -> CheckExpr:
        """This check with `${name}` in matcher values filled in."""
        fill = lambda ms: tuple(Matcher(m.key, m.op, fill_text(m.value, values)) for m in ms)  # noqa: E731
        return CheckExpr(
            **{**self.__dict__, "matchers": fill(self.matchers), "ratio_matchers": fill(self.ratio_matchers)}
        )

    def queries(self) -> tuple[WindowQuery, WindowQuery | None]:
        main = WindowQuery(
            self.metric,
            self.kind,
            self.function,
            self.window_s,
            self.matchers,
            self.by,
            self.quantile,
            self.le,  # type: ignore[arg-type]
        )
        if self.ratio_to is None:
            return main, None
        metric, kind, function = self.ratio_to
        return main, WindowQuery(metric, kind, function, self.window_s, self.ratio_matchers, self.by)  # type: ignore[arg-type]

    def judge(
        self, main: Sequence[WindowValue], ratio: Sequence[WindowValue] | None
    ) -> tuple[bool, list[dict[str, Any]]]:
        """(passed, the values read): every series must satisfy the comparison."""
        values = [(dict(v.labels), v.value) for v in main]
        if ratio is not None:
            totals = {tuple(sorted(v.labels.items())): v.value for v in ratio}
            values = [
                (labels, value / totals[key])
                for labels, value in values
                if (key := tuple(sorted(labels.items()))) in totals and totals[key] and math.isfinite(totals[key])
            ]
        shown = [{"labels": labels, "value": value} for labels, value in values]
        if not values:
            return self.empty_passes, shown
        return all(OPS[self.op](value, self.value) for _, value in values), shown

    def describe(self) -> str:
        where = ", ".join(f"{m.key}{m.op}{m.value!r}" for m in self.matchers)
        read = f"{self.function}({self.metric}{{{where}}}[{self.window_s}s])"
        if self.ratio_to:
            read += f" / {self.ratio_to[2]}({self.ratio_to[0]})"
        return f"{read} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Step:
    index: int
    name: str
    kind: StepKind
    timeout_s: float
    retries: int = 0
    retry_delay_s: float = 1.0
    action: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)  # may hold "${param}" strings until bound
    check: CheckExpr | None = None
    every_s: float = 2.0  # wait_for: between reads
    text: str = ""  # note: the text; approve: what the approver is asked

    def summary(self, values: Mapping[str, str] | None = None) -> str:
        fill = (lambda s: fill_text(s, values)) if values is not None else (lambda s: s)
        if self.kind is StepKind.ACTION:
            args = ", ".join(f"{k}={fill(str(v))}" for k, v in self.args.items())
            return f"{self.action}({args})"
        if self.kind in (StepKind.CHECK, StepKind.WAIT_FOR):
            assert self.check is not None
            expr = self.check.bound(values).describe() if values is not None else self.check.describe()
            return f"until {expr}" if self.kind is StepKind.WAIT_FOR else expr
        return fill(self.text)


@dataclass(frozen=True)
class Runbook:
    name: str
    description: str
    target: TargetKind
    params: tuple[Param, ...]
    steps: tuple[Step, ...]
    file: str

    def bind_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Given parameters over the defaults, each coerced to its type; ValueError names a bad one."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}: {self.name} takes {', '.join(known) or 'none'}"
            )
        return {name: p.coerce(given.get(name, p.default)) for name, p in known.items()}

    def params_from_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """What an alert's labels give: each parameter whose label (its `label`, else its name) the alert
        carries, as the label's text; `bind_params` then checks them as it checks a person's."""
        return {p.name: labels[p.alert_label] for p in self.params if p.alert_label in labels}


def fill_text(text: str, values: Mapping[str, Any] | None) -> str:
    """`${name}` → the value; an unknown name is left as written (the loader refuses those)."""
    if values is None:
        return text
    return string.Template(text).safe_substitute({k: str(v) for k, v in values.items()})


def placeholders(text: str) -> set[str]:
    """The `${name}` (and `$name`) placeholders in a text."""
    return {
        m.group("named") or m.group("braced")
        for m in string.Template.pattern.finditer(text)
        if m.group("named") or m.group("braced")
    }


def bind_args(step: Step, values: Mapping[str, Any], spec: ArgSpec) -> dict[str, Any]:
    """An action's arguments with placeholders filled and each coerced to its type (ValueError if not)."""
    out: dict[str, Any] = {}
    for key, raw in step.args.items():
        kind = spec[key][0]
        value = raw
        if isinstance(raw, str):
            names = placeholders(raw)
            if raw.strip() in {f"${{{n}}}" for n in names} and len(names) == 1:
                value = values[names.pop()]  # a whole "${x}" keeps the parameter's own type
            else:
                value = fill_text(raw, values)
        try:
            out[key] = kind(value) if not isinstance(value, bool) or kind is bool else None
        except (TypeError, ValueError):
            out[key] = None
        if out[key] is None:
            raise ValueError(f"{step.name}: argument {key}={value!r} is not {kind.__name__}")
    return out
