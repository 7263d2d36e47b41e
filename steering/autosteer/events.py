"""Following a run: the one place that tells the loop's events apart, for every screen that shows
them (the app's page, the command line's terminal and --json lines)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .results import EpochResult, FinalResult, PhaseEvent, ScreenResult


class AutoSteerView(ABC):
    """What a screen does with each kind of event; each method may return what the screen
    needs (the app returns its components' new values, the terminal nothing)."""

    @abstractmethod
    def phase(self, event: PhaseEvent) -> Any:
        """The loop started a phase (baseline, retrieve, screen, seed, epochs, held-out)."""

    @abstractmethod
    def screened(self, event: ScreenResult) -> Any:
        """Every candidate's score when steered alone; the first `kept` go on."""

    @abstractmethod
    def epoch(self, event: EpochResult) -> Any:
        """One epoch's best candidate and the best so far."""

    @abstractmethod
    def final(self, event: FinalResult) -> Any:
        """The held-out check and the profile (the run's last event)."""


def show(event: PhaseEvent | ScreenResult | EpochResult | FinalResult, view: AutoSteerView) -> Any:
    """Hand `event` to the view's method for its kind; returns what that method returns."""
    if isinstance(event, PhaseEvent):
        return view.phase(event)
    if isinstance(event, ScreenResult):
        return view.screened(event)
    if isinstance(event, EpochResult):
        return view.epoch(event)
    return view.final(event)


def follow(events: Iterable, view: AutoSteerView) -> Iterator[Any]:
    """`show` every event of a run, yielding what the view returns for each."""
    for event in events:
        yield show(event, view)


def final_json(event: FinalResult, path: str | Path) -> dict:
    """The last `autosteer --json` line (docs/cli.md): the saved profile and the held-out check."""
    return {"profile": str(path), "stopped": event.stopped,
            "features": [{"index": f.index, "label": f.label, "source": f.source} for f in event.features],
            "held_out": event.heldout.scores if event.heldout else None,
            "held_out_outputs": event.heldout.outputs if event.heldout else None,
            "mode": event.profile.mode, "free_share": event.profile.free_share,
            "opening_tokens": event.profile.opening_tokens,  # 0: no in-character opening
            "notes": event.profile.provenance.get("notes", []),
            "screened": event.screened.to_json()["screened"] if event.screened else None}
