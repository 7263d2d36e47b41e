"""Behaviour -> k candidate features: semantic label search, contrastive activations, LLM queries.

Each candidate carries its label, the source that found it and a suggested sign (the initial
direction: +1 to add the feature, -1 to suppress it).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..llm import LLMError
from ..runtime.scheduler import on_compute_thread_in_chunks
from ..sae.activations import residuals_for_ids
from .objective import attribution, build_objective
from .targets import DistillAnswers, distill_answers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureCandidate:
    index: int
    label: str
    source: str  # "attribution" | "contrastive" | "semantic" | "llm" | "llm-opposite" | "manual"
    sign: float  # suggested initial direction, +1 or -1
    score: float  # source-specific strength (similarity, or activation difference)


# Fixed extra questions for the contrastive source: its activation differences are averaged over
# these as well as the user's training prompts, so a handful of similar prompts (or one topic's
# vocabulary, e.g. colours for "What is a rainbow?") does not decide which latents look relevant.
# Kept apart from the held-out set.
PROBE_PROMPTS = [
    "What is the moon?",
    "How do birds fly?",
    "Why do leaves change colour in autumn?",
    "What makes thunder?",
    "How do computers work?",
    "Tell me about your weekend.",
    "What is a volcano?",
    "Why do we need to sleep?",
]


def probe_prompts(prompts: Sequence[str], max_prompts: int = 8, exclude: Sequence[str] = ()) -> list[str]:
    """Up to `max_prompts` of the training prompts, then every PROBE_PROMPTS question (no repeats,
    never one of `exclude`)."""
    out = list(dict.fromkeys(prompts))[:max_prompts]
    skip = set(out) | set(exclude)
    return out + [p for p in PROBE_PROMPTS if p not in skip]


def semantic_candidates(index, query: str, k: int, source: str = "semantic", sign: float = 1.0) -> list[FeatureCandidate]:
    return [FeatureCandidate(h.index, h.label, source, sign, h.score) for h in index.search(query, k=k)]


def contrastive_candidates(engine, index, answers: DistillAnswers, k: int) -> list[FeatureCandidate]:
    """Latents whose activation on answer tokens differs most, and most consistently, between
    answers written with the behaviour as a system prompt and plain answers. Needs no labels.

    Score: |mean difference| x the fraction of prompts whose difference has the mean's sign, so a
    latent that moves on every prompt beats one that jumps on a single topic (e.g. "colours" for
    "What is a rainbow?")."""
    prompts = answers.prompts
    n = len(prompts)
    # Read both answers in the same plain context, so only the answer differs.
    contexts = [engine.tokenizer(engine.chat_prompt(p), add_special_tokens=False)["input_ids"] for p in prompts]
    means = mean_answer_activations(engine, [contexts[i % n] for i in range(2 * n)], answers.targets + answers.plains)
    diff, score = contrastive_scores(means[:n] - means[n:])
    top = score.topk(min(k, diff.numel()))
    return [
        FeatureCandidate(int(i), index.label(int(i)) if index is not None else "", "contrastive", 1.0 if diff[i] > 0 else -1.0, float(v))
        for v, i in zip(top.values, top.indices)
        if v > 0
    ]


def attribution_candidates(engine, index, answers: DistillAnswers, k: int) -> list[FeatureCandidate]:
    """Latents ranked by gradient attribution: the first-order change of the distillation
    objective (autosteer.objective) per unit weight, from one backward pass at v = 0. The sign says
    whether adding or suppressing the latent moves the plain model towards the behaviour's answers.
    Latents the index knows to be dead are skipped (their labels say nothing)."""
    attr = attribution(engine, build_objective(engine, answers.prompts, answers.targets, answers.plains))
    if index is not None:
        dead = torch.tensor([r.dead for r in index.records]) if len(index) == attr.numel() else None
        if dead is not None:
            attr = attr.masked_fill(dead, 0.0)
    top = attr.abs().topk(min(k, attr.numel()))
    return [
        FeatureCandidate(int(i), index.label(int(i)) if index is not None else "", "attribution", -1.0 if attr[i] > 0 else 1.0, float(v))
        for v, i in zip(top.values, top.indices)
        if v > 0
    ]


def contrastive_scores(per_prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean difference, score) per latent from (prompts, d_sae) activation differences."""
    diff = per_prompt.mean(0)
    agree = (torch.sign(per_prompt) == torch.sign(diff)).float().mean(0)
    return diff, diff.abs() * agree


