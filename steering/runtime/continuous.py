"""Continuous batching on the fast decoder: a request joins the rows already decoding at the
next token and leaves when its own rows are done, each row keeping its own steering vector,
system prompt, length and sampling settings. A child's question then waits for one decode step,
not for the batch in front of it.

The most urgent flights decode first: kids' questions (INTERACTIVE) before manual compares
(NORMAL) before auto-steer epochs (BACKGROUND); less urgent flights pause, keeping their KV
caches, while more urgent ones fill `max_rows`. Calls (`GenerationScheduler.call`) run between
steps when nothing in flight is more urgent.
"""

from __future__ import annotations

from typing import Protocol

from .scheduler import GenerationScheduler, Request


class Stepper(Protocol):
    """Continuous decoding: `begin` runs a request's prompt and returns its flight (with a `done`
    flag and `rows`), `step` moves flights on by one token together, `finish` makes the results."""

    def begin(self, req: Request): ...
    def step(self, flights: list) -> None: ...
    def finish(self, req: Request, flight) -> list: ...


class ContinuousScheduler(GenerationScheduler):
    """The scheduler's worker decoding flights one token at a time with `stepper`."""

    def __init__(self, stepper: Stepper, max_rows: int = 16):
        self.stepper = stepper
        self.steps_shared = 0  # decode steps that served more than one request
        super().__init__(None, max_rows)

    def _admit(self, flying: list[tuple[Request, object]]) -> list[Request]:
        """Queued requests to start now, most urgent first: each while the rows in flight at its
        priority or a more urgent one stay under 2 x max_rows (the surplus waits paused), blocking
        only when nothing is in flight. Background rows never keep a child's question out: with
        32 auto-steer screening rows in flight, a kids' pair used to wait for one of their flights
        to finish (~4-7 s to first words); now it starts at the next step (its KV cache is its own
        when the shared pool is full)."""
        with self._cond:
            while not self._queue and not flying and not self.closed:
                self._cond.wait()
            if self.closed:
                return []
            self._queue.sort(key=lambda r: (r.priority, r.order))
            levels = [(r.priority, len(r.prompts)) for r, _ in flying]
            admitted = []
            for req in [r for r in self._queue if r.call is None]:
                rows = sum(n for level, n in levels if level <= req.priority)
                if levels and rows + len(req.prompts) > 2 * self.max_rows:
                    break
                self._queue.remove(req)
                levels.append((req.priority, len(req.prompts)))
                admitted.append(req)
            return admitted

    def _next_call(self, flying: list[tuple[Request, object]]) -> Request | None:
        """The most urgent queued call, if nothing in flight is more urgent than it."""
        with self._cond:
            calls = [r for r in self._queue if r.call is not None]
            if not calls or (flying and min(r.priority for r, _ in flying) < calls[0].priority):
                return None
            self._queue.remove(calls[0])
            return calls[0]

    def _begin(self, req: Request):
        if not req.future.set_running_or_notify_cancel():
            return None
        try:
            return self.stepper.begin(req)
        except BaseException as exc:
            req.future.set_exception(exc)
            return None

    def _runnable(self, flying: list[tuple[Request, object]]) -> list[tuple[Request, object]]:
        """The most urgent flights up to max_rows rows (at least one); the rest wait a step."""
        ranked, rows, chosen = sorted(flying, key=lambda rf: (rf[0].priority, rf[0].order)), 0, []
        for req, flight in ranked:
            if chosen and rows + flight.rows > self.max_rows:
                break
            chosen.append((req, flight))
            rows += flight.rows
        return chosen

    def _loop(self) -> None:
        flying: list[tuple[Request, object]] = []
        while not self.closed:
            admitted = self._admit(flying)
            self.batches += bool(admitted) and not flying
            # (a comprehension: no loop variable keeps a finished flight, and its pool slots, alive)
            flying += [(req, flight) for req, flight in ((r, self._begin(r)) for r in admitted) if flight is not None]
            flying = self._settle(flying)
            if (job := self._next_call(flying)) is not None:  # one call, then (at least) one step
                with self._cond:
                    self._running = [job.priority] + [r.priority for r, _ in flying]
                self._run_call(job)
            chosen = self._runnable(flying)
            with self._cond:
                self._running = [r.priority for r, _ in chosen]
                self._cond.notify_all()  # wait_quiet callers see the change
            if not chosen:
                continue
            try:
                self.stepper.step([f for _, f in chosen])
                self.steps_shared += len(chosen) > 1
            except BaseException as exc:  # every request in that step sees the failure
                for req, _ in chosen:
                    req.future.set_exception(exc)
                flying = [rf for rf in flying if rf not in chosen]
            flying = self._settle(flying)
            chosen = None  # let finished flights go: their KV pool slots come back now, not at the next request
            with self._cond:
                self._running = [r.priority for r, _ in flying] if flying else []
                self._cond.notify_all()

    def _settle(self, flying: list[tuple[Request, object]]) -> list[tuple[Request, object]]:
        """Hand finished flights their results; the rest fly on."""
        left = []
        for req, flight in flying:
            if not flight.done:
                left.append((req, flight))
                continue
            try:
                req.future.set_result(self.stepper.finish(req, flight))
            except BaseException as exc:
                req.future.set_exception(exc)
        return left


class EngineStepper:
    """A SteeringEngine's fast decoder as the scheduler's stepper."""

    def __init__(self, engine):
        self.engine = engine

    def begin(self, req: Request):
        return self.engine._begin(req.prompts, req.weights, req.systems, req.config, req.cancel, req.streamer)

    def step(self, flights: list) -> None:
        self.engine.fast.step(flights)

    def finish(self, req: Request, flight) -> list:
        return self.engine._end(flight, req.cancel, req.streamer)
