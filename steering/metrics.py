"""Text metrics shared by the metric judge, calibration and evaluations.

Fluency is the perplexity of an answer under the unsteered model, given the question.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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
