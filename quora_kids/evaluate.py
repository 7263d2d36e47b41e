"""Compare four ways of answering the same questions: unsteered, prompted, steered, both.

`prompted` puts the profile's behaviour in the system prompt; `steered` applies its weights.
Per condition: mean Flesch-Kincaid grade, relevance (question-answer embedding similarity),
fluency (perplexity under the unsteered model) and refusal rate (answers withheld by the safety
check or in which the model itself declines).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from steering.artefacts.bind import weights_for
from steering.autosteer.results import CONDITIONS, four_conditions
from steering.metrics import degeneration, perplexities, readability, similarities
from steering.runtime.engine import GenerationConfig

from .service import RETRIES, regenerate_until_safe, whole_sentences

SELF_REFUSAL = re.compile(r"^\s*(i'?m sorry|i am sorry|i can(?:'|no)t|i cannot|as an ai)\b", re.I)


@dataclass
class ConditionStats:
    grade: float
    relevance: float
    fluency: float  # median perplexity (lower is more fluent)
    refusal_rate: float
    ease: float
    withheld_vs_unsteered: int = 0  # answers refused here where the unsteered answer was not
    withheld_shown: int = 0  # the same after the site's retries: withheld (the fallback) or declined, as a visitor would see it
    degenerate: int = 0  # loops, stutter, empty (steering.metrics.degeneration)

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


def evaluate(runtime, profile, questions: Sequence[str], safety=None, batch_size: int = 8, max_new_tokens: int = 96,
             progress: Callable[[int], None] | None = None) -> tuple[dict[str, ConditionStats], dict[str, list[str]]]:
    """Answer every question under the four conditions (one batched generate per chunk)."""
    engine = runtime.engine
    weights = weights_for(profile, engine)
    behavior = profile.behavior or None
    outputs: dict[str, list[str]] = {c: [] for c in CONDITIONS}
    cfg = GenerationConfig(max_new_tokens=max_new_tokens)
    for start in range(0, len(questions), batch_size):
        qs = list(questions[start : start + batch_size])
        n = len(qs)
        prompts, rows, systems = four_conditions(qs, weights, behavior)
        gens = engine.generate(prompts, rows, system=systems, config=cfg)
        for i, c in enumerate(CONDITIONS):
            outputs[c] += [whole_sentences(g.text) for g in gens[i * n : (i + 1) * n]]  # as the site shows them
        if progress:
            progress(n)
    stats = {}
    refused_by: dict[str, list[bool]] = {}
    shown_by: dict[str, list[bool]] = {}
    q_refused = [not v.ok for v in safety.check_many(list(questions), "question")] if safety else [False] * len(questions)
    for i, c in enumerate(CONDITIONS):
        answers = outputs[c]
        refused, shown_by[c] = _refusals(engine, safety, questions, answers, q_refused,
                                         (weights if i >= 2 else None, behavior if i % 2 else None), max_new_tokens)
        reads = [readability(a) for a in answers]
        ppl = perplexities(engine, list(questions), answers)
        refused_by[c] = refused
        base = refused_by.get("unsteered", refused)
        shown_base = shown_by.get("unsteered", shown_by[c])
        stats[c] = ConditionStats(
            grade=statistics.fmean(r.grade for r in reads),
            relevance=statistics.fmean(similarities(list(questions), answers)),
            fluency=statistics.median(ppl),
            refusal_rate=sum(refused) / len(refused),
            ease=statistics.fmean(r.ease for r in reads),
            withheld_vs_unsteered=sum(r and not b for r, b in zip(refused, base)),
            withheld_shown=sum(r and not b for r, b in zip(shown_by[c], shown_base)),
            degenerate=sum(degeneration(a).degenerate for a in answers),
        )
    return stats, outputs


def _acceptable(text: str, verdict) -> bool:
    """Neither withheld (`verdict`, when given) nor declined by the model itself, nor empty."""
    return (verdict is None or verdict.ok) and bool(text.strip()) and not SELF_REFUSAL.search(text)


def _refusals(engine, safety, questions, answers, q_refused, condition, max_new_tokens) -> tuple[list[bool], list[bool]]:
    """Per answer: refused as first written (the question or answer check, or the model declining),
    and still refused after the site's retries (what a visitor would be shown)."""
    verdicts = safety.check_many(answers, "answer") if safety else [None] * len(answers)
    refused = [qr or not _acceptable(a, v) for qr, v, a in zip(q_refused, verdicts, answers)]
    shown = list(refused)
    for j, v in enumerate(verdicts):
        if v is not None and not v.ok and not q_refused[j]:
            text, verdict, _ = regenerate_until_safe(engine, safety, questions[j], *condition, (answers[j], v), max_new_tokens, RETRIES)
            shown[j] = not _acceptable(text, verdict)
    return refused, shown
