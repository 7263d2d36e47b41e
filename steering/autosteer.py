"""The auto-steering loop: behaviour -> candidate features -> epochs of generate/judge/optimise.

`AutoSteer.run()` is a generator: one `ScreenResult` when it has retrieved and screened candidate
features, one `EpochResult` per epoch (stream it to a screen), then one `FinalResult` with the
held-out check (unsteered / prompted / steered / prompted+steered) and the profile. All K candidates
x P prompts of an epoch come out of one batched generate call.

Screening: retrieval proposes `features x screen` candidates; each is tried alone at
`SCREEN_WEIGHT` (its suggested sign) on the training prompts, in batched generates, and the
judge's best `features` go on to the loop. Labels and activation differences say what a latent is
about; only steering with it says whether it moves the answers the right way without derailing them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

from .engine import GenerationConfig
from .judges import JudgeContext, JudgeError, Judgement
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


SCREEN_WEIGHT = 0.3  # single-feature strength for screening (calibrated units)
SCREEN_PROMPTS = 4  # screening uses at most this many of the training prompts
SCREEN_BATCH = 128  # rows per screening generate
NUMERIC_BOUND = 0.5  # the numeric optimiser searches [-0.5, 0.5] per weight (see NumericOptimiser)


@dataclass
class AutoSteerConfig:
    behavior: str
    prompts: list[str]
    epochs: int = 8
    features: int = 5
    screen: int = 6  # retrieve features x screen candidates, keep the best `features` (1 = no screening)
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
        if not 1 <= self.screen <= 8:
            raise ValueError("screen must be between 1 and 8")
        if not 1 <= self.candidates <= 16:
            raise ValueError("candidates must be between 1 and 16")
        train = set(self.prompts)
        self.heldout = [h for h in self.heldout if h not in train]
        self.name = self.name or _slug(self.behavior)


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "profile"


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
    screened: ScreenResult | None = None


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

    def screen(self, pool: Sequence[FeatureCandidate], ctx: JudgeContext) -> ScreenResult | None:
        """Each candidate alone at SCREEN_WEIGHT on the first SCREEN_PROMPTS training prompts
        (batched generates of up to SCREEN_BATCH rows). None if cancelled meanwhile.

        Its scores are on those prompts only, so they guide the choice of features and the
        optimiser's first guesses but are not compared with the epochs' scores."""
        t0 = time.perf_counter()
        ctx = JudgeContext(ctx.behavior, ctx.prompts[:SCREEN_PROMPTS], ctx.baseline[:SCREEN_PROMPTS])
        P = len(ctx.prompts)
        rows = [{c.index: c.sign * SCREEN_WEIGHT} for c in pool for _ in range(P)]
        prompts = list(ctx.prompts) * len(pool)
        texts: list[str] = []
        for start in range(0, len(rows), SCREEN_BATCH):  # bounded memory for large pools
            if self.cancelled:
                return None
            texts += self._gen(prompts[start : start + SCREEN_BATCH], rows[start : start + SCREEN_BATCH])
        if self.cancelled:
            return None
        per_cand = [texts[i * P : (i + 1) * P] for i in range(len(pool))]
        try:
            js = self.judge.judge_many(ctx, per_cand)
        except JudgeError:
            # One unparseable verdict should not sink the run: judge one by one, 0 for failures.
            js = [self._judge_or_zero(ctx, outs) for outs in per_cand]
        order = sorted(range(len(pool)), key=lambda i: -js[i].score)
        return ScreenResult([pool[i] for i in order], [js[i].score for i in order], [js[i].critique for i in order],
                            min(self.cfg.features, len(pool)), round(time.perf_counter() - t0, 2),
                            [per_cand[i] for i in order])

    def _judge_or_zero(self, ctx: JudgeContext, outs: list[str]) -> Judgement:
        try:
            return self.judge.judge_many(ctx, [outs])[0]
        except JudgeError as exc:
            return Judgement(0.0, f"not judged: {exc}")

    def run(self) -> Iterator[ScreenResult | EpochResult | FinalResult]:
        from .retrieve import probe_prompts, retrieve

        cfg = self.cfg
        P = len(cfg.prompts)
        baseline = self._gen(cfg.prompts, [None] * P)
        ctx = JudgeContext(cfg.behavior, cfg.prompts, baseline)
        screened: ScreenResult | None = None
        if self.features is None:
            pool = [] if self.cancelled else retrieve(
                self.engine, self.index, cfg.behavior, probe_prompts(cfg.prompts, exclude=cfg.heldout),
                cfg.features * cfg.screen, self.client)
            if len(pool) > cfg.features and not self.cancelled:
                screened = self.screen(pool, ctx)
                if screened is not None:
                    yield screened
                    pool = screened.candidates
            self.features = pool[: cfg.features]
        if not self.features:
            if self.cancelled:
                from .session import make_profile

                profile = make_profile(self.rt, cfg.name, cfg.behavior, {}, prompts=cfg.prompts,
                                       scores={"epochs": [], "best": None, "held_out": None},
                                       provenance=provenance(getattr(self.judge, "name", "?"), stopped="cancelled"))
                yield FinalResult(profile, [], None, "cancelled")
                return
            raise RuntimeError("no candidate features were found for this behaviour")
        k = len(self.features)
        optimiser = self.optimiser_factory(self.features)
        if screened is not None and hasattr(optimiser, "observe"):
            # What each kept feature scored alone is evidence the optimiser can use.
            pos = {c.index: i for i, c in enumerate(self.features)}
            singles = []
            for c, score, critique, outs in zip(screened.candidates, screened.scores, screened.critiques, screened.outputs):
                if c.index in pos:
                    w = [0.0] * k
                    w[pos[c.index]] = c.sign * SCREEN_WEIGHT
                    singles.append(Trial(w, score, critique, tuple(outs)))
            optimiser.observe(singles)
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
        if self.cancelled:  # stopped during the held-out check: its answers are cut short
            heldout = None
        from .session import make_profile

        labels = {f.index: f.label for f in self.features}
        profile = make_profile(
            self.rt, cfg.name, cfg.behavior, {i: round(w, 4) for i, w in best_weights.items()}, labels,
            prompts=cfg.prompts,
            scores={"epochs": history, "best": best[0] if history else None, "held_out": heldout.scores if heldout else None},
            provenance=provenance(
                getattr(self.judge, "name", "?"), self.optimiser_name(optimiser),
                stopped=stopped, sources={str(f.index): f.source for f in self.features},
                **({"screened": {str(c.index): sc for c, sc in zip(screened.candidates, screened.scores)}} if screened else {}),
            ),
        )
        yield FinalResult(profile, self.features, heldout, stopped if not self.cancelled else "cancelled", screened)

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
        # Candidates come best first (screened): start from the best few together, gently.
        def top(n: int, w: float) -> list[float]:
            return [c.sign * w if i < n else 0.0 for i, c in enumerate(cands)]

        k = len(cands)
        if optimiser == "llm":
            return LLMOptimiser(client, config.behavior, [c.label for c in cands], top(2, 0.2), seed=config.seed)
        return NumericOptimiser(k, [top(2, 0.2), top(k, 0.15), top(3, 0.2), top(k, 0.25)], seed=config.seed, bound=NUMERIC_BOUND)

    return AutoSteer(rt, config, j, factory, index=index, client=client, features=features)
