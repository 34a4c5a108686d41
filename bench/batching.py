"""Continuous batching benchmark: output tokens/s of the reference workload's engine.

    python bench/batching.py [--seconds 10] [--device auto|cpu|cuda] [--json]

The same model, in one run: closed-loop clients (each sends its next request as soon as the last
one finishes), prompts of 16 tokens, greedy decoding, end-of-text ignored so every request makes
exactly its output length. Measured in process against the engine (no HTTP), so the figure is
the batching and not the web server:

- continuous batching at 1 and at 16 clients, 32 output tokens each (goal: 16 clients >= 8x one);
- static batching at 16 clients (wait for a full batch of 16, run it to the end) as the baseline
  (goal: continuous >= 2x static);
- the same two at 16 clients with output lengths drawn from 8..56 (mean 32), where a static batch
  waits for its longest member.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from prometheus_client import CollectorRegistry

from workload.engine import Engine, EngineConfig, Failed, Finished, load_model
from workload.metrics import WorkloadMetrics
from workload.model import ByteTokenizer, ModelConfig, pick_device

PROMPT_TOKENS = 16


def measure(
    model, device, clients: int, seconds: float, static: bool, lengths: tuple[int, int], threads: int = 1
) -> dict:
    engine = Engine(
        model,
        EngineConfig(max_num_seqs=16, num_blocks=512, static_batching=static, torch_threads=threads),
        WorkloadMetrics(CollectorRegistry(), model.cfg.name, str(device)),
        device,
    )
    engine.start()
    tokenizer = ByteTokenizer()
    prompt = tokenizer.encode("x" * (PROMPT_TOKENS - 1))
    tokens = [0] * clients
    requests = [0] * clients
    stop_at = time.perf_counter() + seconds

    def client(i: int) -> None:
        rng = random.Random(i)
        while time.perf_counter() < stop_at:
            done = threading.Event()
            outcome: list = []

            def sink(ev, done=done, outcome=outcome) -> None:
                if isinstance(ev, (Finished, Failed)):
                    outcome.append(ev)
                    done.set()

            engine.submit(engine.new_sequence(prompt, rng.randint(*lengths), ignore_eos=True, sink=sink))
            done.wait()
            if isinstance(outcome[0], Finished):
                tokens[i] += outcome[0].completion_tokens
                requests[i] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    engine.stop()
    return {
        "clients": clients,
        "static": static,
        "output_tokens": sum(tokens),
        "requests": sum(requests),
        "seconds": elapsed,
        "tokens_per_s": sum(tokens) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads of the engine (vigil workload's default 1)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = pick_device(args.device)
    model = load_model(ModelConfig(), device)
    measure(model, device, 4, 1.0, False, (32, 32), args.threads)  # warm up kernels and allocator
    fixed, varied = (32, 32), (8, 56)
    runs = {
        "continuous_1": measure(model, device, 1, args.seconds, False, fixed, args.threads),
        "continuous_16": measure(model, device, 16, args.seconds, False, fixed, args.threads),
        "static_16": measure(model, device, 16, args.seconds, True, fixed, args.threads),
        "continuous_16_varied": measure(model, device, 16, args.seconds, False, varied, args.threads),
        "static_16_varied": measure(model, device, 16, args.seconds, True, varied, args.threads),
    }
    ratios = {
        "16_vs_1": runs["continuous_16"]["tokens_per_s"] / runs["continuous_1"]["tokens_per_s"],
        "continuous_vs_static": runs["continuous_16"]["tokens_per_s"] / runs["static_16"]["tokens_per_s"],
        "continuous_vs_static_varied": runs["continuous_16_varied"]["tokens_per_s"]
        / runs["static_16_varied"]["tokens_per_s"],
    }
    if args.json:
        print(json.dumps({"device": str(device), "torch": torch.__version__, "runs": runs, "ratios": ratios}, indent=2))
        return
    print(
        f"model {model.cfg.name} ({model.num_parameters / 1e6:.1f} M parameters) on {device}, torch "
        f"{torch.__version__}, engine on {args.threads} thread(s); prompts {PROMPT_TOKENS} tokens, greedy"
    )
    for name, run in runs.items():
        print(
            f"  {name:<24} {run['tokens_per_s']:>9,.0f} output tokens/s  ({run['requests']} requests, "
            f"{run['seconds']:.1f} s)"
        )
    print(f"  16 clients / 1 client             {ratios['16_vs_1']:.1f}x   (goal >= 8x)")
    print(f"  continuous / static, 32 tokens    {ratios['continuous_vs_static']:.2f}x   (goal >= 2x)")
    print(f"  continuous / static, 8..56 tokens {ratios['continuous_vs_static_varied']:.2f}x")


if __name__ == "__main__":
    main()
