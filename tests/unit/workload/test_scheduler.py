import random

from workload.blocks import BlockManager
from workload.scheduler import Scheduler, SchedulerConfig, StaticScheduler
from workload.sequence import FinishReason, Sequence, Status


def seq(seq_id: int, prompt_len: int, max_tokens: int = 8) -> Sequence:
    return Sequence(seq_id=seq_id, prompt=[1] * prompt_len, max_tokens=max_tokens)


def run_step(result) -> None:
    """What the engine does after the model runs: the new token of every scheduled sequence."""
    for s in result.prefills + result.decodes:
        s.computed = s.num_tokens
        s.output.append(7)


def test_admission_respects_max_num_seqs_token_budget_and_free_blocks() -> None:
    bm = BlockManager(num_blocks=100, block_size=16)
    sched = Scheduler(SchedulerConfig(max_num_seqs=2, max_num_batched_tokens=1000), bm)
    for i in range(3):
        sched.add(seq(i, 10))
    result = sched.schedule()
    assert [s.seq_id for s in result.prefills] == [0, 1] and len(sched.waiting) == 1

    budget = Scheduler(SchedulerConfig(max_num_seqs=10, max_num_batched_tokens=25), BlockManager(100, 16))
    for i in range(3):
        budget.add(seq(i, 10))
    assert len(budget.schedule().prefills) == 2  # 10 + 10 fit in 25 tokens, the third would not

    tight = Scheduler(SchedulerConfig(), BlockManager(num_blocks=3, block_size=16))
    tight.add(seq(0, 20))  # 2 blocks
    tight.add(seq(1, 20))  # 2 more: only 1 left
    assert [s.seq_id for s in tight.schedule().prefills] == [0]


def test_new_requests_join_at_the_next_step_and_finished_ones_leave() -> None:
    sched = Scheduler(SchedulerConfig(), BlockManager(100, 16))
    a = seq(1, 5)
    sched.add(a)
    run_step(sched.schedule())
    b = seq(2, 5)
    sched.add(b)
    step = sched.schedule()
    assert step.decodes == [a] and step.prefills == [b]
    run_step(step)
    sched.finish(a, FinishReason.LENGTH)
    assert sched.running == [b] and a.status is Status.FINISHED
    assert sched.schedule().decodes == [b]


def test_preemption_by_recompute_takes_the_newest_and_requeues_it_first() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    sched = Scheduler(SchedulerConfig(), bm)
    old, new = seq(1, 8), seq(2, 8)  # 2 blocks each: the pool is full
    sched.add(old)
    sched.add(new)
    run_step(sched.schedule())
    later = seq(3, 2)
    sched.add(later)
    step = sched.schedule()  # both need a third block for their 9th token; none is free
    assert step.preempted == [new] and step.decodes == [old] and not step.prefills
    assert new.status is Status.WAITING and new.computed == 0 and new.preemptions == 1
    assert list(sched.waiting) == [new, later], "the preempted sequence goes back to the front"
    run_step(step)
    sched.finish(old, FinishReason.LENGTH)
    again = sched.schedule()
    assert again.prefills[0] is new and new.prefill_len == 9, "recompute prefills prompt and output so far"
    bm.check()


def test_a_sequence_that_can_never_fit_is_rejected() -> None:
    sched = Scheduler(SchedulerConfig(), BlockManager(num_blocks=2, block_size=4))
    too_big = seq(1, 20)
    sched.add(too_big)
    result = sched.schedule()
    assert result.rejected == [too_big] and too_big.finish_reason is FinishReason.ERROR


def test_static_batching_waits_for_a_full_batch_and_runs_it_out() -> None:
    now = [0.0]
    sched = StaticScheduler(SchedulerConfig(max_num_seqs=2), BlockManager(100, 16), lambda: now[0])
    sched.add(seq(1, 4))
    assert sched.schedule().empty
    sched.add(seq(2, 4))
    run_step(sched.schedule())
    sched.add(seq(3, 4))
    sched.add(seq(4, 4))
    step = sched.schedule()
    assert not step.prefills and len(step.decodes) == 2, "no one joins a running static batch"


def test_static_batching_sends_a_partial_batch_after_its_timeout() -> None:
    now = [0.0]
    sched = StaticScheduler(SchedulerConfig(max_num_seqs=4), BlockManager(100, 16), lambda: now[0], 1.0)
    lonely = seq(1, 4)
    sched.add(lonely)
    assert sched.schedule().empty
    now[0] = 1.5
    assert sched.schedule().prefills == [lonely]


def test_no_block_leaks_after_10000_random_requests() -> None:
    rng = random.Random(1234)
    bm = BlockManager(num_blocks=64, block_size=16)
    sched = Scheduler(SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=512), bm)
    submitted = finished = 0
    preemptions = 0
    while finished < 10_000:
        while submitted < 10_000 and rng.random() < 0.6:
            sched.add(seq(submitted, rng.randint(1, 200), rng.randint(1, 64)))
            submitted += 1
        if rng.random() < 0.01:
            bm.withhold(rng.choice([0, 0, 20, 40]))  # the kv_pressure fault comes and goes
        result = sched.schedule()
        finished += len(result.rejected)
        preemptions += len(result.preempted)
        run_step(result)
        for s in list(sched.running):
            if len(s.output) >= s.max_tokens or rng.random() < 0.01:  # done, or the client went away
                sched.finish(s, FinishReason.LENGTH)
                finished += 1
        if rng.random() < 0.005 and sched.waiting:
            sched.finish(sched.waiting[-1], FinishReason.ABORT)
            finished += 1
        bm.check()
    assert not sched.has_work
    bm.withhold(0)
    assert bm.num_free == bm.num_blocks, "every block came back"
    assert preemptions > 0, "the test must exercise preemption"
