"""What one auto-steer run is asked to do: `AutoSteerConfig`, validated on creation."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Questions the loop never trains on, for the held-out check (general, child-askable topics).
DEFAULT_HELDOUT = [
    "How do airplanes stay in the air?",
    "Why do we have seasons?",
    "What is electricity?",
    "How does the heart work?",
    "Why is the ocean salty?",
    "What are stars made of?",
]


# Which answers the epochs optimise: steering alone, steering on top of the behaviour as a system
# prompt, or "auto": on top of the prompt when the prompt alone beats every screened feature alone
# (the model already shows the behaviour when asked; steering then has to add to that).
MODES = ("auto", "steered", "prompted_steered")
JUDGES = ("metric", "llm")  # see factory.make_judge
OPTIMISERS = ("gradient", "numeric", "llm")  # see factory.NamedOptimiserFactory


@dataclass
class AutoSteerConfig:
    behavior: str
    prompts: list[str]
    epochs: int = 6
    features: int = 5
    screen: int = 6  # retrieve features x screen candidates, keep the best `features` (1 = no screening)
    candidates: int = 4  # weight vectors per epoch (numeric optimiser)
    threshold: float = 7.0  # early stop when the best score reaches this
    max_new_tokens: int = 64
    heldout: list[str] = field(default_factory=lambda: list(DEFAULT_HELDOUT))
    name: str = ""
    seed: int = 0
    mode: str = "auto"  # see MODES
    opening: bool = True  # try an in-character opening when the behaviour names a character (opening.py)

    def __post_init__(self):
        self.behavior = (self.behavior or "").strip()
        self.prompts = [p.strip() for p in self.prompts if p and p.strip()]
        self._check()
        train = set(self.prompts)
        self.heldout = [h for h in self.heldout if h not in train]
        self.name = self.name or slug(self.behavior)

    def _check(self) -> None:
        if not self.behavior:
            raise ValueError("describe a behaviour, e.g. 'Explain things in a way that children can understand'")
        if len(self.behavior) > 500:
            raise ValueError("the behaviour description is too long (500 characters at most)")
        if not self.prompts:
            raise ValueError("give at least one training prompt")
        if any(not (h or "").strip() for h in self.heldout):
            raise ValueError("a held-out prompt is empty")
        if any(len(p) > 2000 for p in self.prompts):
            raise ValueError("training prompts must be at most 2000 characters each")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        for name, low, high in (("epochs", 1, 100), ("features", 1, 32), ("screen", 1, 8), ("candidates", 1, 16), ("max_new_tokens", 1, 1024)):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name} must be between {low} and {high}")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "profile"
