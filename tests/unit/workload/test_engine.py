"""The model's paged attention and the engine loop, in process (torch on the CPU)."""

import threading
import time

import pytest
import torch
from prometheus_client import CollectorRegistry

from workload.blocks import BlockManager
from workload.engine import Engine, EngineConfig, Failed, Finished, Token, load_model
from workload.errors import EngineDead, Failure, Overloaded, RestartFailed
from workload.metrics import WorkloadMetrics
from workload.model import EOS, ByteTokenizer, KVCache, ModelConfig, StepBatch, TinyLM

CPU = torch.device("cpu")
CFG = ModelConfig()


@pytest.fixture(scope="module")
def model() -> TinyLM:
    return load_model(CFG, CPU)


def engine(model: TinyLM, **config) -> Engine:
    return Engine(model, EngineConfig(**config), WorkloadMetrics(CollectorRegistry(), CFG.name, "cpu"), CPU)


def test_a_few_million_parameters_from_a_fixed_seed() -> None:
    a, b = TinyLM(CFG), TinyLM(CFG)
    assert 1_000_000 < a.num_parameters < 10_000_000
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_tokenizer_round_trip() -> None:
    tok = ByteTokenizer()
    assert tok.encode("héllo")[0] == tok.bos
    assert tok.decode([*tok.encode("héllo")[1:], EOS]) == "héllo"


def test_paged_decode_and_mixed_steps_match_a_full_prefill(model: TinyLM) -> None:
    tok = ByteTokenizer()
    bm, cache = BlockManager(64, 16), KVCache(CFG, 64, 16, CPU)
    a, b = tok.encode("paged attention over blocks of sixteen"), tok.encode("hi")
    bm.allocate(1, len(a))
    bm.allocate(2, len(b))
    first = model(StepBatch.build([a, b], [0, 0], [bm.table(1), bm.table(2)], 16, CPU), cache).argmax(-1).tolist()
    a2, b2 = [*a, first[0]], [*b, first[1]]
    bm.grow(1, len(a2))
    bm.grow(2, len(b2))
    c = tok.encode("a newcomer")
    bm.allocate(3, len(c))
    mixed = model(
        StepBatch.build(
            [[first[0]], c, [first[1]]], [len(a), 0, len(b)], [bm.table(1), bm.table(3), bm.table(2)], 16, CPU
        ),
        cache,
    )
    fresh_bm, fresh_cache = BlockManager(64, 16), KVCache(CFG, 64, 16, CPU)
    for i, s in enumerate((a2, c, b2)):
        fresh_bm.allocate(10 + i, len(s))
    reference = model(
        StepBatch.build([a2, c, b2], [0, 0, 0], [fresh_bm.table(10 + i) for i in range(3)], 16, CPU), fresh_cache
    )
    assert torch.allclose(mixed, reference, atol=1e-4)


def generate(eng: Engine, prompts: list[str], max_tokens: int, **kwargs) -> list[list[int]]:
    """Submit all prompts, step the engine in this thread until they finish, return their tokens."""
    tok = ByteTokenizer()
    seqs = [eng.new_sequence(tok.encode(p), max_tokens, **kwargs) for p in prompts]
    for s in seqs:
        eng.state.scheduler.add(s)
    while eng.state.scheduler.has_work:
        eng.step()
    return [s.output for s in seqs]


def test_preemption_by_recompute_does_not_change_greedy_output(model: TinyLM) -> None:
    prompts = [f"prompt number {i} with some words" for i in range(6)]
    roomy = generate(engine(model, num_blocks=256), prompts, 40, ignore_eos=True)
    tight_engine = engine(model, num_blocks=12)  # 6 sequences of ~75 tokens need ~30 blocks
    tight = generate(tight_engine, prompts, 40, ignore_eos=True)
    assert tight == roomy
    assert tight_engine.metrics.preemptions._value.get() > 0
    tight_engine.state.blocks.check()
    assert tight_engine.state.blocks.num_free == 12


def test_seeded_temperature_sampling_is_reproducible(model: TinyLM) -> None:
    one = generate(engine(model), ["x"], 20, temperature=0.9, seed=42, ignore_eos=True)
    two = generate(engine(model), ["x"], 20, temperature=0.9, seed=42, ignore_eos=True)
    greedy = generate(engine(model), ["x"], 20, ignore_eos=True)
    assert one == two and one != greedy


def test_engine_thread_streams_events_and_counts_them(model: TinyLM) -> None:
    eng = engine(model)
    eng.start()
    try:
        events: list = []
        done = threading.Event()

        def sink(ev) -> None:
            events.append(ev)
            if isinstance(ev, (Finished, Failed)):
                done.set()

        seq = eng.new_sequence(ByteTokenizer().encode("hello"), 5, ignore_eos=True, sink=sink)
        eng.submit(seq)
        assert done.wait(30)
        assert [type(e) for e in events] == [Token] * 5 + [Finished]
        assert events[-1].reason.value == "length" and events[-1].completion_tokens == 5
        assert eng.metrics.success["length"]._value.get() == 1
        assert eng.metrics.generation_tokens._value.get() == 5
        assert eng.metrics.ttft._sum.get() > 0
    finally:
        eng.stop()


def test_waiting_queue_bound_answers_429(model: TinyLM) -> None:
    eng = engine(model, max_waiting=2)  # not started: nothing drains the inbox
    tok = ByteTokenizer()
    for _ in range(2):
        eng.submit(eng.new_sequence(tok.encode("a"), 1))
    with pytest.raises(Overloaded, match="2 requests already waiting"):
        eng.submit(eng.new_sequence(tok.encode("a"), 1))


