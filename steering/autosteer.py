"""The auto-steering loop: behaviour -> candidate features -> epochs of generate/judge/optimise.

`AutoSteer.run()` is a generator: one `EpochResult` per epoch (stream it to a screen), then one
`FinalResult` with the held-out check (unsteered / prompted / steered / prompted+steered) and the
profile. All K candidates x P prompts of an epoch come out of one batched generate call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from .engine import GenerationConfig
from .judges import JudgeContext, Judgement
from .optimisers import Trial
from .profile import SteeringProfile, provenance
from .retrieve import FeatureCandidate

# Questions the loop never trains on, for the held-out check (general, child-askable topics).
DEFAULT_HELDOUT = [
    "How do airplanes stay in the air?",
    "Why do we have seasons?",
    "What is electricity?",
    "How does the heart work?",
    "Why is the ocean salty?",
    "What are stars made of?",
]


@dataclass
class AutoSteerConfig:
    behavior: str
    prompts: list[str]
    epochs: int = 8
    features: int = 5
    candidates: int = 4  # weight vectors per epoch (numeric optimiser)
    threshold: float = 7.0  # early stop when the best score reaches this
    max_new_tokens: int = 64
    heldout: list[str] = field(default_factory=lambda: list(DEFAULT_HELDOUT))
    name: str = ""
    seed: int = 0

    def __post_init__(self):
        self.behavior = (self.behavior or "").strip()
        self.prompts = [p.strip() for p in self.prompts if p and p.strip()]
        if not self.behavior:
            raise ValueError("describe a behaviour, e.g. 'Explain things in a way that children can understand'")
        if len(self.behavior) > 500:
            raise ValueError("the behaviour description is too long (500 characters at most)")
        if not self.prompts:
            raise ValueError("give at least one training prompt")
        if any(len(p) > 2000 for p in self.prompts):
            raise ValueError("training prompts must be at most 2000 characters each")
        if not 1 <= self.epochs <= 100:
            raise ValueError("epochs must be between 1 and 100")
        if not 1 <= self.features <= 32:
            raise ValueError("features must be between 1 and 32")
        if not 1 <= self.candidates <= 16:
            raise ValueError("candidates must be between 1 and 16")
        train = set(self.prompts)
        self.heldout = [h for h in self.heldout if h not in train]
        self.name = self.name or _slug(self.behavior)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "profile"


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


@dataclass
class FinalResult:
    profile: SteeringProfile
    features: list[FeatureCandidate]
    heldout: HeldOutResult | None
    stopped: str  # "threshold" | "epochs" | "cancelled"


class AutoSteer:
    """One run of the loop. Create, then iterate `run()`; `cancel()` stops after the current step."""

    def __init__(self, runtime, config: AutoSteerConfig, judge, optimiser_factory, index=None, client=None, features: Sequence[FeatureCandidate] | None = None):
        self.rt = runtime
        self.engine = runtime.engine
        self.cfg = config
        self.judge = judge
        self.optimiser_factory = optimiser_factory  # (candidates) -> Optimiser
        self.index = index
        self.client = client
        self.features = list(features) if features else None
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _gen(self, prompts: list[str], weights: list[dict | None], system=None) -> list[str]:
        cfg = GenerationConfig(max_new_tokens=self.cfg.max_new_tokens)
        return [g.text for g in self.engine.generate(prompts, weights, system=system, config=cfg, cancel=self._cancel)]

    def _weights(self, vec: Sequence[float]) -> dict[int, float]:
        return {f.index: float(w) for f, w in zip(self.features, vec)}

    def run(self) -> Iterator[EpochResult | FinalResult]:
        from .retrieve import retrieve

        cfg = self.cfg
        if self.features is None:
            self.features = retrieve(self.engine, self.index, cfg.behavior, cfg.prompts, cfg.features, self.client)
        if not self.features:
            raise RuntimeError("no candidate features were found for this behaviour")
        k = len(self.features)
        optimiser = self.optimiser_factory(self.features)
        P = len(cfg.prompts)
        baseline = self._gen(cfg.prompts, [None] * P)
        ctx = JudgeContext(cfg.behavior, cfg.prompts, baseline)
        best: tuple[float, list[float], list[str], str] = (float("-inf"), [0.0] * k, baseline, "")
        history: list[float] = []
        stopped = "epochs"
        for epoch in range(1, cfg.epochs + 1):
            if self.cancelled:
                stopped = "cancelled"
                break
            t0 = time.perf_counter()
            n = cfg.candidates if getattr(optimiser, "name", "") == "numeric" else 1
            vectors = optimiser.ask(n)
            t1 = time.perf_counter()
            # K candidates x P prompts in ONE batched generate.
            rows = [self._weights(v) for v in vectors for _ in range(P)]
            texts = self._gen(cfg.prompts * len(vectors), rows)
            if self.cancelled:
                stopped = "cancelled"
                break
            t2 = time.perf_counter()
            per_cand = [texts[i * P : (i + 1) * P] for i in range(len(vectors))]
            judgements: list[Judgement] = self.judge.judge_many(ctx, per_cand)
            t3 = time.perf_counter()
            optimiser.tell([Trial(v, j.score, j.critique, tuple(o)) for v, j, o in zip(vectors, judgements, per_cand)])
            i_best = max(range(len(vectors)), key=lambda i: judgements[i].score)
            j = judgements[i_best]
            if j.score > best[0]:
                best = (j.score, vectors[i_best], per_cand[i_best], j.critique)
            history.append(j.score)
            yield EpochResult(
                epoch=epoch,
                weights=[round(w, 4) for w in vectors[i_best]],
                outputs=per_cand[i_best],
                score=j.score,
                critique=j.critique,
                best_score=best[0],
                best_weights=[round(w, 4) for w in best[1]],
                candidates=len(vectors),
                seconds={"optimise": round(t1 - t0, 2), "generate": round(t2 - t1, 2), "judge": round(t3 - t2, 2)},
            )
            if best[0] >= cfg.threshold:
                stopped = "threshold"
                break
        best_weights = self._weights(best[1]) if best[0] > float("-inf") else {}
        heldout = None if self.cancelled or not cfg.heldout else self.heldout_check(best_weights)
        from .session import make_profile

        labels = {f.index: f.label for f in self.features}
        profile = make_profile(
            self.rt, cfg.name, cfg.behavior, {i: round(w, 4) for i, w in best_weights.items()}, labels,
            prompts=cfg.prompts,
            scores={"epochs": history, "best": best[0] if history else None, "held_out": heldout.scores if heldout else None},
            provenance=provenance(
                getattr(self.judge, "name", "?"), self.optimiser_name(optimiser),
                stopped=stopped, sources={str(f.index): f.source for f in self.features},
            ),
        )
        yield FinalResult(profile, self.features, heldout, stopped if not self.cancelled else "cancelled")

    @staticmethod
    def optimiser_name(optimiser) -> str:
        return getattr(optimiser, "name", type(optimiser).__name__)

    def heldout_check(self, weights: dict[int, float]) -> HeldOutResult:
        """Four conditions on prompts never trained on, in one batched generate."""
        H = list(self.cfg.heldout)
        b = self.cfg.behavior
        n = len(H)
        conds = ["unsteered", "prompted", "steered", "prompted_steered"]
        prompts = H * 4
        systems = [None] * n + [b] * n + [None] * n + [b] * n
        rows = [None] * (2 * n) + [weights] * (2 * n)
        texts = self._gen(prompts, rows, system=systems)
        outs = {c: texts[i * n : (i + 1) * n] for i, c in enumerate(conds)}
        ctx = JudgeContext(b, H, outs["unsteered"])
        js = self.judge.judge_many(ctx, [outs[c] for c in conds])
        return HeldOutResult(
            H, {c: j.score for c, j in zip(conds, js)}, outs, {c: j.critique for c, j in zip(conds, js)},
            {c: j.parts for c, j in zip(conds, js)},
        )


def make_autosteer(config: AutoSteerConfig, judge: str = "metric", optimiser: str = "numeric", client=None, preset: str | None = None, features: Sequence[FeatureCandidate] | None = None) -> AutoSteer:
    """An AutoSteer on the shared runtime with the named judge and optimiser.

    `client` (an llm.LLMClient) is required for judge="llm" or optimiser="llm"; when given it also
    adds LLM-written sub-queries to retrieval.
    """
    from .features import FeatureIndex
    from .judges import LLMJudge, MetricJudge
    from .models import index_dir
    from .optimisers import LLMOptimiser, NumericOptimiser
    from .session import get_runtime

    if judge not in ("metric", "llm") or optimiser not in ("numeric", "llm"):
        raise ValueError("judge is 'metric' or 'llm'; optimiser is 'numeric' or 'llm'")
    if (judge == "llm" or optimiser == "llm") and client is None:
        raise ValueError("the LLM judge and optimiser need an OpenAI-compatible endpoint (base URL and model)")
    rt = get_runtime(preset)
    try:
        index = FeatureIndex.load(index_dir(rt.preset))
    except FileNotFoundError:
        index = None
    j = LLMJudge(client) if judge == "llm" else MetricJudge(rt.engine)

    def factory(cands: Sequence[FeatureCandidate]):
        initial = [c.sign * 0.5 for c in cands]
        if optimiser == "llm":
            return LLMOptimiser(client, config.behavior, [c.label for c in cands], initial, seed=config.seed)
        return NumericOptimiser(len(cands), [initial, [c.sign * 0.25 for c in cands]], seed=config.seed)

    return AutoSteer(rt, config, j, factory, index=index, client=client, features=features)
