"""The generation scheduler: one worker, merged batches, kids first (steering/scheduler.py)."""

import threading
import time

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


def _engines(model, tok, sae, decode):
    e = SteeringEngine(model, tok, SteeringBasis.from_sae(sae, layer=2, scale=8.0), decode=decode)
    solo = SteeringEngine(model, tok, SteeringBasis.from_sae(sae, layer=2, scale=8.0), decode=decode)
    e.start_scheduler()
    return e, solo


@pytest.fixture()
def scheduled(tiny_model, tiny_tokenizer, tiny_sae):
    """An engine on the fast decoder: continuous batching."""
    return _engines(tiny_model, tiny_tokenizer, tiny_sae, "float32")


REQUESTS = {"blocker": ("Plants?", None, None), "steered": ("Why is the sky blue?", {5: 1.0}, None),
            "prompted": ("Dogs like bones and walks. Why?", None, "Talk like a pirate.")}


def _ask_while_blocked(engine, hold_first, config=CFG):
    """The blocker starts alone and is held in its first call (`hold_first` wraps it); the other
    two requests queue meanwhile, then everything is released. Returns each one's tokens."""
    results, started = {}, threading.Event()

    def ask(name):
        p, w, s = REQUESTS[name]
        results[name] = engine.generate([p], [w], system=s, config=config)[0].token_ids

    threads = {n: threading.Thread(target=ask, args=(n,)) for n in REQUESTS}
    hold_first(started)
    threads["blocker"].start()
    started.wait(5)
    for n in ("steered", "prompted"):
        threads[n].start()
    _wait_until(lambda: len(engine.scheduler._queue) >= 2)
    started.release.set()
    for t in threads.values():
        t.join(10)
    return results


def test_transformers_path_merges_waiting_requests_into_one_generate_with_solo_answers(tiny_model, tiny_tokenizer, tiny_sae):
    engine, solo = _engines(tiny_model, tiny_tokenizer, tiny_sae, "reference")
    calls, real, release = [], engine._generate_now, threading.Event()

    def hold_first(started):
        started.release = release

        def counted(prompts, *args):
            calls.append(len(prompts))
            if len(calls) == 1:
                started.set()
                release.wait(5)
            return real(prompts, *args)

        engine.scheduler._run = counted

    results = _ask_while_blocked(engine, hold_first)
    assert calls == [1, 2]  # the two waiting requests were decoded as one batch
    for name, (p, w, s) in REQUESTS.items():
        assert results[name] == solo.generate([p], [w], system=s, config=CFG)[0].token_ids, name


