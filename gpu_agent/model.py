"""What the backends hand to the exporter: one cycle's readings, the probe report, faults, load.

A `Snapshot` maps a catalogue `Metric` (the object, not its name: no lookup can miss) to its
readings of this cycle, each a value and the attributes of its series. Backends fill it; the OTel
instruments read it during the cycle's one collection. Nothing here touches NVML, the network or
the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from vigil.names import Metric

Attributes = Mapping[str, str]
Reading = tuple[float, Attributes]


class Snapshot(dict[Metric, list[Reading]]):
    """Readings of one cycle by catalogue metric."""

    def add(self, metric: Metric, value: float, attributes: Attributes) -> None:
        readings = self.get(metric)
        if readings is None:
            self[metric] = [(value, attributes)]
        else:
            readings.append((value, attributes))


class BackendUnavailable(Exception):
    """The backend cannot start (no driver, no library, no permission); the message says what to do."""


class Support(StrEnum):
    SUPPORTED = "supported"
    NOT_SUPPORTED = "not supported"
    NO_PERMISSION = "no permission"
    ERROR = "error"  # failed at probe for another reason; still sampled, errors logged on change


@dataclass(frozen=True)
class FieldProbe:
    field: str
    support: Support
    detail: str = ""
    cost_us: float | None = None  # the probe call's duration


@dataclass
class DeviceInfo:
    """One GPU or MIG instance as the probe found it."""

    key: str  # the UUID (MIG instances have their own)
    attributes: dict[str, str]
    fields: list[FieldProbe] = field(default_factory=list)
    mig_parent: str | None = None

    @property
    def supported(self) -> list[str]:
        return [f.field for f in self.fields if f.support in (Support.SUPPORTED, Support.ERROR)]

    @property
    def unsupported(self) -> list[FieldProbe]:
        return [f for f in self.fields if f.support in (Support.NOT_SUPPORTED, Support.NO_PERMISSION)]


@dataclass
class ProbeReport:
    backend: str  # nvml | simulated
    host_attributes: dict[str, str]
    devices: list[DeviceInfo]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "host": self.host_attributes,
            "devices": [
                {
                    "key": d.key,
                    "attributes": d.attributes,
                    "mig_parent": d.mig_parent,
                    "fields": {
                        f.field: {"support": str(f.support), "detail": f.detail, "cost_us": f.cost_us} for f in d.fields
                    },
                }
                for d in self.devices
            ],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Load:
    """The inference load the simulated GPUs follow, from the engines scraped this cycle."""

    running: float
    waiting: float
    kv_cache_usage: float  # 0..1


class FaultKind(StrEnum):
    XID = "xid"
    THERMAL = "thermal"
    ECC = "ecc"
    FALL_OFF_BUS = "fall-off-bus"


@dataclass(frozen=True)
class Fault:
    """A fault to inject into the simulated backend.

    `xid`: one XID event with `code`; `thermal`: throttling until cleared; `ecc`: `count` errors of
    `ecc` kind corrected/uncorrected (uncorrected also raises XID 48 and a pending row remap);
    `fall-off-bus`: XID 79, then the GPU stops answering until cleared.
    """

    kind: FaultKind
    gpu: int = 0
    code: int = 0
    count: int = 1
    ecc: str = "corrected"
    after_s: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """`KIND[:key=value,...]`, e.g. `xid:gpu=1,code=48`, `thermal:gpu=0,after=30`, `fall-off-bus:gpu=2`."""
        kind_text, _, rest = spec.partition(":")
        try:
            kind = FaultKind(kind_text.strip())
        except ValueError:
            kinds = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault kind {kind_text!r}; one of {kinds}") from None
        values: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r}: expected key=value")
            values[key.strip()] = value.strip()
        return cls.from_mapping(kind, values)

    @classmethod
    def from_mapping(cls, kind: FaultKind, values: Mapping[str, object]) -> Fault:
        allowed = {"gpu", "code", "count", "ecc", "after"}
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(
                f"unknown fault option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
            )
        try:
            fault = cls(
                kind=kind,
                gpu=int(values.get("gpu", 0)),  # type: ignore[call-overload]
                code=int(values.get("code", 79 if kind is FaultKind.FALL_OFF_BUS else 0)),  # type: ignore[call-overload]
                count=int(values.get("count", 1)),  # type: ignore[call-overload]
                ecc=str(values.get("ecc", "corrected")),
                after_s=float(values.get("after", 0.0)),  # type: ignore[arg-type]
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad fault option: {exc}") from None
        if kind is FaultKind.XID and fault.code <= 0:
            raise ValueError("an xid fault needs code=N (for example code=48)")
        if fault.ecc not in ("corrected", "uncorrected"):
            raise ValueError("ecc= must be corrected or uncorrected")
        if fault.gpu < 0 or fault.count < 1 or fault.after_s < 0:
            raise ValueError("gpu, count and after must not be negative (count at least 1)")
        return fault

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "gpu": self.gpu,
            "code": self.code,
            "count": self.count,
            "ecc": self.ecc,
            "after": self.after_s,
        }
