"""Request bodies of the workload's HTTP API, validated at the edge so no value can reach the engine unchecked.

Every numeric field has bounds: a value the engine cannot hold (a seed past torch's 64-bit range,
NaN, infinity) is answered 400 naming the field, never passed on to fail a step.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workload.faults import FaultKind

MAX_BLOCKS = 65_536  # a million tokens of KV cache: far more than this model needs, far less than a crash
MAX_SEED = 2**63  # torch.Generator.manual_seed takes a signed 64-bit seed; larger ones raise inside a step


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    # OpenAI clients send fields we do not use (top_p, user, ...); JSON's NaN and Infinity are refused
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1, le=2**31)  # the context check gives the precise limit
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=0, lt=MAX_SEED)
    n: int = Field(1, ge=1, le=1, description="one completion per request")
    ignore_eos: bool = False

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise ValueError("send exactly one prompt per request")
        return self

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class ConfigPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_num_seqs: int | None = Field(None, ge=1, le=1024)
    max_num_batched_tokens: int | None = Field(None, ge=16, le=65536)
    num_blocks: int | None = Field(None, ge=8, le=MAX_BLOCKS)


class ShedRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    fraction: float = Field(..., ge=0.0, le=1.0)


class RestartRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    drain_timeout_s: float = Field(10.0, ge=0.0, le=300.0)


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: FaultKind
    duration_s: float | None = Field(None, gt=0.0, le=86_400.0)
    delay_ms: float | None = Field(None, gt=0.0, le=60_000.0)
    rate: float | None = Field(None, gt=0.0, le=1.0)
    fraction: float | None = Field(None, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _params_fit_kind(self) -> FaultRequest:
        needs = {FaultKind.LATENCY: "delay_ms", FaultKind.ERRORS: "rate"}
        allowed = {FaultKind.LATENCY: {"delay_ms"}, FaultKind.ERRORS: {"rate"}, FaultKind.KV_PRESSURE: {"fraction"}}
        given = {k for k in ("delay_ms", "rate", "fraction") if getattr(self, k) is not None}
        if self.kind in needs and needs[self.kind] not in given:
            raise ValueError(f"fault {self.kind.value!r} needs {needs[self.kind]}")
        extra = given - allowed.get(self.kind, set())
        if extra:
            raise ValueError(f"fault {self.kind.value!r} takes no {', '.join(sorted(extra))}")
        return self

    def params(self) -> dict[str, float]:
        return {k: float(v) for k in ("delay_ms", "rate", "fraction") if (v := getattr(self, k)) is not None}
