"""Stand-ins for the loop's seams, built on the real interfaces (Judge, Optimiser, OptimiserFactory)."""

from __future__ import annotations

from collections.abc import Callable

from steering.autosteer.judges import Judge, Judgement
from steering.autosteer.optimisers import Optimiser, OptimiserFactory


class ScriptedJudge(Judge):
    """Scores from a list, in order; records what it was asked."""

    name = "scripted"

    def __init__(self, scores):
        self.scores = list(scores)
        self.calls = []

    def judge_many(self, ctx, candidates):
        self.calls.append((ctx, candidates))
        return [Judgement(self.scores.pop(0), f"critique {len(self.calls)}") for _ in candidates]


class ListOptimiser(Optimiser):
    """Proposes the given vectors in order, one per epoch; records what it was told."""

    name = "list"
    batched = False

    def __init__(self, proposals):
        self.proposals = list(proposals)
        self.told = []

    def ask(self, n):
        return [self.proposals.pop(0) for _ in range(n)]

    def tell(self, trials):
        self.told.extend(trials)


class Given(OptimiserFactory):
    """An optimiser factory from a plain function (features, answers) -> Optimiser."""

    def __init__(self, make: Callable):
        self.make = make

    def __call__(self, features, answers=None):
        return self.make(features, answers)
