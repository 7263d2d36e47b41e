"""One worker owns the model's decoding; every generate in the process queues to it.

Here, requests that wait together and decode alike (same length and sampling settings) are
merged into one batched generate, each row keeping its own steering vector and system prompt
(transformers `generate`); continuous.py decodes token by token instead (the fast decoder).
Higher priority goes first: kids' questions (INTERACTIVE) before manual compares (NORMAL) before
auto-steer epochs (BACKGROUND). A caller sets its priority for a block of code with
`priority(...)`; the engine's `generate` and `stream` then go through the scheduler without
changing their signatures. The worker also runs other torch work (`call`, `on_compute_thread`).
"""

from __future__ import annotations

import atexit
import contextvars
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

INTERACTIVE, NORMAL, BACKGROUND = 0, 1, 2
_priority: contextvars.ContextVar[int] = contextvars.ContextVar("generation_priority", default=NORMAL)


_LIVE: weakref.WeakSet = weakref.WeakSet()  # every scheduler whose worker runs (see GenerationScheduler.close)


@atexit.register
def _close_all() -> None:
    for scheduler in list(_LIVE):
        scheduler.close()


@contextmanager
def priority(level: int):
    """Generations started inside this block (in this thread or task) queue at `level`."""
    token = _priority.set(level)
    try:
        yield
    finally:
        _priority.reset(token)


def current_priority() -> int:
    return _priority.get()


@dataclass
class Request:
    prompts: list[str]
    weights: list
    systems: list[str | None]
    config: object  # engine.GenerationConfig
    cancel: threading.Event | None
    streamer: object | None  # transformers streamer protocol (put/end) for this request's rows
    priority: int
    order: int
    future: Future = field(default_factory=Future)
    call: Callable[[], object] | None = None  # other torch work run on the worker (see `call`)

    def key(self) -> tuple:
        """Requests merge only when one decode serves them all exactly as it would serve each."""
        c = self.config
        return (c.max_new_tokens, c.min_new_tokens, c.temperature, c.top_p, c.seed, c.repetition_penalty, c.return_logits, c.chat)


class _SplitStreamer:
    """Hands each merged request its own rows of every decoded step."""

    def __init__(self, parts: list[tuple[Request, slice]]):
        self.parts = [(r, s) for r, s in parts if r.streamer is not None]

    def put(self, value):
        for req, rows in self.parts:
            req.streamer.put(value[rows])  # the prompt ids (B, T) first, then (B,) per step

    def end(self):
        for req, _ in self.parts:
            req.streamer.end()


class _MergedCancel:
    """Set when every merged request is cancelled (one leaving early does not stop the others)."""

    def __init__(self, events: list[threading.Event | None]):
        self.events = events

    def is_set(self) -> bool:
        return all(e is not None and e.is_set() for e in self.events)


