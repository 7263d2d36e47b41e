"""Judges: score how well answers show a behaviour (0-10) and say what is wrong, behind one interface.

`MetricJudge` (offline default) combines concept, relevance, fluency and, where the behaviour
asks for simplicity, readability: the behaviour part scales the score, the harmonic mean of the
quality parts gates it (zero if any is zero).
`LLMJudge` and `FallbackJudge` (an LLM endpoint's judge, and the metric judge behind it) are in
`llm_judge.py`.
"""

from __future__ import annotations

import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..metrics import NEUTRAL_QUESTION, coherence, degeneration, perplexities, readability, relevance_similarities, similarities


@dataclass
class Judgement:
    score: float  # 0-10
    critique: str
    parts: dict[str, float] = field(default_factory=dict)  # each 0-1 (metric judge)
    per_prompt: list[float] = field(default_factory=list)  # 0-10 per prompt, where the judge scores them one by one


@dataclass
class JudgeContext:
    """What a judge may compare against: the unsteered answers to the same prompts."""

    behavior: str
    prompts: list[str]
    baseline: list[str]  # unsteered answers, one per prompt


class Judge(ABC):
    """Scores candidates' answers 0-10 with a critique. The loop calls only `judge_many` and reads
    `name` (recorded in the profile's provenance)."""

    name: str = "judge"

    @abstractmethod
    def judge_many(self, ctx: JudgeContext, candidates: Sequence[Sequence[str]]) -> list[Judgement]:
        """Score several candidates (the loop's call); one Judgement per candidate, in order.
        Raises JudgeError when it cannot score."""

    def judge(self, ctx: JudgeContext, outputs: Sequence[str]) -> Judgement:
        """Score one candidate's answers (one per prompt in ctx.prompts)."""
        return self.judge_many(ctx, [outputs])[0]

    def summary(self) -> str:
        """A note for the profile about how the run was judged ("" when there is nothing to say)."""
        return ""


class JudgeError(RuntimeError):
    """The judge could not produce a score (after retrying)."""


# ---------------------------------------------------------------- metric judge

SIMPLICITY = re.compile(r"\b(child|children|kid|kids|simple|simply|easy|young|five|5-year|eli5|beginner|plain)\b", re.I)


def asks_for_simplicity(behavior: str) -> bool:
    return bool(SIMPLICITY.search(behavior))


def harmonic_mean(parts: Sequence[float]) -> float:
    if any(p <= 0 for p in parts):
        return 0.0
    return len(parts) / sum(1.0 / p for p in parts)


def _clip(x: float) -> float:
    return 0.0 if math.isnan(x) else max(0.0, min(1.0, x))


# How much better than the unsteered answer counts as "fully there".
CONCEPT_GAIN = 0.25  # cosine similarity to the behaviour description
GRADE_GAIN = 4.0  # Flesch-Kincaid grades lower
REL_ZERO, REL_FULL = 0.6, 0.95  # answer-question similarity x unsteered: zero at 0.6x, full marks from 0.95x
REL_OFF = 0.3  # below 0.3x the unsteered answer's similarity to the question, relevance is 0 outright
PPL_SLACK, PPL_ZERO = 1.5, 15.0  # perplexity x unsteered: full marks up to 1.5x, zero at 15x
PMI_GAIN = 1.0  # nats per token: log-likelihood gain from being told the behaviour, over the unsteered answer's
QPMI_ZERO, QPMI_FULL = 0.0, 0.4  # nats per token the answer gains from its question over NEUTRAL_QUESTION
NO_EFFECT_SCORE = 0.1  # (x10) a fluent, on-question answer with no behaviour


# The concept part compares the answer's likelihood after the behaviour as a system prompt with
# its likelihood after THIS neutral system prompt (not after none): an answer written under any
# system prompt is likelier after any system prompt, and only the behaviour's own share counts.
NEUTRAL_SYSTEM = os.environ.get("STEERING_JUDGE_NEUTRAL", "Answer the question.") or None


def _pmi(ppl_plain: float, ppl_told: float) -> float:
    """log p(answer | told the behaviour) - log p(answer | not told), per token."""
    if not (math.isfinite(ppl_plain) and math.isfinite(ppl_told)):
        return 0.0
    return math.log(ppl_plain) - math.log(ppl_told)


