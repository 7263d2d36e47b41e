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

import logging

from .engine import GenerationConfig, Steer
from .judges import JudgeContext, JudgeError, Judgement
from .optimisers import Trial
from .profile import SteeringProfile, provenance
from . import retrieve as retrieval
from .retrieve import FeatureCandidate, probe_prompts
from .features import FeatureIndex
from .gradient import GradientOptimiser, free_share
from .judges import FallbackJudge, LLMJudge, MetricJudge
from .models import index_dir
from .optimisers import LLMOptimiser, NumericOptimiser
from .session import get_runtime, make_profile

log = logging.getLogger(__name__)

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
    free_share: float = 0.0  # share of the steering norm that is not an SAE feature

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


@dataclass
class PhaseEvent:
    """What the loop is doing now (shown by the app and the CLI; not part of --json)."""

    phase: str  # "baseline" | "retrieve" | "screen" | "seed" | "epochs" | "held-out" | "profile"
    message: str


@dataclass
class Best:
    score: float
    weights: list[float]
    outputs: list[str]
    critique: str


GRADIENT_PROMPTS = 4  # the gradient optimiser's objective uses at most this many training prompts


class AutoSteer:
    """One run of the loop. Create, then iterate `run()`; `cancel()` stops after the current step.

    Phases, each a method a test can call alone: `baseline`, `retrieve`, `screen`, `seed`
    (make the optimiser and give it the screening results), `epochs`, `heldout_check`,
    `make_profile`. Whatever happens in an epoch (a judge or optimiser that fails), the run ends
    with a FinalResult holding the best weights found so far."""

    def __init__(self, runtime, config: AutoSteerConfig, judge, optimiser_factory, index=None, client=None, features: Sequence[FeatureCandidate] | None = None):
        self.rt = runtime
        self.engine = runtime.engine
        self.cfg = config
        self.judge = judge
        self.optimiser_factory = optimiser_factory  # (candidates, answers) -> Optimiser
        self.index = index
        self.client = client
        self.features = list(features) if features else None
        self.answers = None  # retrieve.DistillAnswers, shared by retrieval and the gradient optimiser
        self.notes: list[str] = []
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _gen(self, prompts: list[str], weights: list, system=None) -> list[str]:
        cfg = GenerationConfig(max_new_tokens=self.cfg.max_new_tokens)
        return [g.text for g in self.engine.generate(prompts, weights, system=system, config=cfg, cancel=self._cancel)]

    def _weights(self, vec: Sequence[float]) -> Steer:
        return Steer({f.index: float(w) for f, w in zip(self.features, vec)}, getattr(vec, "free", None))

    # ------------------------------------------------------------------ phases

    def baseline(self) -> JudgeContext:
        P = len(self.cfg.prompts)
        return JudgeContext(self.cfg.behavior, self.cfg.prompts, self._gen(self.cfg.prompts, [None] * P))

    def retrieve(self) -> list[FeatureCandidate]:
        cfg = self.cfg
        prompts = probe_prompts(cfg.prompts, exclude=cfg.heldout)
        self.answers = retrieval.distill_answers(self.engine, cfg.behavior, prompts, cancel=self._cancel)
        if self.cancelled:
            return []
        return retrieval.retrieve(self.engine, self.index, cfg.behavior, prompts, cfg.features * cfg.screen, self.client, answers=self.answers)

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

    def seed(self, screened: ScreenResult | None):
        """The optimiser for the kept features, told what each scored alone in screening."""
        optimiser = self.optimiser_factory(self.features, self.answers)
        if screened is not None:
            pos = {c.index: i for i, c in enumerate(self.features)}
            singles = []
            for c, score, critique, outs in zip(screened.candidates, screened.scores, screened.critiques, screened.outputs):
                if c.index in pos:
                    w = [0.0] * len(self.features)
                    w[pos[c.index]] = c.sign * SCREEN_WEIGHT
                    singles.append(Trial(w, score, critique, tuple(outs)))
            optimiser.observe(singles)
        return optimiser

    def epoch(self, epoch: int, optimiser, ctx: JudgeContext, best: Best) -> tuple[EpochResult, Best]:
        """Ask the optimiser, generate every candidate x prompt in ONE batch, judge, tell."""
        P = len(ctx.prompts)
        t0 = time.perf_counter()
        vectors = optimiser.ask(self.cfg.candidates if optimiser.batched else 1)
        t1 = time.perf_counter()
        rows = [self._weights(v) for v in vectors for _ in range(P)]
        texts = self._gen(list(ctx.prompts) * len(vectors), rows)
        t2 = time.perf_counter()
        per_cand = [texts[i * P : (i + 1) * P] for i in range(len(vectors))]
        judgements: list[Judgement] = self.judge.judge_many(ctx, per_cand)
        t3 = time.perf_counter()
        optimiser.tell([Trial(v, j.score, j.critique, tuple(o)) for v, j, o in zip(vectors, judgements, per_cand)])
        i_best = max(range(len(vectors)), key=lambda i: judgements[i].score)
        j = judgements[i_best]
        if j.score > best.score:
            best = Best(j.score, vectors[i_best], per_cand[i_best], j.critique)
        result = EpochResult(
            epoch=epoch, weights=[round(w, 4) for w in vectors[i_best]], outputs=per_cand[i_best], score=j.score,
            critique=j.critique, best_score=best.score, best_weights=[round(w, 4) for w in best.weights],
            candidates=len(vectors),
            seconds={"optimise": round(t1 - t0, 2), "generate": round(t2 - t1, 2), "judge": round(t3 - t2, 2)},
            free_share=self.free_share(vectors[i_best]),
        )
        return result, best

    def free_share(self, vec: Sequence[float]) -> float:
        """The share of a proposal's steering norm that is not an SAE feature (its free vector is
        in units of the basis scale)."""
        free = getattr(vec, "free", None)
        return free_share(self.engine, [f.index for f in self.features], vec,
                          free * self.engine.basis.scale if free is not None else None)

    def heldout_check(self, weights: Steer) -> HeldOutResult:
        """Four conditions on prompts never trained on, in one batched generate."""
        H = list(self.cfg.heldout)
        b = self.cfg.behavior
        n = len(H)
        prompts, rows, systems = four_conditions(H, weights, b)
        texts = self._gen(prompts, rows, system=systems)
        outs = {c: texts[i * n : (i + 1) * n] for i, c in enumerate(CONDITIONS)}
        ctx = JudgeContext(b, H, outs["unsteered"])
        js = self.judge.judge_many(ctx, [outs[c] for c in CONDITIONS])
        return HeldOutResult(
            H, {c: j.score for c, j in zip(CONDITIONS, js)}, outs, {c: j.critique for c, j in zip(CONDITIONS, js)},
            {c: j.parts for c, j in zip(CONDITIONS, js)},
        )

    def make_profile(self, best: Best, history: list[float], heldout: HeldOutResult | None, stopped: str,
                     screened: ScreenResult | None, optimiser_name: str) -> SteeringProfile:
        cfg = self.cfg
        steer = self._weights(best.weights) if best.score > float("-inf") else Steer()
        # The held-out check decides whether the profile answers with the behaviour as a system prompt too.
        mode = "steered"
        if heldout is not None and heldout.scores["prompted_steered"] > heldout.scores["steered"]:
            mode = "prompted_steered"
        free = steer.free
        labels = {f.index: f.label for f in self.features}
        return make_profile(
            self.rt, cfg.name, cfg.behavior, {i: round(w, 4) for i, w in steer.items()}, labels,
            prompts=cfg.prompts,
            scores={"epochs": history, "best": best.score if history else None, "held_out": heldout.scores if heldout else None},
            provenance=provenance(
                getattr(self.judge, "name", "?"), optimiser_name, stopped=stopped,
                sources={str(f.index): f.source for f in self.features}, notes=self.notes,
                **({"screened": {str(c.index): sc for c, sc in zip(screened.candidates, screened.scores)}} if screened else {}),
            ),
            mode=mode, system_prompt=cfg.behavior,
            free_direction=[round(float(x), 6) for x in free] if free is not None else None,
            free_share=self.free_share(best.weights),
        )

    # ------------------------------------------------------------------ the run

    def run(self) -> Iterator[PhaseEvent | ScreenResult | EpochResult | FinalResult]:
        cfg = self.cfg
        yield PhaseEvent("baseline", "answering the training prompts without steering")
        ctx = self.baseline()
        screened: ScreenResult | None = None
        if self.features is None:
            yield PhaseEvent("retrieve", "finding candidate features: answers with and without the behaviour, gradient attribution, contrastive activations, label search")
            pool = [] if self.cancelled else self.retrieve()
            if len(pool) > cfg.features and not self.cancelled:
                yield PhaseEvent("screen", f"steering with each of {len(pool)} candidates alone")
                screened = self.screen(pool, ctx)
                if screened is not None:
                    yield screened
                    pool = screened.candidates
            self.features = pool[: cfg.features]
        if not self.features:
            if self.cancelled:
                profile = make_profile(self.rt, cfg.name, cfg.behavior, {}, prompts=cfg.prompts,
                                       scores={"epochs": [], "best": None, "held_out": None},
                                       provenance=provenance(getattr(self.judge, "name", "?"), stopped="cancelled"))
                yield FinalResult(profile, [], None, "cancelled")
                return
            raise RuntimeError("no candidate features were found for this behaviour")
        yield PhaseEvent("seed", f"preparing the optimiser for {len(self.features)} features")
        if self.answers is None and self.optimiser_needs_answers:
            self.answers = retrieval.distill_answers(self.engine, cfg.behavior, cfg.prompts[:GRADIENT_PROMPTS], cancel=self._cancel)
        optimiser = self.seed(screened)
        best = Best(float("-inf"), [0.0] * len(self.features), ctx.baseline, "")
        history: list[float] = []
        stopped = "epochs"
        for epoch in range(1, cfg.epochs + 1):
            if self.cancelled:
                stopped = "cancelled"
                break
            yield PhaseEvent("epochs", f"epoch {epoch} of {cfg.epochs}")
            try:
                result, best = self.epoch(epoch, optimiser, ctx, best)
            except Exception as exc:  # noqa: BLE001 - keep what the run has and say why it stopped
                if self.cancelled:
                    stopped = "cancelled"
                    break
                log.warning("epoch %d failed: %s", epoch, exc)
                self.notes.append(f"epoch {epoch} failed: {exc}")
                stopped = f"error: {exc}"
                break
            if self.cancelled:
                stopped = "cancelled"
                break
            history.append(result.score)
            yield result
            if best.score >= cfg.threshold:
                stopped = "threshold"
                break
        heldout = None
        if not self.cancelled and cfg.heldout and best.score > float("-inf"):
            yield PhaseEvent("held-out", f"checking on {len(cfg.heldout)} prompts it never saw: unsteered, prompted, steered, prompted + steered")
            try:
                heldout = self.heldout_check(self._weights(best.weights))
            except Exception as exc:  # noqa: BLE001
                if not self.cancelled:
                    self.notes.append(f"held-out check failed: {exc}")
        if self.cancelled:  # stopped during the held-out check: its answers are cut short
            heldout = None
        profile = self.make_profile(best, history, heldout, stopped if not self.cancelled else "cancelled", screened,
                                    self.optimiser_name(optimiser))
        yield FinalResult(profile, self.features, heldout, stopped if not self.cancelled else "cancelled", screened)

    @property
    def optimiser_needs_answers(self) -> bool:
        return bool(getattr(self.optimiser_factory, "needs_answers", False))

    @staticmethod
    def optimiser_name(optimiser) -> str:
        return getattr(optimiser, "name", type(optimiser).__name__)