def test_a_restart_that_cannot_build_keeps_the_old_engine_serving(model: TinyLM, monkeypatch) -> None:
    import workload.engine as engine_module

    eng = engine(model, num_blocks=64)
    eng.start()
    try:

        def no_memory(*_args, **_kwargs):
            raise MemoryError("cannot allocate the KV pool")

        monkeypatch.setattr(engine_module, "KVCache", no_memory)
        with pytest.raises(RestartFailed, match="restart failed, the engine kept running"):
            eng.restart(drain_timeout_s=0.1, num_blocks=4096)
        assert eng.config.num_blocks == 64 and eng.health()[0]
        monkeypatch.undo()
        done = threading.Event()
        seq = eng.new_sequence(
            ByteTokenizer().encode("still here"),
            3,
            ignore_eos=True,
            sink=lambda ev: done.set() if isinstance(ev, Finished) else None,
        )
        eng.submit(seq)
        assert done.wait(30)
    finally:
        eng.stop()


def test_concurrent_restarts_leave_one_engine_loop_even_during_a_long_latency_fault(model: TinyLM) -> None:
    eng = engine(model)
    eng.start()
    try:
        eng.set_fault("latency", {"delay_ms": 60_000}, None)
        tok = ByteTokenizer()
        failures: list = []
        eng.submit(eng.new_sequence(tok.encode("slow"), 4, sink=lambda ev: failures.append(ev)))
        time.sleep(0.3)  # the loop is inside its minute-long decode delay
        restarts = [threading.Thread(target=eng.restart, args=(0.1,)) for _ in range(2)]
        for t in restarts:
            t.start()
        for t in restarts:
            t.join(30)
        assert not any(t.is_alive() for t in restarts), "restart waited out the injected delay"
        assert [t.name for t in threading.enumerate()].count("engine") == 1
        assert any(isinstance(ev, Failed) and ev.cause is Failure.RESTARTED for ev in failures), (
            "the slow request got an answer"
        )
        assert eng.health()[0] and not eng.faults()
    finally:
        eng.stop()


def collect(done: threading.Event, events: list):
    def sink(ev) -> None:
        events.append(ev)
        if isinstance(ev, (Finished, Failed)):
            done.set()

    return sink


def test_a_failing_step_fails_only_its_batch_and_the_engine_rebuilds_itself(model: TinyLM) -> None:
    eng = engine(model, max_num_seqs=1)  # one sequence per batch: the second one waits
    tok = ByteTokenizer()
    (bad_done, bad), (good_done, good) = (threading.Event(), []), (threading.Event(), [])
    # a seed torch cannot take raises inside the step, as an unvalidated request once did
    eng.submit(eng.new_sequence(tok.encode("x"), 3, temperature=0.9, seed=2**64, sink=collect(bad_done, bad)))
    eng.submit(eng.new_sequence(tok.encode("y"), 3, ignore_eos=True, sink=collect(good_done, good)))
    eng.start()
    try:
        assert bad_done.wait(30)
        assert isinstance(bad[-1], Failed) and bad[-1].cause is Failure.ENGINE_ERROR and "Overflow" in bad[-1].message
        assert good_done.wait(30), "the waiting request was served after the rebuild"
        assert isinstance(good[-1], Finished) and good[-1].completion_tokens == 3
        ok, health = eng.health()
        assert ok and health["recoveries"] == 1
        assert eng.metrics.engine_restarts["error"]._value.get() == 1
        assert eng.metrics.success["error"]._value.get() == 1
    finally:
        eng.stop()


def test_health_says_the_engine_is_recovering_during_its_backoff(model: TinyLM, monkeypatch) -> None:
    import workload.engine as engine_module

    monkeypatch.setattr(engine_module, "RECOVERY_BACKOFF_S", (60.0, 60.0))
    eng = engine(model)
    done = threading.Event()
    eng.submit(eng.new_sequence(ByteTokenizer().encode("x"), 3, temperature=0.9, seed=2**64, sink=collect(done, [])))
    eng.start()
    try:
        assert done.wait(30)
        ok, health = eng.health()
        assert not ok and health["status"] == "recovering" and health["restart"].startswith("automatic")
        assert "Overflow" in health["error"] and health["rebuild_in_s"] > 0
        eng.restart(drain_timeout_s=0)  # a restart through the control API ends the wait at once
        assert eng.health()[0]
    finally:
        eng.stop()


def test_the_crash_fault_stays_down_until_a_restart(model: TinyLM) -> None:
    eng = engine(model)
    eng.start()
    try:
        eng.set_fault("crash", {}, None)
        deadline = time.monotonic() + 30
        while eng.health()[1]["status"] != "dead" and time.monotonic() < deadline:
            time.sleep(0.02)
        ok, health = eng.health()
        assert not ok and health["restart"].startswith("manual") and health["recoveries"] == 0
        # a request that reaches the dead engine is refused, not finished: no finished-request counter moves
        # (the crash shows as /metrics answering 503, Prometheus' target down)
        errors = eng.metrics.success["error"]._value.get()
        with pytest.raises(EngineDead):
            eng.submit(eng.new_sequence([1, 2, 3], 4))
        assert eng.metrics.success["error"]._value.get() == errors and eng.dead
        eng.restart(drain_timeout_s=0)
        assert eng.health()[0] and eng.metrics.engine_restarts["control"]._value.get() == 1
    finally:
        eng.stop()
