"""The generation scheduler: one worker, merged batches, kids first (steering/scheduler.py)."""

import threading

import pytest

from steering.runtime.basis import SteeringBasis
from steering.runtime.engine import GenerationConfig, SteeringEngine
from steering.runtime.scheduler import (
    BACKGROUND,
    INTERACTIVE,
    NORMAL,
    GenerationScheduler,
    current_priority,
    iterate_at,
    priority,
)

CFG = GenerationConfig(max_new_tokens=10)


class Gate:
    """A run function whose first call waits until released, so later requests queue up."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[list[str]] = []

    def __call__(self, prompts, weights, systems, config, cancel, streamer):
        self.calls.append(list(prompts))
        if len(self.calls) == 1:
            self.started.set()
            self.release.wait(5)
        return [f"{p}|{w}|{s}" for p, w, s in zip(prompts, weights, systems)]


def test_waiting_requests_that_decode_alike_share_one_batch_and_each_gets_its_rows():
    gate = Gate()
    sched = GenerationScheduler(gate)
    first = sched.submit(["a"], [None], [None], CFG)
    assert gate.started.wait(5)
    two = sched.submit(["b", "c"], [1, 2], [None, "sys"], CFG)
    one = sched.submit(["d"], [3], [None], CFG)
    longer = sched.submit(["e"], [None], [None], GenerationConfig(max_new_tokens=99))  # decodes differently
    gate.release.set()
    assert first.result(5) == ["a|None|None"]
    assert two.result(5) == ["b|1|None", "c|2|sys"]
    assert one.result(5) == ["d|3|None"]
    assert longer.result(5) == ["e|None|None"]
    assert gate.calls == [["a"], ["b", "c", "d"], ["e"]]
    assert sched.batches == 3


def test_kids_questions_go_before_background_work_that_queued_earlier():
    gate = Gate()
    sched = GenerationScheduler(gate, max_rows=1)  # one request per batch: order is visible
    sched.submit(["first"], [None], [None], CFG)
    assert gate.started.wait(5)
    bg = sched.submit(["epoch"], [None], [None], CFG, level=BACKGROUND)
    with priority(INTERACTIVE):
        kid = sched.submit(["kid"], [None], [None], CFG)
    gate.release.set()
    kid.result(5), bg.result(5)
    assert gate.calls == [["first"], ["kid"], ["epoch"]]


def test_a_failed_batch_fails_every_request_in_it():
    def boom(*_a):
        raise RuntimeError("out of memory")

    sched = GenerationScheduler(boom)
    with pytest.raises(RuntimeError, match="out of memory"):
        sched.submit(["a"], [None], [None], CFG).result(5)
    sched_ok = GenerationScheduler(lambda p, *_: list(p))
    assert sched_ok.submit(["still works"], [None], [None], CFG).result(5) == ["still works"]


def test_iterate_at_sets_the_priority_for_each_step_only():
    seen = []

    def gen():
        for _ in range(3):
            seen.append(current_priority())
            yield

    list(iterate_at(BACKGROUND, gen()))
    assert seen == [BACKGROUND] * 3
    assert current_priority() == NORMAL


@pytest.fixture()
def scheduled(tiny_model, tiny_tokenizer, tiny_sae):
    e = SteeringEngine(tiny_model, tiny_tokenizer, SteeringBasis.from_sae(tiny_sae, layer=2, scale=8.0), decode="float32")
    solo = SteeringEngine(tiny_model, tiny_tokenizer, SteeringBasis.from_sae(tiny_sae, layer=2, scale=8.0), decode="float32")
    e.start_scheduler()
    return e, solo


def test_engine_requests_merged_by_the_scheduler_get_their_solo_answers(scheduled):
    engine, solo = scheduled
    calls = []
    real = engine._generate_now
    hold = threading.Event()

    def counted(prompts, *args):
        calls.append(len(prompts))
        if len(calls) == 1:
            hold.wait(5)
        return real(prompts, *args)

    engine.scheduler._run = counted
    requests = {"blocker": ("Plants?", None, None), "steered": ("Why is the sky blue?", {5: 1.0}, None),
                "prompted": ("Dogs like bones and walks. Why?", None, "Talk like a pirate.")}
    results = {}

    def ask(name):
        p, w, s = requests[name]
        results[name] = engine.generate([p], [w], system=s, config=CFG)[0].token_ids

    threads = {n: threading.Thread(target=ask, args=(n,)) for n in requests}
    threads["blocker"].start()
    while not calls:
        threading.Event().wait(0.01)
    for n in ("steered", "prompted"):
        threads[n].start()
    while len(engine.scheduler._queue) < 2:
        threading.Event().wait(0.01)
    hold.set()
    for t in threads.values():
        t.join(10)
    assert calls == [1, 2]  # the two waiting requests were decoded as one batch
    for name, (p, w, s) in requests.items():
        assert results[name] == solo.generate([p], [w], system=s, config=CFG)[0].token_ids, name


def test_streaming_goes_through_the_scheduler(scheduled):
    engine, solo = scheduled
    steps = list(engine.stream(["Why is the sky blue?"] * 2, [{5: 1.0}, None], config=CFG))
    assert len(steps) > 2
    assert steps[-1] == [g.text for g in solo.generate(["Why is the sky blue?"] * 2, [{5: 1.0}, None], config=CFG)]
    assert engine.scheduler.batches == 1


def test_bad_weights_fail_in_the_callers_thread_without_reaching_the_worker(scheduled):
    engine, _ = scheduled
    with pytest.raises(IndexError, match="out of range"):
        engine.generate(["x"], [{10**6: 1.0}], config=CFG)
    assert engine.scheduler.batches == 0


def test_big_requests_go_in_chunks_so_others_can_cut_in(scheduled):
    engine, solo = scheduled
    engine.scheduler.max_rows = 2
    prompts = ["Why is the sky blue?", "Plants?", "Dogs like bones and walks. Why?", "Why?", "Sky?"]
    weights = [{5: 1.0}, None, {9: -0.5}, None, {3: 0.7}]
    out = engine.generate(prompts, weights, config=CFG)
    assert engine.scheduler.batches == 3
    assert [g.token_ids for g in out] == [solo.generate([p], [w], config=CFG)[0].token_ids for p, w in zip(prompts, weights)]
