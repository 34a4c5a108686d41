"""The workload's HTTP API: OpenAI-compatible completions, health, metrics and the control API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from workload.engine import FAULT_KINDS, Engine, EngineUnavailable, Failed, Finished, Token
from workload.model import ByteTokenizer


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


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(error.retry_after)))} if error.retry_after else None
    body = {"error": {"message": str(error), "type": error.kind, "param": error.param, "code": error.status}}
    return JSONResponse(body, status_code=error.status, headers=headers)


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (top_p, user, ...)

    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None
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


MAX_BLOCKS = 65_536  # a million tokens of KV cache: far more than this model needs, far less than a crash


class ConfigPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_num_seqs: int | None = Field(None, ge=1, le=1024)
    max_num_batched_tokens: int | None = Field(None, ge=16, le=65536)
    num_blocks: int | None = Field(None, ge=8, le=MAX_BLOCKS)


class ShedRequest(BaseModel):
    fraction: float = Field(..., ge=0.0, le=1.0)


class RestartRequest(BaseModel):
    drain_timeout_s: float = Field(10.0, ge=0.0, le=300.0)


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["latency", "errors", "stall", "kv_pressure", "crash"]
    duration_s: float | None = Field(None, gt=0.0, le=86_400.0)
    delay_ms: float | None = Field(None, gt=0.0, le=60_000.0)
    rate: float | None = Field(None, gt=0.0, le=1.0)
    fraction: float | None = Field(None, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _params_fit_kind(self) -> FaultRequest:
        needs = {"latency": "delay_ms", "errors": "rate"}
        allowed = {"latency": {"delay_ms"}, "errors": {"rate"}, "kv_pressure": {"fraction"}}
        given = {k for k in ("delay_ms", "rate", "fraction") if getattr(self, k) is not None}
        if self.kind in needs and needs[self.kind] not in given:
            raise ValueError(f"fault {self.kind!r} needs {needs[self.kind]}")
        extra = given - allowed.get(self.kind, set())
        if extra:
            raise ValueError(f"fault {self.kind!r} takes no {', '.join(sorted(extra))}")
        return self

    def params(self) -> dict[str, float]:
        return {k: float(v) for k in ("delay_ms", "rate", "fraction") if (v := getattr(self, k)) is not None}


class Shedder:
    def __init__(self) -> None:
        self.fraction = 0.0
        self._rng = random.Random()

    def refuse(self) -> bool:
        return self.fraction > 0 and self._rng.random() < self.fraction


def create_app(engine: Engine, registry: CollectorRegistry, control_token: str | None) -> FastAPI:
    tokenizer = ByteTokenizer()
    model_name = engine.model.cfg.name
    max_len = engine.model.cfg.max_model_len
    shedder = Shedder()
    token_digest = hashlib.sha256(control_token.encode()).digest() if control_token else None

    app = FastAPI(title="Vigil reference workload", version="0.1.0")
    app.state.engine = engine

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return error_response(ApiError(400, f"{where or 'body'}: {first['msg']}", param=where or None))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(ApiError(exc.status_code, str(exc.detail), kind="not_found_error"))

    def require_control(request: Request) -> None:
        if token_digest is None:
            return  # no token configured: the CLI binds to loopback only
        scheme, _, offered = request.headers.get("authorization", "").partition(" ")
        digest = hashlib.sha256(offered.strip().encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest, token_digest):
            raise ApiError(
                401, "the control API needs Authorization: Bearer <VIGIL_CONTROL_TOKEN>", kind="authentication_error"
            )

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
        try:
            engine.submit(seq)
        except EngineUnavailable as exc:
            kind = "rate_limit_error" if exc.status == 429 else "server_error"
            raise ApiError(exc.status, str(exc), kind=kind, retry_after=exc.retry_after) from None
        request_id = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        try:
            first = await events.get()
        except asyncio.CancelledError:
            engine.abort(seq)
            raise
        if isinstance(first, Failed):
            raise ApiError(first.status, first.message, kind=_error_kind(first.status))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _stream(engine, seq, events, first, request_id, created, model_name, include_usage),
                media_type="text/event-stream",
            )
        text, event = "", first
        try:
            while not isinstance(event, (Finished, Failed)):
                text += event.text
                event = await events.get()
        except asyncio.CancelledError:
            engine.abort(seq)
            raise
        if isinstance(event, Failed):
            raise ApiError(event.status, event.message, kind=_error_kind(event.status))
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
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

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
        return {"faults": engine.faults(), "kinds": list(FAULT_KINDS)}

    @app.delete("/control/fault", dependencies=[control])
    async def clear(kind: str | None = None) -> dict[str, Any]:
        if kind is not None and kind not in FAULT_KINDS:
            raise ApiError(400, f"unknown fault kind {kind!r}; one of {', '.join(FAULT_KINDS)}", param="kind")
        engine.clear_faults(kind)
        return {"faults": engine.faults()}

    return app


def _error_kind(status: int) -> str:
    return "server_error" if status >= 500 else "invalid_request_error"


async def _restart(engine: Engine, drain_timeout_s: float, num_blocks: int | None = None) -> dict[str, Any]:
    try:
        return await run_in_threadpool(engine.restart, drain_timeout_s, num_blocks)
    except EngineUnavailable as exc:
        raise ApiError(exc.status, str(exc), kind="server_error") from None


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
                error = {"message": event.message, "type": "server_error", "code": event.status}
                yield f"data: {json.dumps({'error': error})}\n\n".encode()
                break
            event = await events.get()
        yield b"data: [DONE]\n\n"
    finally:
        if not finished:
            engine.abort(seq)  # the client went away mid-stream
