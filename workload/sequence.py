"""A request's token sequence and its lifecycle timestamps (what the latency metrics are made of)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(enum.StrEnum):
    STOP = "stop"
    LENGTH = "length"
    ABORT = "abort"
    ERROR = "error"


@dataclass
class Sequence:
    """One request. `computed` counts the tokens whose keys and values are in the KV cache.

    Tokens are `prompt + output`. Before a decode step `computed == len(tokens) - 1`: the last
    token is the step's input. A preempted sequence drops its cache (`computed = 0`) and is
    recomputed later by prefilling all its tokens again.
    """

    seq_id: int
    prompt: list[int]
    max_tokens: int
    temperature: float = 0.0
    ignore_eos: bool = False
    seed: int | None = None
    stop: tuple[str, ...] = ()
    arrival: float = 0.0
    output: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    computed: int = 0
    preemptions: int = 0
    aborted: bool = False  # the client went away; the loop finishes it at the next step
    finish_reason: FinishReason | None = None
    first_scheduled: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    finished_at: float | None = None
    text: str = ""
    sink: Callable[[Any], None] | None = field(default=None, repr=False)

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def num_tokens(self) -> int:
        return len(self.prompt) + len(self.output)

    @property
    def prefill_len(self) -> int:
        """Tokens a prefill of this sequence processes (all of them: recompute starts from zero)."""
        return self.num_tokens
