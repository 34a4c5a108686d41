"""The engine loop: schedule a step, run the model on it, hand out tokens, keep the metrics.

One thread runs the loop. Requests arrive through `submit` (any thread) into an inbox the loop
drains at the start of each step, so a request joins the batch at the next step. Each sequence
has a `sink` callable that receives its events (`Token`, `Finished`, `Failed`) from the loop
thread; the HTTP layer turns them into responses. Faults for drills (`FaultKind`) are applied at
step boundaries.

A step that raises an unexpected error fails the requests in its batch, and the engine rebuilds
its state after a backoff and goes on with the requests still waiting. The crash fault is the
exception: it stays down until something calls `restart`, because drills and runbooks expect it to.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from vigil.logs import event
from workload.blocks import BlockManager
from workload.errors import EngineDead, EngineRestarting, Failure, Overloaded, RestartFailed
from workload.faults import Fault, FaultKind
from workload.metrics import WorkloadMetrics
from workload.model import EOS, KVCache, ModelConfig, StepBatch, TinyLM, sample
from workload.scheduler import Scheduler, SchedulerConfig, ScheduleResult, StaticScheduler
from workload.sequence import FinishReason, Sequence, Status

log = logging.getLogger(__name__)

RECOVERY_BACKOFF_S = (0.5, 30.0)  # first and longest wait before rebuilding after a failed step


@dataclass
class EngineConfig:
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 2048
    num_blocks: int = 512
    block_size: int = 16
    max_waiting: int = 256
    stall_after_s: float = 5.0
    static_batching: bool = False
    torch_threads: int = 1  # intra-op threads of the engine thread (see Engine._loop)

    def public(self) -> dict[str, Any]:
        return {
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "num_blocks": self.num_blocks,
            "block_size": self.block_size,
            "max_waiting": self.max_waiting,
        }


@dataclass(frozen=True)
class Token:
    token: int
    text: str


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    message: str
    cause: Failure = Failure.ENGINE_ERROR


class SimulatedCrash(RuntimeError):
    pass


@dataclass
class Recovery:
    """The engine is waiting out its backoff after a failed step, to rebuild and go on."""

    error: str
    rebuild_at: float  # monotonic


@dataclass
class _State:
    blocks: BlockManager
    scheduler: Scheduler
    cache: KVCache
    decoders: dict[int, Any] = field(default_factory=dict)
    generators: dict[int, torch.Generator | None] = field(default_factory=dict)


class Engine:
    def __init__(
        self,
        model: TinyLM,
        config: EngineConfig,
        metrics: WorkloadMetrics,
        device: torch.device,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.config = config
        self.metrics = metrics
        self.device = device
        self.clock = clock
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._inbox: list[Sequence] = []
        self._faults: dict[FaultKind, Fault] = {}
        self._rng = random.Random()
        self._accepting = True
        self._stop = False
        self._dead: str | None = None
        self._thread: threading.Thread | None = None
        self._recovery: Recovery | None = None
        self._failed_steps = 0  # in a row: sets the backoff
        self.recoveries = 0  # automatic restarts since this process started
        self._restarting = threading.Lock()  # one restart at a time
        self._withheld_fraction = 0.0  # the kv_pressure fault's share; the loop thread applies it
        self._last_progress = clock()
        self.state = self._build(config)

    # -- lifecycle -------------------------------------------------------------------------

    def _build(self, cfg: EngineConfig) -> _State:
        blocks = BlockManager(cfg.num_blocks, cfg.block_size)
        limits = SchedulerConfig(cfg.max_num_seqs, cfg.max_num_batched_tokens)
        scheduler = StaticScheduler(limits, blocks, self.clock) if cfg.static_batching else Scheduler(limits, blocks)
        return _State(blocks, scheduler, KVCache(self.model.cfg, cfg.num_blocks, cfg.block_size, self.device))

    def start(self) -> None:
        self._stop = False
        self._dead = None
        self._recovery = None
        self._failed_steps = 0
        self._last_progress = self.clock()
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._thread.start()
        self.metrics.engine_alive.set(1)

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread:
            self._thread.join(30)
            if self._thread.is_alive():
                raise RuntimeError("the engine loop did not stop within 30 s")

    # -- requests (any thread) ------------------------------------------------------------

    def new_sequence(self, prompt: list[int], max_tokens: int, **kwargs: Any) -> Sequence:
        return Sequence(seq_id=next(self._ids), prompt=prompt, max_tokens=max_tokens, arrival=self.clock(), **kwargs)

    def submit(self, seq: Sequence) -> None:
        with self._wake:
            if self._dead:
                # refused, not finished: vLLM's request_success counts requests its engine finished, and a
                # dead engine finishes none. The crash shows as the target down (/metrics answers 503 while
                # the engine is dead: EngineDown); counted here, the refusals hidden behind that 503 showed
                # up at once after the restart and paged an error-budget burn for a crash already fixed
                raise EngineDead(f"engine is dead: {self._dead}; restart it with POST /control/restart")
            if not self._accepting:
                raise EngineRestarting("engine is restarting; retry shortly", retry_after=2.0)
            if len(self._inbox) + len(self.state.scheduler.waiting) >= self.config.max_waiting:
                raise Overloaded(f"overloaded: {self.config.max_waiting} requests already waiting; retry later")
            if not self.state.scheduler.has_work and not self._inbox:
                self._last_progress = self.clock()  # idle until now: the stall clock starts here
            self._inbox.append(seq)
            self._wake.notify_all()

    def abort(self, seq: Sequence) -> None:
        """The client went away: finish the sequence at the next step boundary."""
        seq.aborted = True

    # -- the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        # OpenMP settings are per thread: set them in the thread that runs the model. On a small
        # model, several intra-op threads called from a non-main thread cost more than they give
        # (measured: 16x256 @ 256x512 took 54 us on one thread, 118-154 us on two).
        torch.set_num_threads(self.config.torch_threads)
        while True:
            try:
                if self._recovery is not None and not self._rebuild_after_backoff():
                    return  # stopped while waiting
                self._serve()
                return
            except SimulatedCrash as exc:  # drills expect the crash fault to stay down until a restart
                self._die(exc)
                return
            except Exception as exc:  # one step failed: fail its batch, rebuild after a backoff, go on
                try:
                    self._step_failed(exc)
                except Exception as worse:
                    self._die(worse)
                    return

    def _serve(self) -> None:
        """Run steps until stopped; an exception from a step leaves through here."""
        while True:
            with self._wake:
                if self._stop:
                    return
                self._expire_faults()
                if FaultKind.CRASH in self._faults:
                    raise SimulatedCrash("CUDA error: out of memory (simulated by the crash fault)")
                blocks = self.state.blocks  # block accounting changes only on this thread
                blocks.withhold(int(blocks.num_blocks * self._withheld_fraction))
                if FaultKind.STALL in self._faults:  # the scheduler makes no progress; HTTP still answers
                    self._publish_gauges()
                    self._wake.wait(0.05)
                    continue
                for seq in self._inbox:
                    self.state.scheduler.add(seq)
                self._inbox.clear()
                if not self.state.scheduler.has_work:
                    self._publish_gauges()
                    self._wake.wait(0.5)
                    continue
            self.step()
            self._failed_steps = 0

    def _step_failed(self, exc: Exception) -> None:
        """Fail the sequences of the failed step's batch (the running ones); keep the waiting ones."""
        error = f"{type(exc).__name__}: {exc}"
        with self._wake:
            batch = [s for s in self.state.scheduler.running if s.status is Status.RUNNING]
            for seq in batch:  # the old state is thrown away, so its blocks need not be freed
                seq.status, seq.finish_reason = Status.FINISHED, FinishReason.ERROR
            self.state.scheduler.running.clear()
            self._failed_steps += 1
            backoff = min(RECOVERY_BACKOFF_S[1], RECOVERY_BACKOFF_S[0] * 2 ** (self._failed_steps - 1))
            self._recovery = Recovery(error, self.clock() + backoff)
        self.metrics.engine_restarts["error"].inc()
        self.metrics.engine_alive.set(0)
        event(
            log,
            "engine_step_failed",
            level=logging.ERROR,
            error=error,
            failed_requests=len(batch),
            rebuild_in_s=backoff,
            failed_in_a_row=self._failed_steps,
        )
        for seq in batch:
            self.metrics.success["error"].inc()
            self._fail(seq, f"engine error: {error}; the engine restarts itself", Failure.ENGINE_ERROR)

    def _rebuild_after_backoff(self) -> bool:
        """Wait out the backoff, then take a fresh state carrying the waiting sequences. False if stopped."""
        with self._wake:
            while not self._stop and self._recovery and (left := self._recovery.rebuild_at - self.clock()) > 0:
                self._wake.wait(left)
            if self._stop:
                return False
            old = self.state
            fresh = self._build(self.config)
            for seq in old.scheduler.waiting:
                if seq.status is Status.WAITING:
                    seq.computed = 0  # a new KV cache: everything is recomputed
                    fresh.scheduler.add(seq)
                    for table in ("decoders", "generators"):
                        if seq.seq_id in getattr(old, table):
                            getattr(fresh, table)[seq.seq_id] = getattr(old, table)[seq.seq_id]
            self.state = fresh
            self._recovery = None
            self.recoveries += 1
            self._last_progress = self.clock()
        self.metrics.engine_alive.set(1)
        event(log, "engine_rebuilt", waiting=len(fresh.scheduler.waiting), recoveries=self.recoveries)
        return True

    def step(self) -> ScheduleResult:
        state = self.state
        faults = dict(self._faults)  # a snapshot: control calls may change faults meanwhile
        started = self.clock()
        self._drop_aborted()
        result = state.scheduler.schedule()
        for seq in result.rejected:
            self.metrics.success["error"].inc()
            self._fail(seq, "the request does not fit in the KV cache", Failure.DOES_NOT_FIT)
        if result.preempted:
            self.metrics.preemptions.inc(len(result.preempted))
        now = self.clock()
        failing = faults.get(FaultKind.ERRORS)
        for seq in list(result.prefills):
            if seq.first_scheduled is None:
                seq.first_scheduled = now
                state.generators[seq.seq_id] = _generator(seq)
            if failing and self._rng.random() < failing.params.get("rate", 1.0):
                result.prefills.remove(seq)
                state.scheduler.finish(seq, FinishReason.ERROR)
                self.metrics.success["error"].inc()
                self._fail(seq, "internal engine error (injected by the errors fault)", Failure.INJECTED)
            elif not seq.preemptions:  # a recompute after preemption is not new prompt
                self.metrics.prompt_tokens.inc(len(seq.prompt))
        seqs = result.prefills + result.decodes
        if result.decodes and FaultKind.LATENCY in faults:
            self._inject_latency(started)
        if seqs:
            # a prefill's new tokens are all of them (from 0); a decode's is its last token
            batch = StepBatch.build(
                [s.tokens[s.computed :] for s in seqs],
                [s.computed for s in seqs],
                [state.blocks.table(s.seq_id) for s in seqs],
                state.blocks.block_size,
                self.device,
            )
            logits = self.model(batch, state.cache)
            for seq in seqs:
                seq.computed = seq.num_tokens
            self._emit(seqs, logits)
        if not result.empty:
            self.metrics.iteration_tokens.observe(result.num_tokens)
            self.metrics.step_time.observe(self.clock() - started)
            self._last_progress = self.clock()
        elif not result.rejected:
            time.sleep(0.001)  # work waits on blocks or budget that a finishing sequence will free
        self._publish_gauges()
        return result

    def _inject_latency(self, started: float) -> None:
        """Sleep the latency fault's delay, re-reading the fault on every wake-up.

        Clearing or changing the fault (or stopping the engine) notifies `_wake`, so the sleep
        ends or adjusts at once instead of running out a delay that no longer applies.
        """
        with self._wake:
            while not self._stop:
                self._expire_faults()
                fault = self._faults.get(FaultKind.LATENCY)
                if fault is None:
                    return
                deadline = started + fault.params.get("delay_ms", 0.0) / 1000
                if fault.until is not None:
                    deadline = min(deadline, fault.until)
                left = deadline - self.clock()
                if left <= 0:
                    return
                self._wake.wait(left)

    def _emit(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        state = self.state
        tokens = sample(logits, [s.temperature for s in seqs], [state.generators.get(s.seq_id) for s in seqs])
        self.metrics.generation_tokens.inc(len(seqs))
        now = self.clock()
        for seq, token in zip(seqs, tokens, strict=True):
            if seq.status is not Status.RUNNING:
                continue
            if seq.first_token is None:
                seq.first_token = now
                self.metrics.ttft.observe(now - seq.arrival)
                self.metrics.queue_time.observe((seq.first_scheduled or now) - seq.arrival)
                self.metrics.prefill_time.observe(now - (seq.first_scheduled or now))
            elif seq.last_token is not None:
                self.metrics.itl.observe(now - seq.last_token)
            seq.last_token = now
            seq.output.append(token)
            if token == EOS and not seq.ignore_eos:
                self._finish(seq, FinishReason.STOP)
                continue
            decoder = state.decoders.get(seq.seq_id)
            if decoder is None:
                decoder = state.decoders[seq.seq_id] = _decoder()
            text = decoder.decode(bytes([token]) if token < 256 else b"")
            seq.text += text
            if seq.sink:
                seq.sink(Token(token, text))
            if len(seq.output) >= seq.max_tokens:
                self._finish(seq, FinishReason.LENGTH)

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        self.state.scheduler.finish(seq, reason)
        self._forget(seq)
        now = self.clock()
        seq.finished_at = now
        self.metrics.success[reason.value].inc()
        self.metrics.e2e.observe(now - seq.arrival)
        if seq.first_token is not None:
            self.metrics.decode_time.observe(now - seq.first_token)
        if seq.sink:
            seq.sink(Finished(reason, len(seq.prompt), len(seq.output)))

    def _fail(self, seq: Sequence, message: str, cause: Failure) -> None:
        self._forget(seq)
        if seq.sink:
            seq.sink(Failed(message, cause))

    def _forget(self, seq: Sequence) -> None:
        self.state.decoders.pop(seq.seq_id, None)
        self.state.generators.pop(seq.seq_id, None)

    def _drop_aborted(self) -> None:
        scheduler = self.state.scheduler
        for seq in [*scheduler.running, *scheduler.waiting]:
            if seq.aborted:
                self._finish(seq, FinishReason.ABORT)

    def _publish_gauges(self) -> None:
        scheduler = self.state.scheduler
        self.metrics.running.set(len(scheduler.running))
        self.metrics.waiting.set(len(scheduler.waiting) + len(self._inbox))
        self.metrics.kv_usage.set(self.state.blocks.usage)

    def _die(self, exc: Exception) -> None:
        with self._wake:
            self._dead = f"{type(exc).__name__}: {exc}"
            pending = [*self._inbox, *self.state.scheduler.abort_all(FinishReason.ERROR)]
            self._inbox.clear()
        self.metrics.engine_alive.set(0)
        event(log, "engine_died", level=logging.ERROR, error=self._dead, failed_requests=len(pending))
        for seq in pending:
            seq.finish_reason = FinishReason.ERROR
            self.metrics.success["error"].inc()
            self._fail(seq, f"engine died: {self._dead}", Failure.ENGINE_ERROR)
        self._publish_gauges()

    # -- control (any thread) ---------------------------------------------------------------

    @property
    def dead(self) -> bool:
        """The loop died (the crash fault, or a failed recovery) and stays down until `restart`."""
        return self._dead is not None

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = self.clock()
        with self._lock:
            scheduler = self.state.scheduler
            busy = bool(self._inbox or scheduler.has_work)
            body: dict[str, Any] = {
                "device": str(self.device),
                "model": self.model.cfg.name,
                "running": len(scheduler.running),
                "waiting": len(scheduler.waiting) + len(self._inbox),
                "seconds_since_progress": round(now - self._last_progress, 3) if busy else 0.0,
                "faults": [f.kind.value for f in self._faults.values()],
                "recoveries": self.recoveries,
            }
            recovery = self._recovery
        if self._dead:
            return False, {
                **body,
                "status": "dead",
                "error": self._dead,
                "restart": "manual: the engine stays down until POST /control/restart",
            }
        if recovery is not None:
            return False, {
                **body,
                "status": "recovering",
                "error": recovery.error,
                "restart": "automatic: the engine rebuilds itself after a backoff",
                "rebuild_in_s": round(max(0.0, recovery.rebuild_at - now), 3),
            }
        if not self._accepting:
            return False, {**body, "status": "restarting"}
        if busy and now - self._last_progress > self.config.stall_after_s:
            return False, {
                **body,
                "status": "stalled",
                "error": f"no decode progress for {now - self._last_progress:.1f} s with work waiting",
            }
        return True, {**body, "status": "ok"}

    def set_fault(self, kind: FaultKind | str, params: dict[str, float], duration_s: float | None) -> Fault:
        kind = FaultKind(kind)
        fault = Fault(kind, params, None if duration_s is None else self.clock() + duration_s)
        with self._wake:
            self._faults[kind] = fault
            if kind is FaultKind.KV_PRESSURE:
                self._withheld_fraction = params.get("fraction", 0.9)
            self.metrics.faults_active.labels(kind).set(1)
            self._wake.notify_all()
        event(log, "fault_injected", kind=kind, duration_s=duration_s if duration_s is not None else "-", **params)
        return fault

    def faults(self) -> list[dict[str, Any]]:
        now = self.clock()
        with self._lock:
            self._expire_faults()
            return [f.public(now) for f in self._faults.values()]

    def clear_faults(self, kind: FaultKind | str | None = None) -> None:
        with self._wake:
            for name in [FaultKind(kind)] if kind else list(self._faults):
                self._clear(name)
            self._wake.notify_all()  # ends a latency sleep now, not when its delay runs out

    def _clear(self, kind: FaultKind) -> None:
        if self._faults.pop(kind, None) is None:
            return
        if kind is FaultKind.KV_PRESSURE:
            self._withheld_fraction = 0.0
        self.metrics.faults_active.labels(kind).set(0)
        event(log, "fault_cleared", kind=kind)

    def _expire_faults(self) -> None:
        now = self.clock()
        for fault in list(self._faults.values()):
            if fault.until is not None and now >= fault.until:
                self._clear(fault.kind)

    def reconfigure(self, max_num_seqs: int | None = None, max_num_batched_tokens: int | None = None) -> None:
        """Scheduling limits take effect at the next step."""
        with self._wake:
            if max_num_seqs is not None:
                self.config.max_num_seqs = self.state.scheduler.config.max_num_seqs = max_num_seqs
            if max_num_batched_tokens is not None:
                self.config.max_num_batched_tokens = max_num_batched_tokens
                self.state.scheduler.config.max_num_batched_tokens = max_num_batched_tokens
        event(log, "engine_reconfigured", **self.config.public())

    def restart(self, drain_timeout_s: float = 10.0, num_blocks: int | None = None) -> dict[str, Any]:
        """Refuse new work, let in-flight requests finish (bounded), fail the rest, rebuild the engine.

        The new engine (and its KV pool) is built before the old one is stopped: if that fails,
        the old one goes on serving and the error is raised as `RestartFailed`.
        """
        with self._restarting:
            started = self.clock()
            with self._wake:
                self._accepting = False
            config = dataclasses.replace(self.config, num_blocks=num_blocks or self.config.num_blocks)
            try:
                deadline = started + drain_timeout_s
                while self.clock() < deadline and not self._dead:
                    with self._lock:
                        if not (self._inbox or self.state.scheduler.has_work):
                            break
                    time.sleep(0.02)
                fresh = self._build(config)
            except Exception as exc:
                with self._wake:
                    self._accepting = True
                raise RestartFailed(f"restart failed, the engine kept running: {exc}") from exc
            self.stop()
            with self._wake:
                leftovers = [*self._inbox, *self.state.scheduler.abort_all(FinishReason.ABORT)]
                self._inbox.clear()
                for kind in list(self._faults):
                    self._clear(kind)
                self.config = config
                self.state = fresh
            for seq in leftovers:
                seq.finish_reason = FinishReason.ABORT
                self.metrics.success["abort"].inc()
                self._fail(
                    seq, "aborted: the engine restarted before this request finished; retry it", Failure.RESTARTED
                )
            self.start()
            with self._wake:
                self._accepting = True
            took = self.clock() - started
        self.metrics.engine_restarts["control"].inc()
        event(log, "engine_restarted", aborted=len(leftovers), seconds=round(took, 3), **self.config.public())
        return {"aborted": len(leftovers), "seconds": round(took, 3), "config": self.config.public()}


def _decoder() -> Any:
    import codecs

    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _generator(seq: Sequence) -> torch.Generator | None:
    if seq.temperature <= 0:
        return None
    generator = torch.Generator()
    generator.manual_seed(seq.seed if seq.seed is not None else random.getrandbits(63))
    return generator


def load_model(config: ModelConfig, device: torch.device) -> TinyLM:
    model = TinyLM(config).to(device)
    model.eval()
    return model