CONDITIONS = ("unsteered", "prompted", "steered", "prompted_steered")


def four_conditions(prompts: Sequence[str], weights, behavior: str) -> tuple[list[str], list, list[str | None]]:
    """The batch layout of the four conditions (prompts, steering rows, system prompts), in
    CONDITIONS order, for one batched generate (shared with quora_kids.evaluate)."""
    n = len(prompts)
    return (list(prompts) * 4, [None] * (2 * n) + [weights] * (2 * n),
            [None] * n + [behavior] * n + [None] * n + [behavior] * n)


JUDGES = ("metric", "llm")
OPTIMISERS = ("gradient", "numeric", "llm")


@dataclass
class OptimiserFactory:
    """Makes the named optimiser for the kept features (best first, from screening)."""

    kind: str
    behavior: str
    seed: int = 0
    client: object = None
    engine: object = None

    @property
    def needs_answers(self) -> bool:
        return self.kind == "gradient"

    def __call__(self, cands: Sequence[FeatureCandidate], answers=None):
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


def make_autosteer(config: AutoSteerConfig, judge: str = "metric", optimiser: str = "numeric", client=None, preset: str | None = None, features: Sequence[FeatureCandidate] | None = None) -> AutoSteer:
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
    try:
        index = FeatureIndex.load(index_dir(rt.preset))
    except FileNotFoundError:
        index = None
    metric = MetricJudge(rt.engine)
    j = FallbackJudge(LLMJudge(client), metric) if judge == "llm" else metric
    factory = OptimiserFactory(optimiser, config.behavior, config.seed, client, rt.engine)
    return AutoSteer(rt, config, j, factory, index=index, client=client, features=features)
