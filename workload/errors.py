"""What the workload core reports when it cannot serve: typed errors and failure causes.

The core (engine, scheduler) says *what* went wrong; `workload/api.py` alone decides which HTTP
status and OpenAI error type each becomes, so the core never chooses a status code.
"""

from __future__ import annotations

import enum


class WorkloadError(Exception):
    """Base of the errors the workload core raises to its callers."""


class EngineUnavailable(WorkloadError):
    """The engine cannot take a request now; `retry_after` is when trying again may help."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(EngineUnavailable):
    """The waiting queue is full."""


class EngineRestarting(EngineUnavailable):
    """A restart is in progress; new work is refused until it ends."""


class EngineDead(EngineUnavailable):
    """The engine loop stopped (the crash fault) and stays down until a restart through the control API."""


class RestartFailed(WorkloadError):
    """A restart could not build the new engine; the old one goes on serving."""


class Failure(enum.StrEnum):
    """Why the engine failed one request (carried by its `Failed` event)."""

    DOES_NOT_FIT = "does_not_fit"  # the request can never fit in the KV cache
    INJECTED = "injected"  # the errors fault chose it
    ENGINE_ERROR = "engine_error"  # it was in the batch of a step that raised, or the engine died
    RESTARTED = "restarted"  # a restart aborted it before it finished
