"""Judges: score how well answers show a behaviour (0-10) and say what is wrong, behind one interface.

`MetricJudge` (offline default) combines concept, relevance, fluency and, where the behaviour
asks for simplicity, readability, AxBench-style (harmonic mean; zero if any part is zero).
`LLMJudge` asks any OpenAI-compatible endpoint for a critique ending in `Score: N`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .metrics import perplexities, readability, similarities


@dataclass
class Judgement:
    score: float  # 0-10
    critique: str
    parts: dict[str, float] = field(default_factory=dict)  # each 0-1 (metric judge)


@dataclass
class JudgeContext:
    """What a judge may compare against: the unsteered answers to the same prompts."""

    behavior: str
    prompts: list[str]
    baseline: list[str]  # unsteered answers, one per prompt


class Judge(Protocol):
    name: str

    def judge(self, ctx: JudgeContext, outputs: Sequence[str]) -> Judgement:
        """Score one candidate's answers (one per prompt in ctx.prompts)."""
        ...


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
PPL_SLACK, PPL_ZERO = 1.5, 15.0  # perplexity x unsteered: full marks up to 1.5x, zero at 15x


class MetricJudge:
    """Offline judge. Each part is in [0, 1] relative to the unsteered answer:

    - concept: gain in embedding similarity of the answer to the behaviour description
      (averaged with readability gain when the behaviour asks for simplicity);
    - relevance: answer-prompt similarity as a fraction of the unsteered answer's, mapped so that
      0.95x or more is full marks and 0.6x is zero (an answer that drifts off the question is a failure,
      however well it shows the behaviour);
    - fluency: perplexity under the unsteered model, against the unsteered answer's.
    """

    name = "metric"

    def __init__(self, engine):
        self.engine = engine
        self._cache: dict[tuple, tuple] = {}

    def _baseline_stats(self, ctx: JudgeContext):
        key = (ctx.behavior, tuple(ctx.prompts), tuple(ctx.baseline))
        if key not in self._cache:
            self._cache[key] = (
                similarities(ctx.baseline, [ctx.behavior] * len(ctx.baseline)),
                similarities(ctx.baseline, ctx.prompts),
                perplexities(self.engine, ctx.prompts, ctx.baseline),
                [readability(b).grade for b in ctx.baseline],
            )
        return self._cache[key]

    def judge(self, ctx: JudgeContext, outputs: Sequence[str]) -> Judgement:
        return self.judge_many(ctx, [outputs])[0]

    def judge_many(self, ctx: JudgeContext, candidates: Sequence[Sequence[str]]) -> list[Judgement]:
        """Judge several candidates' answers at once (embeddings are batched)."""
        base_concept, base_rel, base_ppl, base_grade = self._baseline_stats(ctx)
        n = len(ctx.prompts)
        flat = [o for outs in candidates for o in outs]
        concept_sim = similarities(flat, [ctx.behavior] * len(flat))
        rel_sim = similarities(flat, list(ctx.prompts) * len(candidates))
        ppl = perplexities(self.engine, list(ctx.prompts) * len(candidates), flat)
        simple = asks_for_simplicity(ctx.behavior)
        results = []
        for c, outs in enumerate(candidates):
            rows = range(c * n, (c + 1) * n)
            parts_per_prompt = []
            for j, r in zip(range(n), rows):
                concept = _clip((concept_sim[r] - base_concept[j]) / CONCEPT_GAIN)
                grade = readability(flat[r]).grade
                if simple:
                    concept = 0.5 * concept + 0.5 * _clip((base_grade[j] - grade) / GRADE_GAIN)
                rel_ratio = rel_sim[r] / max(base_rel[j], 1e-3)
                relevance = _clip((rel_ratio - REL_ZERO) / (REL_FULL - REL_ZERO))
                ratio = ppl[r] / max(base_ppl[j], 1e-6)
                fluency = _clip(1 - math.log(max(ratio, 1e-9) / PPL_SLACK) / math.log(PPL_ZERO / PPL_SLACK)) if math.isfinite(ppl[r]) else 0.0
                parts_per_prompt.append({"concept": concept, "relevance": relevance, "fluency": fluency, "grade": grade, "perplexity": ppl[r]})
            parts = {k: sum(p[k] for p in parts_per_prompt) / n for k in ("concept", "relevance", "fluency")}
            score = 10 * sum(harmonic_mean([p["concept"], p["relevance"], p["fluency"]]) for p in parts_per_prompt) / n
            detail = {
                "grade": sum(p["grade"] for p in parts_per_prompt) / n,
                "perplexity": sum(min(p["perplexity"], 1e4) for p in parts_per_prompt) / n,
            }
            results.append(Judgement(round(score, 3), self._critique(parts, detail, base_grade, base_ppl, simple), {**parts, **detail}))
        return results

    @staticmethod
    def _critique(parts: dict, detail: dict, base_grade, base_ppl, simple: bool) -> str:
        weakest = min(("concept", "relevance", "fluency"), key=lambda k: parts[k])
        bg, bp = sum(base_grade) / len(base_grade), sum(base_ppl) / len(base_ppl)
        advice = {
            "concept": "the behaviour barely shows; push the behaviour's features harder"
            + (f" (reading grade {detail['grade']:.1f} vs {bg:.1f} unsteered)" if simple else ""),
            "relevance": "the answers drift away from the question; lower the strongest weights",
            "fluency": f"the text is getting garbled (perplexity {detail['perplexity']:.0f} vs {bp:.0f} unsteered); lower the weights",
        }[weakest]
        summary = ", ".join(f"{k} {parts[k]:.2f}" for k in ("concept", "relevance", "fluency"))
        return f"Weakest part: {weakest} - {advice}. Parts: {summary}."


# ---------------------------------------------------------------- LLM judge

JUDGE_PROMPT = """You are judging a language model's answers. The goal behaviour is: "{behavior}".
For each question, the model's answer is shown. Judge how strongly the answers show the behaviour while
still answering the question sensibly and fluently. Write a short critique (what works, what to change),
then end with a final line of the form "Score: N" where N is a number from 0 (not at all) to 10 (perfectly).

{pairs}"""

_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.I)


def parse_score(text: str) -> float | None:
    """The last `Score: N` in a critique, or None. Scores outside 0-10 are not scores."""
    found = _SCORE.findall(text)
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= 10 else None


class LLMJudge:
    name = "llm"

    def __init__(self, client, retries: int = 1):
        self.client = client
        self.retries = retries

    def judge(self, ctx: JudgeContext, outputs: Sequence[str]) -> Judgement:
        pairs = "\n\n".join(f"Question: {p}\nAnswer: {o or '(empty)'}" for p, o in zip(ctx.prompts, outputs))
        messages = [{"role": "user", "content": JUDGE_PROMPT.format(behavior=ctx.behavior, pairs=pairs)}]
        last = ""
        for _ in range(1 + self.retries):
            last = self.client.chat(messages, max_tokens=400)
            score = parse_score(last)
            if score is not None:
                critique = _SCORE.sub("", last).strip() or last
                return Judgement(score, critique)
            messages = messages + [
                {"role": "assistant", "content": last},
                {"role": "user", "content": "End your answer with a line 'Score: N' (N from 0 to 10)."},
            ]
        raise JudgeError(f"the LLM judge gave no 'Score: N' line after {1 + self.retries} tries (last answer: {last[:120]!r})")

    def judge_many(self, ctx: JudgeContext, candidates: Sequence[Sequence[str]]) -> list[Judgement]:
        return [self.judge(ctx, outs) for outs in candidates]
