"""Guided decoding: answers that show a system prompt more strongly than the model does when told.

Classifier-free guidance for language models (Sanchez et al. 2023, "Stay on topic with
classifier-free guidance"): each greedy step takes the token that maximises

    log p(t | system, question, answer so far)
    + (scale - 1) * [log p(t | system, ...) - log p(t | negative system, ...)]

so at scale 1 it is the plain told answer, and above 1 it leans on what the behaviour's system
prompt adds over a neutral one. SmolLM2-135M told "Always talk about the ocean" answers "How do I
stay healthy?" without the ocean; at scale 2: "The ocean is a sacred place that offers endless
opportunities for self-care. To stay healthy, ...". Auto-steer uses these answers as targets to
distil into steering (autosteer/targets.py): a profile then answers that way without the system
prompt and without the second pass.

Runs on the fp32 model on the compute worker, one step per call so a child's question can go
between two steps; no steering hooks apply (this thread registers none).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

from .scheduler import on_compute_thread


def _penalised(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """The transformers repetition penalty: seen tokens' logits divided (if > 0) or multiplied by it."""
    if penalty == 1.0:
        return logits
    picked = logits.gather(1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(1, seen, picked)


def guided_generate(engine, prompts: Sequence[str], system: str, negative_system: str | None, scales: Sequence[float],
                    max_new_tokens: int = 48, repetition_penalty: float = 1.1,
                    cancel: threading.Event | None = None) -> list[list[list[int]]]:
    """Greedy guided answers (token ids, up to EOS) to each prompt at each of `scales` (1 = the
    plain told answer): `system` against `negative_system`. One batch of 2 rows per prompt and
    scale; the result is one list of answers per scale."""
    n, k = len(prompts), len(scales)
    if not n or not k:
        return [[] for _ in scales]
    m = n * k
    enc = engine._encode(list(prompts) * 2 * k, [system] * m + [negative_system] * m)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    scale = torch.tensor([float(g) for g in scales for _ in range(n)])[:, None]
    eos = engine.tokenizer.eos_token_id
    state = {"past": None, "mask": mask, "pos": (mask.cumsum(1) - 1).clamp(min=0), "step_ids": ids, "seen": ids}
    out = torch.full((m, 0), eos, dtype=torch.long)
    done = torch.zeros(m, dtype=torch.bool)

    @torch.no_grad()
    def step():
        res = engine.model(input_ids=state["step_ids"], attention_mask=state["mask"], position_ids=state["pos"],
                           cache=state["past"], use_cache=True)
        state["past"] = res.cache
        scores = torch.log_softmax(_penalised(res.logits[:, -1].float(), state["seen"], repetition_penalty), -1)
        told, neutral = scores[:m], scores[m:]
        return (neutral + scale * (told - neutral)).argmax(-1)

    for _ in range(max_new_tokens):
        if cancel is not None and cancel.is_set():
            break
        token = on_compute_thread(step)
        token = torch.where(done, torch.full_like(token, eos), token)
        out = torch.cat([out, token[:, None]], 1)
        done |= token == eos
        if bool(done.all()):
            break
        pair = torch.cat([token, token])[:, None]
        state["step_ids"] = pair
        state["mask"] = torch.cat([state["mask"], torch.ones_like(pair)], 1)
        state["pos"] = state["pos"][:, -1:] + 1
        state["seen"] = torch.cat([state["seen"], pair], 1)
    rows = [r[: r.index(eos)] if eos in r else r for r in out.tolist()]
    return [rows[i * n : (i + 1) * n] for i in range(k)]
