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

SELF_REFUSAL = re.compile(r"^\s*(i'?m sorry|i am sorry|i can(?:'|no)t|i cannot|as an ai)\b", re.I)


@dataclass
class ConditionStats:
    grade: float
    relevance: float
    fluency: float  # median perplexity (lower is more fluent)
    refusal_rate: float
    ease: float
    withheld_vs_unsteered: int = 0  # answers refused here where the unsteered answer was not
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
            outputs[c] += [g.text for g in gens[i * n : (i + 1) * n]]
        if progress:
            progress(n)
    stats = {}
    refused_by: dict[str, list[bool]] = {}
    q_refused = [not v.ok for v in safety.check_many(list(questions), "question")] if safety else [False] * len(questions)
    for c in CONDITIONS:
        answers = outputs[c]
        a_refused = [not v.ok for v in safety.check_many(answers, "answer")] if safety else [False] * len(answers)
        refused = [qr or ar or bool(SELF_REFUSAL.search(a)) or not a.strip() for qr, ar, a in zip(q_refused, a_refused, answers)]
        reads = [readability(a) for a in answers]
        ppl = perplexities(engine, list(questions), answers)
        refused_by[c] = refused
        base = refused_by.get("unsteered", refused)
        stats[c] = ConditionStats(
            grade=statistics.fmean(r.grade for r in reads),
            relevance=statistics.fmean(similarities(list(questions), answers)),
            fluency=statistics.median(ppl),
            refusal_rate=sum(refused) / len(refused),
            ease=statistics.fmean(r.ease for r in reads),
            withheld_vs_unsteered=sum(r and not b for r, b in zip(refused, base)),
            degenerate=sum(degeneration(a).degenerate for a in answers),
        )
    return stats, outputs
