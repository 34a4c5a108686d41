"""`vigil workload` (the reference inference server) and `vigil loadgen`; how `vigil up` runs the workload."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from vigil.errors import CliError
from vigil.flags import add_flags, settings_from
from vigil.kernel import ChildSpec, RunPlan
from vigil.logs import event
from vigil.settings import Settings
from workload.settings import WorkloadSettings

NAME = "workload"
DEMO_RATE = 2.0  # requests/s `vigil up` sends the workload so a first start shows a live fleet

log = logging.getLogger("workload")


def register(sub: argparse._SubParsersAction) -> None:
    wl = sub.add_parser(
        "workload",
        help="run the reference inference server (continuous batching, vLLM metrics)",
        description="Run the reference inference server. Every flag can also be set by its VIGIL_WORKLOAD_* "
        "variable; a flag wins over the environment.",
    )
    add_flags(wl, WorkloadSettings)
    wl.set_defaults(func=cmd_workload)

    lg = sub.add_parser("loadgen", help="benchmark an OpenAI-compatible completions server like vLLM's bench")
    lg.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    mode = lg.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="Poisson arrivals, requests per second")
    mode.add_argument("--concurrency", type=int, help="clients, each sending its next request when one ends")
    lg.add_argument("--duration", type=float, required=True, help="seconds to send load")
    lg.add_argument("--prompt-len", type=int, default=32, help="prompt tokens per request (default 32)")
    lg.add_argument("--output-len", type=int, default=32, help="output tokens per request (default 32)")
    lg.add_argument("--slo", nargs="+", default=[], metavar="NAME=MS", help="goodput SLOs: ttft_ms, tpot_ms, e2e_ms")
    lg.add_argument("--model", help="model name to send (default: the server's only model)")
    lg.add_argument("--seed", type=int, default=0, help="prompt generator seed")
    lg.add_argument("--json", action="store_true", help="print the report as JSON")
    lg.set_defaults(func=cmd_loadgen)


def child(plan: RunPlan, settings: Settings) -> ChildSpec:
    """How `vigil up` runs the workload: on the plan's port, with its control token, probed at /health."""
    assert plan.workload is not None, "vigil up runs the workload only when the plan has one"
    workload = plan.workload
    argv = [sys.executable, "-m", "vigil.cli", "workload", "--port", str(workload.port)]
    if workload.demo_traffic:
        argv += ["--demo-rate", str(DEMO_RATE)]
    env = {"VIGIL_CONTROL_TOKEN": workload.control_token}
    return ChildSpec(NAME, argv, env=env, health_url=workload.health_url)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_workload(args: argparse.Namespace) -> int:
    import prometheus_client
    import torch
    import uvicorn
    from prometheus_client import CollectorRegistry

    from workload.api import create_app
    from workload.engine import Engine, EngineConfig, load_model
    from workload.metrics import WorkloadMetrics
    from workload.model import ModelConfig, pick_device

    wl = settings_from(WorkloadSettings, args)
    settings = Settings()
    token = settings.control_token or None
    if token is None and not _is_loopback(wl.host):
        raise CliError(
            f"--host {wl.host}: without VIGIL_CONTROL_TOKEN the control API would be open to the "
            "network; set a token or listen on 127.0.0.1"
        )
    try:
        device = pick_device(wl.device)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    torch.set_grad_enabled(False)
    prometheus_client.disable_created_metrics()  # vLLM exposes no *_created series; neither do we
    model_config = ModelConfig()
    model = load_model(model_config, device)
    registry = CollectorRegistry()
    metrics = WorkloadMetrics(registry, model_config.name, str(device))
    engine = Engine(
        model,
        EngineConfig(
            max_num_seqs=wl.max_num_seqs,
            max_num_batched_tokens=wl.max_num_batched_tokens,
            num_blocks=wl.num_blocks,
            max_waiting=wl.max_waiting,
            stall_after_s=wl.stall_after,
            torch_threads=wl.threads,
        ),
        metrics,
        device,
    )
    engine.start()
    app = create_app(engine, registry, token, wl.max_body_bytes)
    if wl.demo_rate > 0:
        app.router.lifespan_context = _demo_traffic(f"http://127.0.0.1:{wl.port}", wl.demo_rate)
    event(
        log,
        "workload_up",
        url=f"http://{wl.host}:{wl.port}",
        device=device,
        model=model_config.name,
        parameters=model.num_parameters,
        kv_cache_mb=round(engine.state.cache.bytes / 2**20, 1),
        control="token" if token else "loopback-only",
        demo_rate=wl.demo_rate,
        max_body_bytes=wl.max_body_bytes,
    )
    # uvicorn drains on SIGTERM, then re-raises it; a no-op handler lets us stop the engine and exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.Server(uvicorn.Config(app, host=wl.host, port=wl.port, log_config=None, access_log=False)).run()
    finally:
        engine.stop()
    return 0


def _demo_traffic(url: str, rate: float) -> Any:
    """A lifespan that sends the server gentle Poisson traffic of short, varied requests."""
    import httpx

    from workload.loadgen import LoadConfig, make_prompt, one_request

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        rng = random.Random()

        async def loop() -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                while True:
                    await asyncio.sleep(rng.expovariate(rate))
                    cfg = LoadConfig(url=url, duration_s=0, output_len=rng.randint(8, 64), temperature=0.8)
                    asyncio.get_running_loop().create_task(
                        one_request(client, cfg, make_prompt(rng, rng.randint(8, 96)))
                    )

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    return lifespan


def cmd_loadgen(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from workload.loadgen import LoadConfig, format_report, parse_slo, report, run

    if args.duration <= 0:
        raise CliError("--duration must be positive")
    if (args.rate is not None and args.rate <= 0) or (args.concurrency is not None and args.concurrency < 1):
        raise CliError("--rate must be positive and --concurrency at least 1")
    if args.prompt_len < 1 or args.output_len < 1:
        raise CliError("--prompt-len and --output-len must be at least 1")
    try:
        slo = parse_slo(args.slo)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    cfg = LoadConfig(
        url=args.url.rstrip("/"),
        duration_s=args.duration,
        rate=args.rate,
        concurrency=args.concurrency,
        prompt_len=args.prompt_len,
        output_len=args.output_len,
        slo=slo,
        seed=args.seed,
        model=args.model,
    )
    columns = (
        TextColumn("[bold]loadgen"),
        BarColumn(),
        TextColumn("{task.fields[done]} done, {task.fields[failed]} failed"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True, disable=args.json) as bar:
        task = bar.add_task("load", total=args.duration, done=0, failed=0)
        counts = {"done": 0, "failed": 0}
        t0 = time.perf_counter()

        def progress(result: Any) -> None:
            counts["done" if result.ok else "failed"] += 1
            bar.update(task, completed=min(args.duration, time.perf_counter() - t0), **counts)

        results, elapsed = asyncio.run(run(cfg, progress))
    data = report(cfg, results, elapsed)
    print(json.dumps(data, indent=2) if args.json else format_report(data))
    return 0 if data["successful_requests"] else 1