class GenerationScheduler:
    """A worker thread that runs `run(prompts, weights, systems, config, cancel, streamer)` for
    merged batches of queued requests; `submit` returns a Future of that request's generations.
    (continuous.ContinuousScheduler decodes token by token instead.)"""

    def __init__(self, run, max_rows: int = 16):
        self._run = run
        self.max_rows = max_rows
        self._queue: list[Request] = []
        self._cond = threading.Condition()
        self._order = itertools.count()
        self.batches = 0  # generate calls made (a merged batch counts once); continuous: busy spells
        self._running: list[int] = []  # priorities of the batch being decoded
        self.closed = False
        self.worker = threading.Thread(target=self._loop, daemon=True, name="generation-scheduler")
        self.worker.start()
        _LIVE.add(self)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the step or call it is running, and wait for it (up to
        `timeout`). Queued and unfinished requests are left as they are: for process exit.

        Every live scheduler is closed at exit (`atexit`): a daemon worker still inside a torch op
        when the interpreter finalises is killed mid C++ frame, and the process aborts ("terminate
        called without an active exception", exit code -6) after its work is done."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self.worker:
            self.worker.join(timeout)

    def on_worker(self) -> bool:
        return threading.current_thread() is self.worker

    def submit(self, prompts: Sequence[str], weights: Sequence, systems: Sequence[str | None], config, cancel=None, streamer=None,
               level: int | None = None, call: Callable[[], object] | None = None) -> Future:
        req = Request(list(prompts), list(weights), list(systems), config, cancel, streamer,
                      current_priority() if level is None else level, next(self._order), call=call)
        with self._cond:
            self._queue.append(req)
            self._cond.notify_all()  # the worker and any background work waiting for quiet
        return req.future

    def call(self, fn: Callable[[], object], level: int | None = None) -> Future:
        """Run `fn()` on the worker between decode steps, at the caller's priority: heavy torch
        work of other callers (the judge's perplexities, embeddings) then neither competes with
        decoding for the cores nor makes a second OpenMP thread team. Two teams on 2 cores throttle
        libgomp's spin-waits for every parallel region: a decode step gets ~1.5x slower."""
        return self.submit([], [], [], None, level=level, call=fn)

    def _take(self) -> list[Request]:
        """The most urgent request and every waiting one that decodes alike, up to max_rows."""
        with self._cond:
            while not self._queue and not self.closed:
                self._cond.wait()
            if self.closed:
                return []
            self._queue.sort(key=lambda r: (r.priority, r.order))
            first = self._queue[0]
            if first.call is not None:
                self._queue.remove(first)
                self._running = [first.priority]
                return [first]
            batch, rows = [], 0
            for req in list(self._queue):
                if req.call is None and req.key() == first.key() and (not batch or rows + len(req.prompts) <= self.max_rows):
                    batch.append(req)
                    rows += len(req.prompts)
                    self._queue.remove(req)
            self._running = [r.priority for r in batch]
            return batch

    def wait_quiet(self, level: int, timeout: float = 60.0) -> bool:
        """Block while requests more urgent than `level` are queued or decoding (up to `timeout`
        seconds). Background work calls this before its own CPU-heavy steps (judging, gradients),
        so it does not compete with a child's answer for the cores. True if it became quiet."""
        def quiet():
            return all(p >= level for p in self._running) and all(r.priority >= level for r in self._queue)

        with self._cond:
            return self._cond.wait_for(quiet, timeout)

    def _loop(self) -> None:
        while not self.closed:
            batch = [r for r in self._take() if r.future.set_running_or_notify_cancel()]
            if batch:
                self._serve(batch)

    def _run_call(self, req: Request) -> None:
        if not req.future.running() and not req.future.set_running_or_notify_cancel():
            return  # cancelled while queued
        try:
            req.future.set_result(req.call())
        except BaseException as exc:
            req.future.set_exception(exc)

    def _serve(self, batch: list[Request]) -> None:
        if batch[0].call is not None:
            self._run_call(batch[0])
            with self._cond:
                self._running = []
                self._cond.notify_all()
            return
        parts, start = [], 0
        for req in batch:
            parts.append((req, slice(start, start + len(req.prompts))))
            start += len(req.prompts)
        streamer = _SplitStreamer(parts) if any(r.streamer is not None for r in batch) else None
        cancel = batch[0].cancel if len(batch) == 1 else _MergedCancel([r.cancel for r in batch])
        try:
            self.batches += 1
            out = self._run(
                [p for r in batch for p in r.prompts], [w for r in batch for w in r.weights],
                [s for r in batch for s in r.systems], batch[0].config, cancel, streamer,
            )
        except BaseException as exc:  # every caller sees the failure of the batch it was in
            for req in batch:
                req.future.set_exception(exc)
            return
        finally:
            with self._cond:
                self._running = []
                self._cond.notify_all()
        for req, rows in parts:
            req.future.set_result(out[rows])


_compute_worker: GenerationScheduler | None = None


def use_for_compute(scheduler: GenerationScheduler | None) -> None:
    """Make `scheduler`'s worker the process's torch compute thread (the shared runtime does)."""
    global _compute_worker
    _compute_worker = scheduler


def on_compute_thread(fn: Callable, *args, **kwargs):
    """`fn(*args, **kwargs)` on the compute worker at the caller's priority (see `call`), or
    right here when there is none or this is it."""
    worker = _compute_worker
    if worker is None or worker.on_worker():
        return fn(*args, **kwargs)
    return worker.call(lambda: fn(*args, **kwargs)).result()


def on_compute_thread_in_chunks(fn: Callable, size: int, *sequences) -> list:
    """`fn` over `size` items of each of `sequences` (lists or tensors sliced alike) at a time, one
    `on_compute_thread` call per chunk: a more urgent caller (a child's question) waits for one
    short call, not for the whole pass. One result per chunk, in order."""
    return [on_compute_thread(fn, *(s[i : i + size] for s in sequences)) for i in range(0, len(sequences[0]), size)]


def iterate_at(level: int, iterator):
    """Yield from `iterator`, running each step at priority `level`. For generators that web
    frameworks resume from different threads (Gradio does), where a `with priority(...)` around
    the whole loop would not follow them."""
    iterator = iter(iterator)
    while True:
        with priority(level):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item
