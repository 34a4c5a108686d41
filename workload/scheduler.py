"""Iteration-level scheduling policy: which sequences prefill, decode or are preempted this step.

The policy only asks the block manager questions (`can_allocate`, `blocks_to_grow`) and tells it
what to hold; it never touches the free list. Two policies share the interface:

- `Scheduler`: continuous batching. Every step decodes all running sequences, preempting the most
  recently admitted ones by recompute when a sequence needs a block and none is free, then admits
  waiting sequences first-come first-served while `max_num_seqs`, `max_num_batched_tokens` and
  the free blocks allow. Finished sequences leave at once, so new ones join at the next step.
- `StaticScheduler`: the baseline: waits for a full batch (or a timeout), runs it to the end,
  and only then admits the next batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from workload.blocks import BlockManager
from workload.sequence import FinishReason, Sequence, Status


@dataclass
class SchedulerConfig:
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 2048


@dataclass
class ScheduleResult:
    prefills: list[Sequence] = field(default_factory=list)
    decodes: list[Sequence] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)
    rejected: list[Sequence] = field(default_factory=list)  # can never fit in the KV cache

    @property
    def num_tokens(self) -> int:
        return sum(s.prefill_len for s in self.prefills) + len(self.decodes)

    @property
    def empty(self) -> bool:
        return not (self.prefills or self.decodes)


class Scheduler:
    def __init__(self, config: SchedulerConfig, blocks: BlockManager) -> None:
        self.config = config
        self.blocks = blocks
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        seq.status = Status.WAITING
        self.waiting.append(seq)

    def schedule(self) -> ScheduleResult:
        result = ScheduleResult()
        self._schedule_running(result)
        if not result.preempted:  # admitting now would only be preempted again next step
            self._admit(result, budget=self.config.max_num_batched_tokens - len(result.decodes))
        return result

    def _schedule_running(self, result: ScheduleResult) -> None:
        """Every running sequence gets room for one more token, preempting from the back if needed."""
        queue = list(self.running)
        while queue:
            seq = queue.pop(0)
            need = self.blocks.blocks_to_grow(seq.seq_id, seq.num_tokens)
            while need and not self.blocks.can_allocate(need):
                victim = queue.pop() if queue else seq
                self._preempt(victim, result)
                if victim is seq:
                    break
            if seq.status is not Status.RUNNING:
                continue
            if need:
                self.blocks.grow(seq.seq_id, seq.num_tokens)
            result.decodes.append(seq)

    def _admit(self, result: ScheduleResult, budget: int) -> None:
        while self.waiting and len(result.decodes) + len(result.prefills) < self.config.max_num_seqs:
            seq = self.waiting[0]
            need = self.blocks.blocks_for(seq.prefill_len)
            if need > self.blocks.capacity or seq.prefill_len > self.config.max_num_batched_tokens:
                self.waiting.popleft()
                self._remove(seq, FinishReason.ERROR)
                result.rejected.append(seq)
                continue
            if seq.prefill_len > budget or not self.blocks.can_allocate(need):
                break
            self.waiting.popleft()
            self.blocks.allocate(seq.seq_id, seq.prefill_len)
            seq.status = Status.RUNNING
            self.running.append(seq)
            result.prefills.append(seq)
            budget -= seq.prefill_len

    def _preempt(self, seq: Sequence, result: ScheduleResult) -> None:
        self.blocks.free(seq.seq_id)
        self.running.remove(seq)
        seq.status = Status.WAITING
        seq.computed = 0
        seq.preemptions += 1
        self.waiting.appendleft(seq)
        result.preempted.append(seq)

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
        elif seq.status is Status.WAITING and seq in self.waiting:
            self.waiting.remove(seq)
        self._remove(seq, reason)

    def _remove(self, seq: Sequence, reason: FinishReason) -> None:
        self.blocks.free(seq.seq_id)
        seq.status = Status.FINISHED
        seq.finish_reason = reason

    def abort_all(self, reason: FinishReason) -> list[Sequence]:
        """Finish every sequence, waiting or running; return them."""
        aborted = [*self.running, *self.waiting]
        for seq in aborted:
            self.finish(seq, reason)
        return aborted


class StaticScheduler(Scheduler):
    """Static batching: admit only into an empty engine, and only a full batch of `max_num_seqs`.

    A partial batch goes once its oldest request has waited `batch_timeout_s`, as static
    servers do, or the last requests of a run would wait forever.
    """

    def __init__(
        self, config: SchedulerConfig, blocks: BlockManager, clock: Callable[[], float], batch_timeout_s: float = 1.0
    ) -> None:
        super().__init__(config, blocks)
        self.clock = clock
        self.batch_timeout_s = batch_timeout_s

    def schedule(self) -> ScheduleResult:
        result = ScheduleResult()
        if self.running:
            self._schedule_running(result)
        elif self.waiting and (
            len(self.waiting) >= self.config.max_num_seqs
            or self.clock() - self.waiting[0].arrival >= self.batch_timeout_s
        ):
            self._admit(result, budget=self.config.max_num_batched_tokens)
        return result
