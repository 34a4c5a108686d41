"""The core's typed errors and failure causes, and the one place (workload/api.py) that maps them to HTTP."""

import pytest

from workload.api import api_error, failure_error
from workload.engine import Failed
from workload.errors import (
    EngineDead,
    EngineRestarting,
    EngineUnavailable,
    Failure,
    Overloaded,
    RestartFailed,
    WorkloadError,
)
from workload.faults import FaultKind


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (Overloaded("full", retry_after=1.0), 429, "rate_limit_error"),
        (EngineRestarting("restarting", retry_after=2.0), 503, "server_error"),
        (EngineDead("dead"), 503, "server_error"),
        (RestartFailed("no memory"), 500, "server_error"),
    ],
)
def test_each_engine_error_has_one_status(error: WorkloadError, status: int, kind: str) -> None:
    mapped = api_error(error)
    assert (mapped.status, mapped.kind, str(mapped)) == (status, kind, str(error))
    assert (mapped.retry_after is not None) == isinstance(error, EngineUnavailable)


def test_every_failure_cause_maps_to_a_status() -> None:
    statuses = {cause: failure_error(Failed("why", cause)).status for cause in Failure}
    assert statuses == {
        Failure.DOES_NOT_FIT: 400,
        Failure.INJECTED: 500,
        Failure.ENGINE_ERROR: 500,
        Failure.RESTARTED: 503,
    }
    assert failure_error(Failed("too big", Failure.DOES_NOT_FIT)).kind == "invalid_request_error"


def test_the_core_errors_carry_no_http_status() -> None:
    for cls in (Overloaded, EngineRestarting, EngineDead, RestartFailed):
        assert not hasattr(cls("x"), "status")


def test_fault_kinds_are_one_enum() -> None:
    assert [k.value for k in FaultKind] == ["latency", "errors", "stall", "kv_pressure", "crash"]
    with pytest.raises(ValueError):
        FaultKind("bogus")