def _wait_until(condition, timeout: float = 10.0) -> None:
    """Poll `condition` until true; fail (never hang) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        threading.Event().wait(0.01)


class _Steps(list):
    def __init__(self):
        super().__init__()
        self.flights = []


def _count_steps(engine):
    """Wrap the stepper: record each step's flights (by row count; `steps.flights` keeps the
    flight objects) and hold the first step."""
    steps, real, release = _Steps(), engine.scheduler.stepper.step, threading.Event()

    def hold_first(started):
        started.release = release

        def counted(flights):
            steps.append([f.rows for f in flights])
            steps.flights.append(list(flights))
            if len(steps) == 1:
                started.set()
                release.wait(5)
            real(flights)

        engine.scheduler.stepper.step = counted

    return steps, hold_first


def test_requests_join_a_decode_already_running_and_get_their_solo_answers(scheduled):
    engine, solo = scheduled
    config = GenerationConfig(max_new_tokens=10, min_new_tokens=4)  # the blocker outlives one step
    steps, hold_first = _count_steps(engine)
    results = _ask_while_blocked(engine, hold_first, config)
    assert steps[0] == [1] and [1, 1, 1] in steps  # the latecomers joined the blocker's decode steps
    assert engine.scheduler.batches == 1 and engine.scheduler.steps_shared > 0
    for name, (p, w, s) in REQUESTS.items():
        assert results[name] == solo.generate([p], [w], system=s, config=config)[0].token_ids, name


def test_kids_rows_decode_first_while_background_flights_wait(scheduled):
    engine, solo = scheduled
    engine.scheduler.max_rows = 2
    config = GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    steps, hold_first = _count_steps(engine)
    started, out, order = threading.Event(), {}, []
    hold_first(started)

    def ask(name, level, prompts):
        with priority(level):
            out[name] = engine.generate(prompts, config=config)
        order.append(name)

    bg = threading.Thread(target=ask, args=("auto", BACKGROUND, ["Plants?", "Why?"]))
    bg.start()
    started.wait(5)
    kid = threading.Thread(target=ask, args=("kid", INTERACTIVE, ["Why is the sky blue?", "Sky?"]))
    kid.start()
    _wait_until(lambda: engine.scheduler._queue)
    started.release.set()
    bg.join(10), kid.join(10)
    assert sorted(order) == ["auto", "kid"]
    auto_flight = steps.flights[0][0]
    last_step = {id(f): i for i, fs in enumerate(steps.flights) for f in fs}
    kid_last = max(i for fid, i in last_step.items() if fid != id(auto_flight))
    assert kid_last < last_step[id(auto_flight)]  # queued later, decoded to its end first
    assert max(sum(s) for s in steps) <= 2  # never more than max_rows rows in one step
    assert [g.token_ids for g in out["auto"]] == [g.token_ids for g in solo.generate(["Plants?", "Why?"], config=config)]


def test_a_kids_question_starts_at_once_when_background_rows_fill_the_flight_limit(scheduled):
    engine, solo = scheduled
    engine.scheduler.max_rows = 2  # at most 2 x 2 rows in flight per priority level
    config = GenerationConfig(max_new_tokens=8, min_new_tokens=8)
    steps, hold_first = _count_steps(engine)
    started, out = threading.Event(), {}
    hold_first(started)

    def ask(name, level, prompts):
        with priority(level):
            if level == BACKGROUND:  # a stream is one request: one flight of 4 rows, the limit
                out[name] = list(engine.stream(prompts, config=config))
            else:
                out[name] = engine.generate(prompts, config=config)

    bg = threading.Thread(target=ask, args=("auto", BACKGROUND, ["Plants?", "Why?", "Dogs?", "Cats?"]))
    bg.start()
    started.wait(5)
    kid = threading.Thread(target=ask, args=("kid", INTERACTIVE, ["Why is the sky blue?"]))
    kid.start()
    _wait_until(lambda: engine.scheduler._queue)
    started.release.set()
    bg.join(10), kid.join(10)
    last = {f: i for i, fs in enumerate(steps.flights) for f in fs}  # each flight's last step
    kid_flight = next(f for f in last if f.rows == 1)
    assert len(last) == 2 and steps[0] == [4]
    # The background flight filled the limit before the kid asked, yet the kid's flight decoded to
    # its end first: it was let in at once, not after the background rows finished.
    assert last[kid_flight] < min(i for f, i in last.items() if f is not kid_flight)
    assert out["kid"][0].token_ids == solo.generate(["Why is the sky blue?"], config=config)[0].token_ids


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


def test_big_requests_go_in_chunks_each_row_with_its_solo_answer(scheduled):
    engine, solo = scheduled
    engine.scheduler.max_rows = 2
    prompts = ["Why is the sky blue?", "Plants?", "Dogs like bones and walks. Why?", "Why?", "Sky?"]
    weights = [{5: 1.0}, None, {9: -0.5}, None, {3: 0.7}]
    steps, real = [], engine.scheduler.stepper.step
    engine.scheduler.stepper.step = lambda flights: (steps.append([f.rows for f in flights]), real(flights))
    out = engine.generate(prompts, weights, config=CFG)
    assert max(sum(s) for s in steps) <= 2  # chunks of max_rows, one flight decoding at a time
    assert [g.token_ids for g in out] == [solo.generate([p], [w], config=CFG)[0].token_ids for p, w in zip(prompts, weights)]


def test_calls_run_on_the_worker_and_return_or_raise_in_the_caller(scheduled):
    engine, _ = scheduled
    sched = engine.scheduler
    assert sched.call(lambda: threading.current_thread() is sched.worker).result(5) is True
    with pytest.raises(ZeroDivisionError):
        sched.call(lambda: 1 / 0).result(5)
    batch_mode = GenerationScheduler(lambda p, *_: list(p))
    assert batch_mode.call(lambda: threading.current_thread() is batch_mode.worker).result(5) is True


def test_background_calls_wait_for_kids_rows_in_flight(scheduled):
    engine, _ = scheduled
    steps, hold_first = _count_steps(engine)
    started, events = threading.Event(), []
    hold_first(started)

    def kid():
        with priority(INTERACTIVE):
            engine.generate(["Why is the sky blue?"], config=GenerationConfig(max_new_tokens=6, min_new_tokens=6))
        events.append("kid done")

    t = threading.Thread(target=kid)
    t.start()
    started.wait(5)
    with priority(BACKGROUND):
        judged = engine.scheduler.call(lambda: events.append(f"call after {len(steps)} steps"))
    _wait_until(lambda: engine.scheduler._queue)
    started.release.set()
    judged.result(5), t.join(5)
    # Every kid step ran before the call. (Whether the kid's thread wakes before the worker runs the
    # call is up to the OS, so the order of the two appends is not asserted.)
    assert sorted(events) == ["call after 5 steps", "kid done"]


def test_on_compute_thread_runs_in_place_without_a_worker_and_on_it_with_one(scheduled):
    from steering.runtime.scheduler import on_compute_thread, use_for_compute

    engine, _ = scheduled
    here = threading.current_thread()
    assert on_compute_thread(threading.current_thread) is here
    use_for_compute(engine.scheduler)
    try:
        assert on_compute_thread(threading.current_thread) is engine.scheduler.worker
    finally:
        use_for_compute(None)


def test_wait_quiet_wakes_as_soon_as_a_kids_call_is_done(scheduled):
    import time

    engine, _ = scheduled
    sched, release = engine.scheduler, threading.Event()
    with priority(INTERACTIVE):
        job = sched.call(lambda: release.wait(5))
    _wait_until(job.running)
    threading.Timer(0.2, release.set).start()
    t0 = time.monotonic()
    assert sched.wait_quiet(BACKGROUND, timeout=10)
    assert time.monotonic() - t0 < 3  # woken when the call ended, not at the timeout


def test_batch_mode_serves_a_call_queued_beside_generations():
    gate = Gate()
    sched = GenerationScheduler(gate)
    blocker = sched.submit(["a"], [None], [None], CFG)
    gate.started.wait(5)
    later = sched.submit(["b"], [None], [None], CFG)
    call = sched.call(lambda: "called")
    gate.release.set()
    assert blocker.result(5) == ["a|None|None"] and later.result(5) == ["b|None|None"] and call.result(5) == "called"


def test_finished_requests_give_their_kv_pool_slots_back(scheduled):
    engine, _ = scheduled
    pool = engine.fast.pool
    out = engine.generate(["Why is the sky blue?", "Plants?"], [{5: 1.0}, None], config=CFG)
    assert len(out) == 2
    deadline = time.monotonic() + 2  # the worker lets go of the flight right after handing over its result
    while pool.free() < pool.slots and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.free() == pool.slots  # not held until the next request arrives


_EXIT_WHILE_THE_WORKER_COMPUTES = """
import sys, threading, torch
from steering.runtime.continuous import ContinuousScheduler
from steering.runtime.scheduler import GenerationScheduler
a = torch.randn(400, 400)
started = threading.Event()
def busy():
    started.set()
    for _ in range(300):
        a @ a
