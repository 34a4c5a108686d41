"""Faults for drills: the kinds the control API can inject, and one injected fault."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class FaultKind(enum.StrEnum):
    LATENCY = "latency"  # each decode step sleeps delay_ms
    ERRORS = "errors"  # a share (rate) of new requests fail with an engine error
    STALL = "stall"  # the scheduler makes no progress; HTTP still answers
    KV_PRESSURE = "kv_pressure"  # a fraction of the KV blocks is withheld: preemption storms
    CRASH = "crash"  # the engine loop dies and stays down until POST /control/restart


@dataclass
class Fault:
    kind: FaultKind
    params: dict[str, float]
    until: float | None  # monotonic deadline; None until cleared

    def public(self, now: float) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            **self.params,
            "remaining_s": None if self.until is None else round(max(0.0, self.until - now), 3),
        }
