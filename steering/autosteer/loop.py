"""The auto-steering loop: behaviour -> candidate features -> epochs of generate/judge/optimise.

`AutoSteer.run()` is a generator: one `ScreenResult` when it has retrieved and screened candidate
features, one `EpochResult` per epoch (stream it to a screen), then one `FinalResult` with the
held-out check and the profile. An epoch's K candidates x P prompts are one batched generate.

Screening: retrieval proposes `features x screen` candidates; each is tried alone at
`SCREEN_WEIGHT` (its suggested sign) on the training prompts, in batched generates, and the
judge's best `features` go on to the loop (labels say what a latent is about; only steering with it
says what it does). Then the epochs optimise steering alone or on top of the behaviour as a system
prompt, and a behaviour that names a character may get an in-character opening (`opening.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

from ..artefacts.profile import HEADS_UP, SteeringProfile, heads_up_note
from ..runtime.basis import Steer
from ..runtime.engine import GenerationConfig
from ..runtime.shared import Runtime
from ..sae.index import FeatureIndex
from . import finish, opening, targets
from . import retrieve as retrieval
from .config import AutoSteerConfig
from .judges import Judge, JudgeContext, JudgeError, Judgement
from .mode import decide
from .objective import free_share
from .optimisers import Optimiser, OptimiserFactory, Trial, WeightVector
from .results import Best, EpochResult, FinalResult, HeldOutResult, PhaseEvent, ScreenResult
from .retrieve import FeatureCandidate, probe_prompts

log = logging.getLogger(__name__)

SCREEN_WEIGHT = 0.3  # single-feature strength for screening (calibrated units)
SCREEN_PROMPTS = 4  # screening uses at most this many of the training prompts
SCREEN_BATCH = 128  # rows per screening generate
GRADIENT_PROMPTS = 4  # the gradient optimiser's objective uses at most this many training prompts

Event = PhaseEvent | ScreenResult | EpochResult | FinalResult


class AutoSteer:
    """One run of the loop. Create, then iterate `run()`; `cancel()` stops after the current step.

    Phases, each a method a test can call alone: `baseline`, `retrieve`, `screen`, `seed` (make
    the optimiser, give it the screening results), `epoch`, `heldout_check`, `make_profile`. Whatever
    happens in an epoch (a failing judge or optimiser), the run ends with its best weights so far."""

    def __init__(self, runtime: Runtime, config: AutoSteerConfig, judge: Judge, optimiser_factory: OptimiserFactory,
                 index: FeatureIndex | None = None, client=None, features: Sequence[FeatureCandidate] | None = None):
        self.rt, self.engine, self.cfg = runtime, runtime.engine, config
        self.judge, self.optimiser_factory, self.index = judge, optimiser_factory, index
        self.client = client  # llm.LLMClient: LLM-written retrieval queries when given
        self.features = list(features) if features else None
        self.answers: targets.DistillAnswers | None = None  # shared by retrieval and the gradient optimiser
        self.prompted: list[str] = []  # the training prompts' answers with the behaviour as a system prompt
        self.system: str | None = None  # the system prompt the epochs answer with (see choose_mode)
        self.prompted_score: float | None = None  # the prompted answers' score on the screening prompts
        self.notes: list[str] = []
        self.opening: opening.Opening | None = None  # an in-character opening, when one is kept (opening.py)
        self.stop_event = threading.Event()
        if client is not None:  # Stop also abandons an endpoint call in flight (llm.LLMClient.chat)
            client.cancel = self.stop_event

    def cancel(self) -> None:
        self.stop_event.set()

    @property
    def cancelled(self) -> bool:
        return self.stop_event.is_set()

    def gen(self, prompts: list[str], weights: list, system=None) -> list[str]:
        cfg = GenerationConfig(max_new_tokens=self.cfg.max_new_tokens)
        return [g.text for g in self.engine.generate(prompts, weights, system=system, config=cfg, cancel=self.stop_event)]

    @property
    def trained_on(self) -> str:
        """The condition the epochs answer in (set by choose_mode)."""
        return "prompted_steered" if self.system else "steered"

    def steer_of(self, vec: Sequence[float]) -> Steer:
        o = self.opening
        return Steer({f.index: float(w) for f, w in zip(self.features, vec)}, WeightVector.of(vec).free,
                     o.direction if o else None, o.tokens if o else 0)

    # ------------------------------------------------------------------ phases

    def baseline(self) -> JudgeContext:
        """Unsteered answers (what the judge compares with), and, unless the mode is "steered",
        the prompted answers in the same batch."""
        cfg = self.cfg
        P = len(cfg.prompts)
        # Needed to choose the mode after screening (given features aren't screened) or to seed an optimiser on top of the prompt.
        if not (cfg.mode == "prompted_steered" or (cfg.mode == "auto" and self.features is None)):
            return JudgeContext(cfg.behavior, cfg.prompts, self.gen(cfg.prompts, [None] * P))
        texts = self.gen(cfg.prompts * 2, [None] * (2 * P), system=[None] * P + [cfg.behavior] * P)
        self.prompted = texts[P:]
        return JudgeContext(cfg.behavior, cfg.prompts, texts[:P])

    def choose_mode(self, ctx: JudgeContext, screened: ScreenResult | None) -> str:
        """Which answers the epochs optimise (see `mode.decide`); sets `self.system` and returns a
        sentence for the screen. Judges the prompted answers on the screening prompts when the
        decision or the optimiser's first observation needs them."""
        cfg = self.cfg
        best_alone = screened.scores[0] if screened is not None and screened.scores else None
        if self.prompted and (cfg.mode == "prompted_steered" or (cfg.mode == "auto" and best_alone is not None)):
            sub = JudgeContext(ctx.behavior, ctx.prompts[:SCREEN_PROMPTS], ctx.baseline[:SCREEN_PROMPTS])
            self.prompted_score = self._judge_or_zero(sub, self.prompted[:SCREEN_PROMPTS]).score
        mode, why = decide(cfg.mode, self.prompted_score, best_alone)
        self.system = cfg.behavior if mode == "prompted_steered" else None
        return why

    def retrieve(self) -> list[FeatureCandidate]:
        cfg = self.cfg
        prompts = probe_prompts(cfg.prompts, exclude=cfg.heldout)
        self.answers = targets.distill_answers(self.engine, cfg.behavior, prompts, cancel=self.stop_event, judge=self.judge, seed=cfg.seed)
        if self.cancelled:
            return []
        self.notes += [self.answers.note] if self.answers.note else []
        return retrieval.retrieve(self.engine, self.index, cfg.behavior, prompts, cfg.features * cfg.screen, self.client, answers=self.answers)

    def screen(self, pool: Sequence[FeatureCandidate], ctx: JudgeContext) -> ScreenResult | None:
        """Each candidate alone at SCREEN_WEIGHT on the first SCREEN_PROMPTS training prompts (generates
        of up to SCREEN_BATCH rows); None if cancelled meanwhile. Its scores (those prompts only) guide
        the choice of features and the optimiser's first guesses, never compared with the epochs'."""
        t0 = time.perf_counter()
        ctx = JudgeContext(ctx.behavior, ctx.prompts[:SCREEN_PROMPTS], ctx.baseline[:SCREEN_PROMPTS])
        P = len(ctx.prompts)
        rows = [{c.index: c.sign * SCREEN_WEIGHT} for c in pool for _ in range(P)]
        prompts = list(ctx.prompts) * len(pool)
        texts: list[str] = []
        for start in range(0, len(rows), SCREEN_BATCH):  # bounded memory for large pools
            if self.cancelled:
                return None
            texts += self.gen(prompts[start : start + SCREEN_BATCH], rows[start : start + SCREEN_BATCH])
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

    def seed(self, screened: ScreenResult | None) -> Optimiser:
        """The optimiser for the kept features, told what each scored alone in screening."""
        if self.answers is None and self.optimiser_factory.needs_answers:
            self.answers = targets.distill_answers(self.engine, self.cfg.behavior, self.cfg.prompts[:GRADIENT_PROMPTS], cancel=self.stop_event, judge=self.judge, seed=self.cfg.seed)
        optimiser = self.optimiser_factory(self.features, self.answers)
        if self.system is not None:
            # Screening steered without the prompt: its scores say nothing about steering on top of
            # it. What the optimiser learns first: the prompt alone (all weights 0) and its score.
            if self.prompted_score is not None:
                zero = WeightVector([0.0] * len(self.features))
                optimiser.observe([Trial(zero, self.prompted_score, "", tuple(self.prompted[:SCREEN_PROMPTS]))])
        elif screened is not None:
            pos = {c.index: i for i, c in enumerate(self.features)}
            singles = []
            for c, score, critique, outs in zip(screened.candidates, screened.scores, screened.critiques, screened.outputs):
                if c.index in pos:
                    w = [0.0] * len(self.features)
                    w[pos[c.index]] = c.sign * SCREEN_WEIGHT
                    singles.append(Trial(WeightVector(w), score, critique, tuple(outs)))
            optimiser.observe(singles)
        return optimiser

    def epoch(self, epoch: int, optimiser: Optimiser, ctx: JudgeContext, best: Best) -> tuple[EpochResult, Best]:
        """Ask the optimiser, generate every candidate x prompt in ONE batch, judge, tell."""
        P = len(ctx.prompts)
        t0 = time.perf_counter()
        vectors = [WeightVector.of(v) for v in optimiser.ask(self.cfg.candidates if optimiser.batched else 1)]
        t1 = time.perf_counter()
        rows = [self.steer_of(v) for v in vectors for _ in range(P)]
        texts = self.gen(list(ctx.prompts) * len(vectors), rows, system=self.system)
        t2 = time.perf_counter()
        per_cand = [texts[i * P : (i + 1) * P] for i in range(len(vectors))]
        judgements = self.judge.judge_many(ctx, per_cand)
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
            condition=self.trained_on,
        )
        return result, best

    def free_share(self, vec: Sequence[float]) -> float:
        """The share of a proposal's steering norm that is not an SAE feature (its free vector is
        in units of the basis scale)."""
        free = WeightVector.of(vec).free
        return free_share(self.engine, [f.index for f in self.features], vec,
                          free * self.engine.basis.scale if free is not None else None)

    def heldout_check(self, weights: Steer, prompts: Sequence[str] | None = None) -> HeldOutResult:
        return finish.heldout_check(self, weights, prompts)  # four conditions on prompts never trained on

    def make_profile(self, best: Best, history: list[float], heldout: HeldOutResult | None, stopped: str,
                     screened: ScreenResult | None, optimiser_name: str) -> SteeringProfile:
        return finish.run_profile(self, best, history, heldout, stopped, screened, optimiser_name)

    # ------------------------------------------------------------------ the run

    def run(self) -> Iterator[Event]:
        yield PhaseEvent("baseline", "answering the training prompts without steering")
        ctx = self.baseline()
        screened = yield from self._choose_features(ctx)
        if not self.features:
            if self.cancelled:
                yield finish.nothing_found(self)
                return
            raise RuntimeError("no candidate features were found for this behaviour")
        yield PhaseEvent("mode", self.choose_mode(ctx, screened))
        yield PhaseEvent("seed", f"preparing the optimiser for {len(self.features)} features")
        optimiser = self.seed(screened)
        best = Best(float("-inf"), WeightVector([0.0] * len(self.features)), ctx.baseline, "")
        history: list[float] = []
        best, stopped = yield from self._epochs(optimiser, ctx, best, history)
        best = yield from opening.phase(self, ctx, best)  # an in-character opening, for a behaviour naming a character
        heldout = yield from self._heldout(best)
        stopped = stopped if not self.cancelled else "cancelled"
        profile = self.make_profile(best, history, heldout, stopped, screened, optimiser.name)
        yield FinalResult(profile, self.features, heldout, stopped, screened)

    def _choose_features(self, ctx: JudgeContext) -> Iterator[Event]:
        """Retrieve and screen unless the features were given; returns the screening (or None)."""
        if self.features is not None:
            return None
        screened = None
        yield PhaseEvent("retrieve", "finding candidate features: answers with and without the behaviour, gradient attribution, contrastive activations, label search")
        pool = [] if self.cancelled else self.retrieve()
        if not self.cancelled and (warning := targets.heads_up(self.answers)):
            self.notes.append(heads_up_note(warning))
            yield PhaseEvent(HEADS_UP, warning)
        if len(pool) > self.cfg.features and not self.cancelled:
            yield PhaseEvent("screen", f"{self.answers.note + '; ' if self.answers and self.answers.note else ''}steering with each of {len(pool)} candidates alone")
            screened = self.screen(pool, ctx)
            if screened is not None:
                yield screened
                pool = screened.candidates
        self.features = pool[: self.cfg.features]
        return screened

    def _epochs(self, optimiser: Optimiser, ctx: JudgeContext, best: Best, history: list[float]) -> Iterator[Event]:
        """Every epoch until the threshold, the last epoch, a cancel or a failure; returns
        (best, why it stopped) and appends each epoch's score to `history`."""
        cfg = self.cfg
        for epoch in range(1, cfg.epochs + 1):
            if self.cancelled:
                return best, "cancelled"
            yield PhaseEvent("epochs", f"epoch {epoch} of {cfg.epochs}")
            try:
                result, best = self.epoch(epoch, optimiser, ctx, best)
            except Exception as exc:  # noqa: BLE001 - keep what the run has and say why it stopped
                if self.cancelled:
                    return best, "cancelled"
                log.warning("epoch %d failed: %s", epoch, exc)
                self.notes.append(f"epoch {epoch} failed: {exc}")
                return best, f"error: {exc}"
            if self.cancelled:
                return best, "cancelled"
            history.append(result.score)
            yield result
            if best.score >= cfg.threshold:
                return best, "threshold"
        return best, "epochs"

    def _heldout(self, best: Best) -> Iterator[Event]:
        """The held-out check of the best weights, unless cancelled; returns it (or None)."""
        cfg = self.cfg
        if self.cancelled or not cfg.heldout or not best.found:
            return None
        yield PhaseEvent("held-out", f"checking on {len(cfg.heldout)} prompts it never saw: unsteered, prompted, steered, prompted + steered")
        try:
            heldout = self.heldout_check(self.steer_of(best.weights))
        except Exception as exc:  # noqa: BLE001
            if not self.cancelled:
                self.notes.append(f"held-out check failed: {exc}")
            return None
        return None if self.cancelled else heldout  # stopped during the check: its answers are cut short
