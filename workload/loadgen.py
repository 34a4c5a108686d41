"""`vigil loadgen`: drive an OpenAI-compatible completions server and report what vLLM's serving
benchmark reports (throughput, goodput, TTFT, TPOT, ITL and end-to-end latency percentiles).

Requests stream (`stream: true`), so the time of every token is seen. Arrivals are Poisson at
`--rate`, or a fixed `--concurrency` of clients each sending its next request when the last ends.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy


@dataclass
class Result:
    ok: bool
    started: float
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft: float = 0.0
    latency: float = 0.0
    itls: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first (vLLM's definition)."""
        if self.output_tokens < 2:
            return None
        return (self.latency - self.ttft) / (self.output_tokens - 1)


@dataclass
class LoadConfig:
    url: str
    duration_s: float
    rate: float | None = None
    concurrency: int | None = None
    prompt_len: int = 32
    output_len: int = 32
    slo: dict[str, float] = field(default_factory=dict)  # ttft_ms, tpot_ms, e2e_ms
    temperature: float = 0.0
    seed: int = 0
    model: str | None = None
    timeout_s: float = 120.0


def make_prompt(rng: random.Random, tokens: int) -> str:
    """A prompt of `tokens` tokens for a byte-level tokenizer with a start token (one byte each)."""
    return "".join(rng.choice(string.ascii_lowercase + " ") for _ in range(max(0, tokens - 1)))


async def one_request(client: httpx.AsyncClient, cfg: LoadConfig, prompt: str) -> Result:
    payload: dict[str, Any] = {
        "prompt": prompt,
        "max_tokens": cfg.output_len,
        "temperature": cfg.temperature,
        "stream": True,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    if cfg.model:
        payload["model"] = cfg.model
    started = time.perf_counter()
    result = Result(ok=False, started=started)
    last = started
    try:
        async with client.stream("POST", f"{cfg.url}/v1/completions", json=payload) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                result.error = f"HTTP {response.status_code}: {_message(body)}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    result.error = chunk["error"].get("message", "stream error")
                    return result
                now = time.perf_counter()
                if chunk["choices"] and chunk["choices"][0]["finish_reason"] is None:
                    if result.output_tokens == 0:
                        result.ttft = now - started
                    else:
                        result.itls.append(now - last)
                    result.output_tokens += 1
                    last = now
                usage = chunk.get("usage")
                if usage:
                    result.prompt_tokens = usage["prompt_tokens"]
                    result.output_tokens = usage["completion_tokens"]
    except httpx.HTTPError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    result.latency = time.perf_counter() - started
    result.ok = True
    return result


def _message(body: str) -> str:
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body[:200]


async def run(cfg: LoadConfig, progress: Any = None) -> tuple[list[Result], float]:
    """Send load for `duration_s`, wait for what is in flight, return the results and the elapsed time."""
    rng = random.Random(cfg.seed)
    results: list[Result] = []
    limits = httpx.Limits(max_connections=max(cfg.concurrency or 0, 256))
    async with httpx.AsyncClient(timeout=cfg.timeout_s, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + cfg.duration_s

        async def send() -> None:
            result = await one_request(client, cfg, make_prompt(rng, cfg.prompt_len))
            results.append(result)
            if progress:
                progress(result)

        if cfg.rate:
            tasks = []
            while True:
                await asyncio.sleep(rng.expovariate(cfg.rate))
                if time.perf_counter() >= deadline:
                    break
                tasks.append(asyncio.create_task(send()))
            await asyncio.gather(*tasks)
        else:

            async def client_loop() -> None:
                while time.perf_counter() < deadline:
                    await send()

            await asyncio.gather(*(client_loop() for _ in range(cfg.concurrency or 1)))
        return results, time.perf_counter() - started


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p99": 0.0}
    ms = numpy.asarray(values) * 1000
    return {"mean": float(ms.mean()), "median": float(numpy.median(ms)), "p99": float(numpy.percentile(ms, 99))}


def report(cfg: LoadConfig, results: list[Result], elapsed: float) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    tpots = [t for r in ok if (t := r.tpot) is not None]

    def meets_slo(r: Result) -> bool:
        checks = {"ttft_ms": r.ttft, "tpot_ms": r.tpot or 0.0, "e2e_ms": r.latency}
        return all(checks[k] * 1000 <= v for k, v in cfg.slo.items())

    input_tokens = sum(r.prompt_tokens for r in ok)
    output_tokens = sum(r.output_tokens for r in ok)
    errors: dict[str, int] = {}
    for r in failed:
        errors[r.error] = errors.get(r.error, 0) + 1
    return {
        "successful_requests": len(ok),
        "failed_requests": len(failed),
        "errors": errors,
        "duration_s": elapsed,
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "request_throughput": len(ok) / elapsed if elapsed else 0.0,
        "output_throughput": output_tokens / elapsed if elapsed else 0.0,
        "total_token_throughput": (input_tokens + output_tokens) / elapsed if elapsed else 0.0,
        "request_goodput": sum(meets_slo(r) for r in ok) / elapsed if (elapsed and cfg.slo) else None,
        "slo": cfg.slo,
        "ttft_ms": _stats([r.ttft for r in ok]),
        "tpot_ms": _stats(tpots),
        "itl_ms": _stats([i for r in ok for i in r.itls]),
        "e2el_ms": _stats([r.latency for r in ok]),
    }


def format_report(data: dict[str, Any]) -> str:
    """The layout of vLLM's benchmark_serving summary."""
    lines = ["{s:{c}^50}".format(s=" Serving Benchmark Result ", c="=")]

    def row(label: str, value: Any, fmt: str = "") -> None:
        lines.append(f"{label:<40}{value:{fmt}}")

    row("Successful requests:", data["successful_requests"])
    row("Failed requests:", data["failed_requests"])
    row("Benchmark duration (s):", data["duration_s"], ".2f")
    row("Total input tokens:", data["total_input_tokens"])
    row("Total generated tokens:", data["total_output_tokens"])
    row("Request throughput (req/s):", data["request_throughput"], ".2f")
    row("Output token throughput (tok/s):", data["output_throughput"], ".2f")
    row("Total Token throughput (tok/s):", data["total_token_throughput"], ".2f")
    if data["request_goodput"] is not None:
        row("Request goodput (req/s):", data["request_goodput"], ".2f")
    for key, title, short in (
        ("ttft_ms", "Time to First Token", "TTFT"),
        ("tpot_ms", "Time per Output Token (excl. 1st token)", "TPOT"),
        ("itl_ms", "Inter-token Latency", "ITL"),
        ("e2el_ms", "End-to-end Latency", "E2EL"),
    ):
        lines.append("{s:{c}^50}".format(s=title, c="-"))
        for stat in ("mean", "median", "p99"):
            row(f"{stat.capitalize() if stat != 'p99' else 'P99'} {short} (ms):", data[key][stat], ".2f")
    lines.append("=" * 50)
    for message, count in data["errors"].items():
        lines.append(f"failed x{count}: {message}")
    return "\n".join(lines)


def parse_slo(items: list[str]) -> dict[str, float]:
    slo: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if name not in ("ttft_ms", "tpot_ms", "e2e_ms") or not sep:
            raise ValueError(f"--slo {item!r}: expected ttft_ms=N, tpot_ms=N or e2e_ms=N")
        try:
            slo[name] = float(value)
        except ValueError:
            raise ValueError(f"--slo {item!r}: {value!r} is not a number") from None
    return slo