class MetricJudge(Judge):
    """Offline judge. Each part is in [0, 1] relative to the unsteered answer:

    - concept: how much likelier the model finds the answer when told the behaviour as a system
      prompt (pointwise mutual information per token), over the unsteered answer's, full marks at
      PMI_GAIN; averaged with readability gain when the behaviour asks for simplicity. Embedding
      similarity to the description is reported (`concept_similarity`), not scored;
    - relevance: the mean of (a) answer-question similarity (whole answer and two-sentence chunks,
      so drift counts) as a fraction of the unsteered answer's, full marks from 0.95x, zero at
      0.6x, and (b) how much likelier the model finds the answer after its question than after
      NEUTRAL_QUESTION (per token; zero at QPMI_ZERO, full at QPMI_FULL): an answer that leaves the
      question or says nothing is a failure, however well it shows the behaviour; a new voice
      that still answers keeps (b). Below REL_OFF x the unsteered similarity, relevance is 0;
    - fluency: perplexity under the unsteered model, against the unsteered answer's;
    - coherence: repetition and degeneration (seq-rep-4, distinct-2, repeated sentences) against
      the unsteered answer. A degenerate answer (loops, stutter, empty) scores 0 overall.

    Score = 10 x concept x the harmonic mean of relevance, fluency and coherence per prompt (0 if
    any is 0), at least the no-effect band for a non-degenerate answer, averaged over prompts. (A
    harmonic mean of all four gave a trace of behaviour (concept 0.2) about 5/10; the rubric says
    about 3. On the labelled train split: 0.665 Spearman for the product, 0.62 for the mean.)
    """

    name = "metric"
    PARTS = ("concept", "relevance", "fluency", "coherence")

    def __init__(self, engine):
        self.engine = engine
        self._cache: dict[tuple, tuple] = {}

    def _baseline_stats(self, ctx: JudgeContext):
        key = (ctx.behavior, tuple(ctx.prompts), tuple(ctx.baseline))
        if key not in self._cache:
            self._cache[key] = (
                similarities(ctx.baseline, [ctx.behavior] * len(ctx.baseline)),
                relevance_similarities(ctx.baseline, ctx.prompts),
                perplexities(self.engine, ctx.prompts, ctx.baseline),
                [readability(b).grade for b in ctx.baseline],
                perplexities(self.engine, ctx.prompts, ctx.baseline, system=ctx.behavior),
                perplexities(self.engine, ctx.prompts, ctx.baseline, system=NEUTRAL_SYSTEM) if NEUTRAL_SYSTEM else None,
            )
        return self._cache[key]

    def judge_many(self, ctx: JudgeContext, candidates: Sequence[Sequence[str]]) -> list[Judgement]:
        """Judge several candidates' answers at once (embeddings are batched)."""
        base_concept, base_rel, base_ppl, base_grade, base_ppl_b, base_ppl_n = self._baseline_stats(ctx)
        base_pmi = [_pmi(a, b) for a, b in zip(base_ppl_n or base_ppl, base_ppl_b)]
        n = len(ctx.prompts)
        flat = [o for outs in candidates for o in outs]
        concept_sim = similarities(flat, [ctx.behavior] * len(flat))
        rel_sim = relevance_similarities(flat, list(ctx.prompts) * len(candidates))
        ppl = perplexities(self.engine, list(ctx.prompts) * len(candidates), flat)
        # How much likelier each answer is when the model is told the behaviour (its own reading).
        neutral = perplexities(self.engine, list(ctx.prompts) * len(candidates), flat, system=NEUTRAL_SYSTEM) if NEUTRAL_SYSTEM else ppl
        pmi = [_pmi(a, b) for a, b in zip(neutral, perplexities(self.engine, list(ctx.prompts) * len(candidates), flat, system=ctx.behavior))]
        # How much likelier each answer is after its own question than after a neutral one: an
        # answer about something else, or one that says nothing, gains nothing from the question.
        qpmi = [_pmi(neutral, a) for a, neutral in zip(ppl, perplexities(self.engine, [NEUTRAL_QUESTION] * len(flat), flat))]
        simple = asks_for_simplicity(ctx.behavior)
        results = []
        for c in range(len(candidates)):
            per_prompt = [
                self._parts(flat[r], ctx.baseline[j], concept_sim[r] - base_concept[j], pmi[r] - base_pmi[j], rel_sim[r] / max(base_rel[j], 1e-3), qpmi[r],
                            ppl[r] / max(base_ppl[j], 1e-6) if math.isfinite(ppl[r]) else math.inf, base_grade[j], simple)
                for j, r in zip(range(n), range(c * n, (c + 1) * n))
            ]
            parts = {k: sum(p[k] for p in per_prompt) / n for k in self.PARTS}
            score = 10 * sum(p["score"] for p in per_prompt) / n
            detail = {
                "grade": sum(p["grade"] for p in per_prompt) / n,
                "perplexity": sum(min(ppl[r], 1e4) for r in range(c * n, (c + 1) * n)) / n,
                "degenerate": sum(p["degenerate"] for p in per_prompt) / n,
                "concept_similarity": sum(p["concept_similarity"] for p in per_prompt) / n,
                "concept_pmi": sum(p["concept_pmi"] for p in per_prompt) / n,
                "question_pmi": sum(qpmi[r] for r in range(c * n, (c + 1) * n)) / n,
            }
            results.append(Judgement(round(score, 3), self._critique(parts, detail, base_grade, base_ppl, simple), {**parts, **detail},
                                     [round(10 * p["score"], 3) for p in per_prompt]))
        return results

    @staticmethod
    def _parts(answer: str, baseline: str, concept_gain: float, pmi_gain: float, rel_ratio: float, qpmi: float, ppl_ratio: float,
               base_grade: float, simple: bool) -> dict:
        by_text, by_model = _clip(concept_gain / CONCEPT_GAIN), _clip(pmi_gain / PMI_GAIN)
        # The model's own reading decides; embedding similarity to the description is reported only
        # (on the labelled train split: 0.49 and 0.23 Spearman with the hand "behaviour" score).
        concept = by_model
        grade = readability(answer).grade
        if simple:
            concept = 0.5 * concept + 0.5 * _clip((base_grade - grade) / GRADE_GAIN)
        # Two readings averaged: the embeddings' (on topic, chunk by chunk) and the model's (the
        # answer follows from this question more than from a neutral one: not vacuous, not elsewhere).
        # Below REL_OFF x the unsteered answer's similarity, the answer is about something else.
        relevance = 0.0 if rel_ratio < REL_OFF else (
            0.5 * _clip((rel_ratio - REL_ZERO) / (REL_FULL - REL_ZERO)) + 0.5 * _clip((qpmi - QPMI_ZERO) / (QPMI_FULL - QPMI_ZERO)))
        fluency = _clip(1 - math.log(max(ppl_ratio, 1e-9) / PPL_SLACK) / math.log(PPL_ZERO / PPL_SLACK)) if math.isfinite(ppl_ratio) else 0.0
        measured = degeneration(answer)
        degenerate = measured.degenerate
        coh = coherence(answer, baseline, measured)
        score = concept * harmonic_mean([relevance, fluency, coh])
        if not degenerate:
            # A fluent answer to the question that merely lacks the behaviour (or shows a trace of
            # it) ranks above a broken one: the rubric's 0-1 band, NO_EFFECT_SCORE at most. A
            # floor, not a branch on concept == 0, so that a hair of concept never scores lower.
            score = max(score, NO_EFFECT_SCORE * min(relevance, fluency, coh))
        return {"concept": concept, "concept_similarity": by_text, "concept_pmi": by_model,
                "relevance": relevance, "fluency": fluency, "coherence": coh, "grade": grade,
                "degenerate": float(degenerate), "score": score}

    @classmethod
    def _critique(cls, parts: dict, detail: dict, base_grade, base_ppl, simple: bool) -> str:
        weakest = min(cls.PARTS, key=lambda k: parts[k])
        bg, bp = sum(base_grade) / len(base_grade), sum(base_ppl) / len(base_ppl)
        advice = {
            "concept": "the behaviour barely shows; push the behaviour's features harder"
            + (f" (reading grade {detail['grade']:.1f} vs {bg:.1f} unsteered)" if simple else ""),
            "relevance": "the answers drift away from the question; lower the strongest weights",
            "fluency": f"the text is getting garbled (perplexity {detail['perplexity']:.0f} vs {bp:.0f} unsteered); lower the weights",
            "coherence": "the answers repeat themselves or loop; lower the weights",
        }[weakest]
        summary = ", ".join(f"{k} {parts[k]:.2f}" for k in cls.PARTS)
        loops = f" {detail['degenerate']:.0%} of the answers are degenerate (loops or stutter)." if detail["degenerate"] else ""
        return f"Weakest part: {weakest} - {advice}. Parts: {summary}.{loops}"
