"""Request bodies: every numeric field is bounded at the API, so no value can fail an engine step."""

import pytest
import torch
from pydantic import ValidationError

from workload.schemas import MAX_SEED, CompletionRequest, FaultRequest, RestartRequest, ShedRequest


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"seed": 2**64}, "seed"),
        ({"seed": MAX_SEED}, "seed"),
        ({"seed": -1}, "seed"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"max_tokens": 10**30}, "max_tokens"),
    ],
)
def test_out_of_range_completion_fields_are_refused(fields: dict, where: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CompletionRequest(prompt="hi", **fields)
    assert refused.value.errors()[0]["loc"] == (where,)


def test_every_accepted_seed_is_one_torch_takes() -> None:
    for seed in (0, MAX_SEED - 1):
        assert CompletionRequest(prompt="hi", seed=seed).seed == seed
        torch.Generator().manual_seed(seed)
    with pytest.raises((RuntimeError, ValueError)):
        torch.Generator().manual_seed(2**64)  # what the engine was handed before the bound


@pytest.mark.parametrize(
    "make",
    [
        lambda: ShedRequest(fraction=float("nan")),
        lambda: RestartRequest(drain_timeout_s=float("inf")),
        lambda: FaultRequest(kind="latency", delay_ms=float("nan")),
        lambda: FaultRequest(kind="latency", delay_ms=10, duration_s=float("inf")),
        lambda: FaultRequest(kind="bogus"),
    ],
)
def test_control_bodies_refuse_nan_infinity_and_unknown_kinds(make) -> None:
    with pytest.raises(ValidationError):
        make()