s = ContinuousScheduler(None) if sys.argv[1] == "continuous" else GenerationScheduler(lambda *args: [])
s.call(busy)
started.wait(30)  # the worker is inside torch ops when the main thread exits
sys.exit(0)
"""


@pytest.mark.parametrize("kind", ["batch", "continuous"])
def test_the_process_exits_cleanly_while_the_worker_is_inside_a_torch_op(kind):
    # A daemon thread still inside a torch op at interpreter shutdown aborts the process
    # ("terminate called without an active exception", exit code -6): seen once in CI from
    # `python -m steering generate`. The atexit hook closes every scheduler first.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    res = subprocess.run([sys.executable, "-c", _EXIT_WHILE_THE_WORKER_COMPUTES, kind], cwd=root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-500:]  # (without the hook: -6, every time)


def test_close_stops_the_worker_after_its_current_work(scheduled):
    engine, _ = scheduled
    for sched in (engine.scheduler, GenerationScheduler(lambda p, *_: list(p))):
        assert sched.call(lambda: 7).result(timeout=30) == 7
        sched.close()
        assert not sched.worker.is_alive() and sched.closed


def test_plain_text_and_chat_requests_never_share_a_batch():
    """A batch runs with its first request's config: a plain-text continuation (the opening's
    frame) must not be served with the chat template, nor a question without it."""
    from steering.runtime.scheduler import Request

    def req(chat):
        return Request(["Hi"], [None], [None], GenerationConfig(max_new_tokens=24, chat=chat), None, None, 0, 0)

    assert req(True).key() == req(True).key() and req(True).key() != req(False).key()
