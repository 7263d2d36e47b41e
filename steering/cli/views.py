"""How `autosteer` shows a run: a progress bar with each phase, the screening table and each
epoch's answers on the terminal, or --json lines."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from ..artefacts.profile import opening_summary
from ..autosteer.config import AutoSteerConfig
from ..autosteer.events import AutoSteerView, final_json
from ..autosteer.loop import SCREEN_WEIGHT, AutoSteer
from ..autosteer.results import EpochResult, FinalResult, PhaseEvent, ScreenResult


class JsonLines(AutoSteerView):
    """--json: one object per epoch, then the final line (the screening goes in the final line)."""

    def __init__(self, run: AutoSteer, out: Path):
        self.run, self.out = run, out

    def phase(self, event: PhaseEvent) -> None:
        pass

    def screened(self, event: ScreenResult) -> None:
        pass

    def epoch(self, event: EpochResult) -> None:
        print(json.dumps(event.to_json(self.run.features)), flush=True)

    def final(self, event: FinalResult) -> None:
        print(json.dumps(final_json(event, event.profile.save(self.out))), flush=True)


class Terminal(AutoSteerView):
    """A progress bar on stderr, the phase, the screening table and each epoch's answers."""

    def __init__(self, cfg: AutoSteerConfig, out: Path, bar: tqdm):
        self.cfg, self.out, self.bar = cfg, out, bar

    def phase(self, event: PhaseEvent) -> None:
        self.bar.set_description(event.phase)
        self.bar.write(f"[{event.phase}] {event.message}")

    def screened(self, event: ScreenResult) -> None:
        self.bar.write(f"screened {len(event.candidates)} candidate features in {event.seconds:.0f}s (score alone at weight +-{SCREEN_WEIGHT}):")
        for i, (c, score) in enumerate(zip(event.candidates, event.scores)):
            mark = "keep" if i < event.kept else "    "
            self.bar.write(f"  {mark} {c.index:5d} {c.sign:+.0f} {c.source:11s} {score:5.2f}  {c.label[:70]}")

    def epoch(self, event: EpochResult) -> None:
        self.bar.update(1)
        free = f" + free direction ({event.free_share:.0%} of the norm, not an SAE feature)" if event.free_share else ""
        on = " on top of the behaviour as a system prompt" if event.condition == "prompted_steered" else ""
        self.bar.write(f"epoch {event.epoch}: score {event.score:.2f} (best {event.best_score:.2f}) weights {event.weights}{free}{on}")
        self.bar.write(f"  critique: {event.critique}")
        for prompt, text in zip(self.cfg.prompts, event.outputs):
            self.bar.write(f"  [{prompt[:40]}] {text[:200]!r}")

    def final(self, event: FinalResult) -> None:
        path = event.profile.save(self.out)
        self.bar.close()
        profile = event.profile
        print(f"saved {path} ({event.stopped}; answers {profile.mode.replace('_', ' + ')}"
              + (f"; {profile.free_share:.0%} of the steering is a free direction, not an SAE feature" if profile.free_share else "")
              + (f"; {opening_summary(profile)}" if profile.opening_direction is not None else "") + ")")
        for note in profile.provenance.get("notes", []):
            print(f"  note: {note}")
        if event.heldout:
            for cond, score in event.heldout.scores.items():
                versus = event.heldout.versus_prompted(cond)
                print(f"  held-out {cond:18s} {score:.2f}" + (f"  ({versus})" if versus else ""))
