"""The workload's HTTP API: OpenAI-compatible completions, health, metrics and the control API."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from vigil.tokens import BearerTokens, TokenRefused
from workload.engine import Engine, Failed, Finished, Token
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
from workload.guards import BodyLimit, ClientGone, body_limit_for, disconnected, unless_gone
from workload.model import ByteTokenizer
from workload.schemas import CompletionRequest, ConfigPatch, FaultRequest, RestartRequest, ShedRequest

CLIENT_CLOSED = 499  # nginx's code for a client that went away; nobody reads it, the access log might


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.param, self.retry_after = status, kind, param, retry_after


# The one place the core's typed errors become HTTP answers.
_ERROR_STATUS: tuple[tuple[type[WorkloadError], int, str], ...] = (
    (Overloaded, 429, "rate_limit_error"),
    (EngineRestarting, 503, "server_error"),
    (EngineDead, 503, "server_error"),
    (EngineUnavailable, 503, "server_error"),
    (RestartFailed, 500, "server_error"),
)
_FAILURE_STATUS: dict[Failure, int] = {
    Failure.DOES_NOT_FIT: 400,
    Failure.INJECTED: 500,
    Failure.ENGINE_ERROR: 500,
    Failure.RESTARTED: 503,
}


def api_error(error: WorkloadError) -> ApiError:
    status, kind = next(((s, k) for cls, s, k in _ERROR_STATUS if isinstance(error, cls)), (500, "server_error"))
    retry_after = error.retry_after if isinstance(error, EngineUnavailable) else None
    return ApiError(status, str(error), kind=kind, retry_after=retry_after)


def failure_error(failed: Failed) -> ApiError:
    status = _FAILURE_STATUS[failed.cause]
    return ApiError(status, failed.message, kind="server_error" if status >= 500 else "invalid_request_error")


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(error.retry_after)))} if error.retry_after else None
    body = {"error": {"message": str(error), "type": error.kind, "param": error.param, "code": error.status}}
    return JSONResponse(body, status_code=error.status, headers=headers)


class Shedder:
    def __init__(self) -> None:
        self.fraction = 0.0
        self._rng = random.Random()

    def refuse(self) -> bool:
        return self.fraction > 0 and self._rng.random() < self.fraction


def create_app(
    engine: Engine, registry: CollectorRegistry, control_token: str | None, max_body_bytes: int | None = None
) -> FastAPI:
    """The workload's app. Bodies over `max_body_bytes` (default: what the model's context can use) get 413."""
    tokenizer = ByteTokenizer()
    model_name = engine.model.cfg.name
    max_len = engine.model.cfg.max_model_len
    shedder = Shedder()
    tokens = BearerTokens([control_token] if control_token else [])

    app = FastAPI(title="Vigil reference workload", version="0.1.0")
    app.state.engine = engine
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes or body_limit_for(max_len))

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(WorkloadError)
    async def _workload_error(_: Request, exc: WorkloadError) -> JSONResponse:
        return error_response(api_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return error_response(ApiError(400, f"{where or 'body'}: {first['msg']}", param=where or None))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(ApiError(exc.status_code, str(exc.detail), kind=kind))

    def require_control(request: Request) -> None:
        if not tokens.enabled:
            return  # no token configured: the CLI binds to loopback only
        try:
            tokens.verify(request.headers.get("authorization"))
        except TokenRefused:
            raise ApiError(
                401, "the control API needs Authorization: Bearer <VIGIL_CONTROL_TOKEN>", kind="authentication_error"
            ) from None

    control = Depends(require_control)

    # -- OpenAI-compatible -------------------------------------------------------------------

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": model_name, "object": "model", "created": 0, "owned_by": "vigil", "max_model_len": max_len}
            ],
        }

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        if body.model and body.model != model_name:
            raise ApiError(
                404,
                f"model {body.model!r} does not exist; this server serves {model_name!r}",
                kind="not_found_error",
                param="model",
            )
        prompt = tokenizer.encode(body.text)
        if len(prompt) + body.max_tokens > max_len:
            raise ApiError(
                400,
                f"prompt ({len(prompt)} tokens) plus max_tokens ({body.max_tokens}) exceeds the "
                f"model's context of {max_len} tokens",
                param="max_tokens",
            )
        if shedder.refuse():
            raise ApiError(429, "load shedding is on; retry later", kind="rate_limit_error", retry_after=1)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        seq = engine.new_sequence(
            prompt,
            body.max_tokens,
            temperature=body.temperature,
            ignore_eos=body.ignore_eos,
            seed=body.seed,
            sink=lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev),
        )
        engine.submit(seq)  # a refusal is a typed error, answered by the handler above
        request_id = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        # The body is read: the next ASGI message is the disconnect, if the client leaves
        gone = asyncio.ensure_future(disconnected(request.receive))
        try:
            first = await unless_gone(events.get(), gone)
            if isinstance(first, Failed):
                raise failure_error(first)
            if body.stream:
                gone.cancel()  # StreamingResponse watches for the disconnect itself
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                return StreamingResponse(
                    _stream(engine, seq, events, first, request_id, created, model_name, include_usage),
                    media_type="text/event-stream",
                )
            text, event = await unless_gone(_collect(events, first), gone)
        except ClientGone:
            engine.abort(seq)  # as vLLM does: nobody will read the answer, so stop computing it
            return Response(status_code=CLIENT_CLOSED)
        except asyncio.CancelledError:
            engine.abort(seq)
            raise
        finally:
            gone.cancel()
        if isinstance(event, Failed):
            raise failure_error(event)
        return JSONResponse(
            {
                "id": request_id,
                "object": "text_completion",
                "created": created,
                "model": model_name,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": event.reason.value}],
                "usage": _usage(event),
            }
        )

    # -- health and metrics --------------------------------------------------------------------

    @app.get("/health")
    async def health() -> JSONResponse:
        ok, body = engine.health()
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        # A vLLM whose engine died takes its API server down with it, and Prometheus marks the target
        # down (`up == 0`). The reference workload stays up for POST /control/restart, so it answers 503
        # while its engine is dead: scrapers see the target down; a person still reads the text.
        status = 503 if engine.dead else 200
        return Response(generate_latest(registry), status_code=status, media_type=CONTENT_TYPE_LATEST)

    # -- control -------------------------------------------------------------------------------

    @app.get("/control/config", dependencies=[control])
    async def get_config() -> dict[str, Any]:
        return {**engine.config.public(), "shed_fraction": shedder.fraction}

    @app.patch("/control/config", dependencies=[control])
    async def patch_config(patch: ConfigPatch) -> dict[str, Any]:
        if patch.max_num_batched_tokens is not None and patch.max_num_batched_tokens < max_len:
            raise ApiError(
                400,
                f"max_num_batched_tokens must be at least the model's context ({max_len}): "
                "prompts are prefilled in one step",
                param="max_num_batched_tokens",
            )
        engine.reconfigure(patch.max_num_seqs, patch.max_num_batched_tokens)
        restarted = None
        if patch.num_blocks is not None and patch.num_blocks != engine.config.num_blocks:
            restarted = await _restart(engine, 10.0, patch.num_blocks)  # a new KV pool
        return {**engine.config.public(), "shed_fraction": shedder.fraction, "restarted": restarted}

    @app.post("/control/shed", dependencies=[control])
    async def shed(body: ShedRequest) -> dict[str, Any]:
        shedder.fraction = body.fraction
        engine.metrics.shed_fraction.set(body.fraction)
        return {"shed_fraction": shedder.fraction}

    @app.post("/control/restart", dependencies=[control])
    async def restart(body: RestartRequest | None = None) -> dict[str, Any]:
        return await _restart(engine, (body or RestartRequest()).drain_timeout_s)

    @app.post("/control/fault", dependencies=[control])
    async def inject(body: FaultRequest) -> dict[str, Any]:
        fault = engine.set_fault(body.kind, body.params(), body.duration_s)
        return fault.public(engine.clock())

    @app.get("/control/fault", dependencies=[control])
    async def list_faults() -> dict[str, Any]:
        return {"faults": engine.faults(), "kinds": [k.value for k in FaultKind]}

    @app.delete("/control/fault", dependencies=[control])
    async def clear(kind: FaultKind | None = None) -> dict[str, Any]:
        engine.clear_faults(kind)
        return {"faults": engine.faults()}

    return app


async def _restart(engine: Engine, drain_timeout_s: float, num_blocks: int | None = None) -> dict[str, Any]:
    return await run_in_threadpool(engine.restart, drain_timeout_s, num_blocks)


async def _collect(events: asyncio.Queue[Any], first: Any) -> tuple[str, Finished | Failed]:
    """A non-streaming answer: the text of every token until the sequence finishes or fails."""
    text, event = "", first
    while not isinstance(event, (Finished, Failed)):
        text += event.text
        event = await events.get()
    return text, event


def _usage(done: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


async def _stream(
    engine: Engine,
    seq: Any,
    events: asyncio.Queue[Any],
    first: Any,
    request_id: str,
    created: int,
    model: str,
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """Server-sent events: one chunk per token, a last chunk with the finish reason, then [DONE]."""

    def chunk(text: str, finish: str | None, usage: dict[str, int] | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": request_id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }
        if usage is not None:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n".encode()

    event = first
    finished = False
    try:
        while True:
            if isinstance(event, Token):
                yield chunk(event.text, None)
            elif isinstance(event, Finished):
                finished = True
                yield chunk("", event.reason.value, _usage(event) if include_usage else None)
                break
            elif isinstance(event, Failed):
                finished = True
                failure = failure_error(event)
                error = {"message": str(failure), "type": failure.kind, "code": failure.status}
                yield f"data: {json.dumps({'error': error})}\n\n".encode()
                break
            event = await events.get()
        yield b"data: [DONE]\n\n"
    finally:
        if not finished:
            engine.abort(seq)  # the client went away mid-stream
