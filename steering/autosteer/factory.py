"""Assembling a run from names: the judge ("metric" | "llm"), the optimiser ("numeric" |
"gradient" | "llm") and the shared runtime, as the app and the command line ask for them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..llm import LLMClient
from ..runtime.engine import SteeringEngine
from ..runtime.shared import get_runtime
from ..sae.index import load_index
from .config import JUDGES, OPTIMISERS, AutoSteerConfig
from .gradient import GradientOptimiser
from .judges import Judge, MetricJudge
from .llm_judge import FallbackJudge, LLMJudge
from .loop import GRADIENT_PROMPTS, AutoSteer
from .optimisers import LLMOptimiser, NumericOptimiser, Optimiser, OptimiserFactory
from .retrieve import FeatureCandidate
from .targets import DistillAnswers

NUMERIC_BOUND = 0.5  # the numeric optimiser searches [-0.5, 0.5] per weight (see NumericOptimiser)


@dataclass
class NamedOptimiserFactory(OptimiserFactory):
    """Makes the named optimiser for the kept features (best first, from screening)."""

    kind: str
    behavior: str
    seed: int = 0
    client: LLMClient | None = None
    engine: SteeringEngine | None = None

    @property
    def needs_answers(self) -> bool:
        return self.kind == "gradient"

    def __call__(self, cands: Sequence[FeatureCandidate], answers: DistillAnswers | None = None) -> Optimiser:
        # Start from the best few together, gently.
        def top(n: int, w: float) -> list[float]:
            return [c.sign * w if i < n else 0.0 for i, c in enumerate(cands)]

        k = len(cands)
        if self.kind == "llm":
            return LLMOptimiser(self.client, self.behavior, [c.label for c in cands], top(2, 0.2), seed=self.seed)
        if self.kind == "gradient":
            n = min(GRADIENT_PROMPTS, len(answers.prompts))
            return GradientOptimiser(self.engine, answers.prompts[:n], answers.targets[:n], answers.plains[:n],
                                     [c.index for c in cands], top(2, 0.1))
        return NumericOptimiser(k, [top(2, 0.2), top(k, 0.15), top(3, 0.2), top(k, 0.25)], seed=self.seed, bound=NUMERIC_BOUND)


def make_judge(judge: str, engine: SteeringEngine, client: LLMClient | None = None) -> Judge:
    """The metric judge, or the LLM judge falling back to it for any candidate it cannot score."""
    metric = MetricJudge(engine)
    return FallbackJudge(LLMJudge(client), metric) if judge == "llm" else metric


def make_autosteer(config: AutoSteerConfig, judge: str = "metric", optimiser: str = "gradient", client: LLMClient | None = None,
                   preset: str | None = None, features: Sequence[FeatureCandidate] | None = None) -> AutoSteer:
    """An AutoSteer on the shared runtime with the named judge and optimiser.

    `client` (an llm.LLMClient) is required for judge="llm" or optimiser="llm"; when given it also
    adds LLM-written sub-queries to retrieval. The LLM judge falls back to the metric judge for
    any candidate it cannot score.
    """
    if judge not in JUDGES or optimiser not in OPTIMISERS:
        raise ValueError(f"judge is one of {', '.join(JUDGES)}; optimiser is one of {', '.join(OPTIMISERS)}")
    if (judge == "llm" or optimiser == "llm") and client is None:
        raise ValueError("the LLM judge and optimiser need an OpenAI-compatible endpoint (base URL and model)")
    rt = get_runtime(preset)
    factory = NamedOptimiserFactory(optimiser, config.behavior, config.seed, client, rt.engine)
    return AutoSteer(rt, config, make_judge(judge, rt.engine, client), factory, index=load_index(rt.preset), client=client,
                     features=features)