def mean_answer_activations(engine, contexts: list[list[int]], answers: list[list[int]], batch_size: int = 4) -> torch.Tensor:
    """(len(answers), d_sae) mean SAE activation over each answer's tokens, read after its context;
    `batch_size` rows per compute-worker call (a child's question waits for one short call)."""
    parts = on_compute_thread_in_chunks(lambda c, a: _answer_means(engine, c, a), batch_size, contexts, answers)
    return torch.cat(parts) if parts else torch.zeros(0, engine.basis.d_sae)


def _answer_means(engine, contexts: list[list[int]], answers: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(answers), engine.basis.d_sae)
    ids = [list(c) + list(a) for c, a in zip(contexts, answers)]
    batch = residuals_for_ids(engine.model, engine.tokenizer, ids, engine.basis.layer)
    with torch.no_grad():
        acts = engine.sae.encode(batch.hidden.float())  # (B, T, d_sae)
    width = batch.input_ids.shape[1]
    for r, a in enumerate(answers):
        mask = batch.mask[r].clone()
        mask[: width - len(a)] = False  # only the answer's tokens
        if mask.any():
            out[r] = acts[r][mask].mean(0)
    return out


_QUERY_PROMPT = """We want to steer a language model towards this behaviour: "{behavior}".
Its features have short text labels. Write search queries for features to ADD (concepts present in text
showing the behaviour) and features to SUPPRESS (the opposite behaviour).
Answer with JSON only: {{"add": ["...", "...", "..."], "suppress": ["...", "..."]}}"""


def llm_queries(client, behavior: str) -> tuple[list[str], list[str]]:
    """Sub-queries and opposite behaviours written by an LLM (the reference method's retriever)."""
    text = client.chat([{"role": "user", "content": _QUERY_PROMPT.format(behavior=behavior)}], max_tokens=300)
    m = re.search(r"\{.*\}", text, re.S)
    try:
        data = json.loads(m.group(0)) if m else {}
    except json.JSONDecodeError:
        data = {}
    add = [str(q) for q in data.get("add", []) if str(q).strip()][:5]
    sup = [str(q) for q in data.get("suppress", []) if str(q).strip()][:3]
    if not add and not sup:
        raise LLMError("the LLM did not return search queries as JSON")
    return add, sup


def merge(lists: Sequence[Sequence[FeatureCandidate]], k: int) -> list[FeatureCandidate]:
    """Round-robin over sources (best first in each), dropping repeats, until k are chosen."""
    chosen: list[FeatureCandidate] = []
    seen: set[int] = set()
    iters = [iter(lst) for lst in lists if lst]
    while iters and len(chosen) < k:
        for it in list(iters):
            for cand in it:
                if cand.index not in seen:
                    seen.add(cand.index)
                    chosen.append(cand)
                    break
            else:
                iters.remove(it)
            if len(chosen) >= k:
                break
    return chosen


def retrieve(engine, index, behavior: str, prompts: Sequence[str], k: int = 5, client=None,
             answers: DistillAnswers | None = None) -> list[FeatureCandidate]:
    """k candidates for a behaviour from every available source, merged and deduped: gradient
    attribution and contrastive activations (both from `answers`, generated here if not given),
    label search, and LLM-written sub-queries when a client is given."""
    behavior = behavior.strip()
    if not behavior:
        raise ValueError("describe a behaviour to steer towards")
    sources: list[list[FeatureCandidate]] = []
    if engine is not None and prompts:
        answers = answers or distill_answers(engine, behavior, prompts)
        sources.append(attribution_candidates(engine, index, answers, 2 * k))
        sources.append(contrastive_candidates(engine, index, answers, 2 * k))
    if index is not None:
        sources.append(semantic_candidates(index, behavior, 2 * k))
    if client is not None and index is not None:
        try:
            add, suppress = llm_queries(client, behavior)
            sources += [semantic_candidates(index, q, 2, "llm") for q in add]
            sources += [semantic_candidates(index, q, 1, "llm-opposite", -1.0) for q in suppress]
        except Exception as exc:  # the offline sources still stand
            log.warning("LLM sub-queries failed, using offline retrieval only: %s", exc)
    return merge(sources, k)
