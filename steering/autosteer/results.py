"""What the loop yields while it runs (`PhaseEvent`, `ScreenResult`, `EpochResult`, `FinalResult`)
and the bookkeeping it keeps (`Best`, `RunScores`), plus the four conditions of a held-out check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from ..artefacts.profile import SteeringProfile
from .optimisers import WeightVector
from .retrieve import FeatureCandidate

CONDITIONS = ("unsteered", "prompted", "steered", "prompted_steered")


def four_conditions(prompts: Sequence[str], weights, behavior: str | None) -> tuple[list[str], list, list[str | None]]:
    """The batch layout of the four conditions (prompts, steering rows, system prompts), in
    CONDITIONS order, for one batched generate (shared with quora_kids.evaluate)."""
    n = len(prompts)
    return (list(prompts) * 4, [None] * (2 * n) + [weights] * (2 * n),
            [None] * n + [behavior] * n + [None] * n + [behavior] * n)


@dataclass
class PhaseEvent:
    """What the loop is doing now (shown by the app and the CLI; not part of --json)."""

    phase: str  # "baseline" | "retrieve" | "screen" | "mode" | "seed" | "epochs" | "held-out" | "profile"
    message: str


@dataclass
class ScreenResult:
    """Every retrieved candidate with its score when steered alone; `kept` go on to the loop."""

    candidates: list[FeatureCandidate]  # best first
    scores: list[float]
    critiques: list[str]
    kept: int
    seconds: float
    outputs: list[list[str]] = field(default_factory=list)  # per candidate, one answer per screening prompt

    def to_json(self) -> dict:
        return {
            "screened": [{"index": c.index, "label": c.label, "source": c.source, "sign": c.sign, "score": s}
                         for c, s in zip(self.candidates, self.scores)],
            "kept": self.kept, "seconds": self.seconds,
        }


@dataclass
class EpochResult:
    epoch: int  # 1-based
    weights: list[float]  # the epoch's best candidate, one per feature
    outputs: list[str]  # that candidate's answer per training prompt
    score: float
    critique: str
    best_score: float
    best_weights: list[float]
    candidates: int
    seconds: dict[str, float]  # generate / judge / optimise
    free_share: float = 0.0  # share of the steering norm that is not an SAE feature
    condition: str = "steered"  # "prompted_steered": the answers had the behaviour as a system prompt too

    def to_json(self, features: Sequence[FeatureCandidate]) -> dict:
        d = asdict(self)
        d["features"] = [f.index for f in features]
        return d


@dataclass
class HeldOutResult:
    prompts: list[str]
    scores: dict[str, float]  # condition -> mean judge score
    outputs: dict[str, list[str]]  # condition -> answers
    critiques: dict[str, str]
    parts: dict[str, dict[str, float]]
    per_prompt: dict[str, list[float]] = field(default_factory=dict)  # condition -> score per prompt, where the judge gives them

    def per_question(self, condition: str, against: str = "prompted") -> tuple[int, int, int] | None:
        """On how many prompts `condition` scored higher than, the same as, lower than `against`
        (None without per-prompt scores): a verdict one lucky answer cannot swing."""
        a, b = self.per_prompt.get(condition), self.per_prompt.get(against)
        return beats_ties_trails(a, b) if a and b else None

    def versus_prompted(self, condition: str) -> str:
        """"beats prompting on 5, ties 1, trails 2 of 8 prompts" for a steered condition; "" where
        there is nothing to compare (no per-prompt scores, or not a steered condition)."""
        count = self.per_question(condition) if condition in ("steered", "prompted_steered") else None
        return f"beats prompting on {count[0]}, ties {count[1]}, trails {count[2]} of {sum(count)} prompts" if count else ""


def beats_ties_trails(a: Sequence[float], b: Sequence[float]) -> tuple[int, int, int]:
    """On how many prompts the scores `a` are higher than, equal to, lower than `b`."""
    return sum(x > y for x, y in zip(a, b)), sum(x == y for x, y in zip(a, b)), sum(x < y for x, y in zip(a, b))


@dataclass
class FinalResult:
    profile: SteeringProfile
    features: list[FeatureCandidate]
    heldout: HeldOutResult | None
    stopped: str  # "threshold" | "epochs" | "cancelled" | "error: ..."
    screened: ScreenResult | None = None


@dataclass
class Best:
    """The best-judged proposal so far (score -inf before the first epoch)."""

    score: float
    weights: WeightVector
    outputs: list[str]
    critique: str

    @property
    def found(self) -> bool:
        return self.score > float("-inf")


@dataclass
class RunScores:
    """The profile's `scores` field: each epoch's score, the best, the held-out scores."""

    epochs: list[float] = field(default_factory=list)
    best: float | None = None
    held_out: dict[str, float] | None = None

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "best": self.best, "held_out": self.held_out}
