"""The prompt-distillation objective L(v) of gradient steering, and attribution over every SAE latent
from one backward pass (the Adam optimiser that fits weights against it is `gradient.py`).

The objective, on the training prompts with NO system prompt (the model stays frozen; only the
added vector v at the SAE layer moves):

    L(v) = NLL(target | v) + PREF * -log sigmoid(BETA * (lp(target | v) - lp(plain | v)))
           + KL_WEIGHT * KL(p(. | plain text, v=0) || p(. | plain text, v))

where the targets are the answers the model writes WITH the behaviour as system prompt (plus
the best-judged answers found so far), the plain answers are the unsteered ones, lp is the
length-normalised log-likelihood (a reference-free preference term in the spirit of RePS and
SimPO), and the KL term on ordinary text keeps the steered model fluent. The answers are read
without the system prompt even when the epochs steer on top of it (`--mode`): the vector that
makes the plain model write like the prompted one is what adds to the prompt. (Reading them
after the prompt was tried, session 9: held-out prompt + steering fell on 3 of 4 behaviours,
pirate 1.90 -> 1.51, polite 1.19 -> 0.76, dog 0.95 -> 0.80, coach 0.85 both.)

v = scale * sum_i w_i d_i (+ an optional free vector u), so dL/dw_i = scale * d_i . dL/dv: ONE
backward pass at v = 0 ranks all latents with a sign (`attribution`).

Speed: the residual stream below the steering layer does not depend on v, so it is computed once
(no grad) and each step runs only the layers above it (Llama-style models; others run the whole
model with a hook).

Sharing the machine: a forward/backward pass over every row takes seconds on 2 CPU cores, and
the compute worker runs one call at a time. `chunked_loss` therefore evaluates L(v) and its
gradient as `split(obj)` chunks (a few prompts' rows each, then the plain texts), one worker call
each, so a child's question waiting at a higher priority is served between two chunks instead of
after the whole pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..runtime.scheduler import on_compute_thread, on_compute_thread_in_chunks
from ..sae.activations import layer_output

PREF = 1.0  # weight of the preference (target over plain) term
BETA = 2.0  # sharpness of the preference term (length-normalised log-likelihoods)
KL_WEIGHT = 1.0  # keep next-token distributions on plain text close to the unsteered model's
FREE_L2 = 0.05  # penalty on the free (non-SAE) vector, relative to scale^2
MAX_ANSWER_TOKENS = 48
CHUNK_PAIRS = 2  # prompts (a target and a plain answer each) per forward/backward pass
RESID_ROWS = 4  # rows per compute-worker call when the objective's residuals are computed

# Ordinary text for the fluency (KL) term: any plain sentences work.
PLAIN_TEXTS = [
    "The train left the station at nine and arrived in the city by noon.",
    "Photosynthesis is how plants turn sunlight, water and air into food.",
    "My favourite dinner is pasta with tomato sauce and a little cheese.",
    "Whales are mammals that breathe air, even though they live in the ocean.",
]


@dataclass
class Objective:
    """Tokenised data for L(v): one row per (prompt, answer) and per plain text, right-padded."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    targets: torch.Tensor  # (B, T) next-token labels, -100 where not scored
    kind: torch.Tensor  # (B,) 1 = target answer, -1 = plain answer, 0 = plain text (KL)
    pair: torch.Tensor  # (B,) index of the prompt a target/plain row answers (-1 for KL rows)
    base_logprobs: torch.Tensor | None = None  # (n_kl_tokens, vocab) unsteered, for the KL term
    resid: torch.Tensor | None = None  # (B, T, d) residual after the steering layer at v = 0
    # v is added from this position on, per row (None: everywhere). The opening direction
    # (`opening.py`) is added where the answer starts only: the prompt's last position onwards.
    steer_from: torch.Tensor | None = None  # (B,)

    @property
    def rows(self) -> int:
        return self.input_ids.shape[0]


def build_objective(engine, prompts: Sequence[str], targets: Sequence[Sequence[int]], plains: Sequence[Sequence[int]],
                    plain_texts: Sequence[str] = PLAIN_TEXTS, max_answer_tokens: int = MAX_ANSWER_TOKENS) -> Objective:
    """Rows for L(v): prompt i's target answer and plain answer (token ids, generated elsewhere),
    read in the plain chat context (no system prompt), plus the plain texts for the KL term. Call
    it from any thread: its model passes run on the compute worker, a few rows at a time."""
    tok = engine.tokenizer
    seqs: list[tuple[list[int], int, int, int]] = []  # ids, answer start, kind, pair
    for i, p in enumerate(prompts):
        ctx = tok(engine.chat_prompt(p), add_special_tokens=False)["input_ids"]
        for kind, ans in ((1, targets[i]), (-1, plains[i])):
            ans = list(ans)[:max_answer_tokens]
            if ans:
                seqs.append((ctx + ans, len(ctx), kind, i))
    for text in plain_texts:
        ids = tok(text, add_special_tokens=False)["input_ids"][:64]
        seqs.append((ids, 1, 0, -1))
    width = max(len(s[0]) for s in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    B = len(seqs)
    input_ids = torch.full((B, width), pad, dtype=torch.long)
    attn = torch.zeros(B, width, dtype=torch.long)
    labels = torch.full((B, width), -100, dtype=torch.long)
    for r, (ids, start, _, _) in enumerate(seqs):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attn[r, : len(ids)] = 1
        # position t predicts token t+1: score the answer tokens only
        labels[r, start - 1 : len(ids) - 1] = torch.tensor(ids[start:])
    obj = Objective(input_ids, attn, labels, torch.tensor([s[2] for s in seqs]), torch.tensor([s[3] for s in seqs]))
    device = engine.model.device
    obj.input_ids, obj.attention_mask, obj.targets = obj.input_ids.to(device), obj.attention_mask.to(device), obj.targets.to(device)
    # RESID_ROWS rows per compute-worker call: a child's question waits for one short call (~0.5 s),
    # not for the whole objective's pass (1-2 s).
    obj.resid = torch.cat(on_compute_thread_in_chunks(lambda ids, mask: layer_output(engine.model, engine.basis.layer, ids, mask).detach(),
                                                      RESID_ROWS, obj.input_ids, obj.attention_mask))
    obj.base_logprobs = on_compute_thread(_base_logprobs, engine, obj) if plain_texts else None
    return obj


def _base_logprobs(engine, obj: Objective) -> torch.Tensor:
    """The unsteered model's next-token log-probabilities on the plain texts (the KL term's target)."""
    with torch.no_grad():
        return F.log_softmax(_upper_logits(engine, obj, None, kl_only=True).float(), dim=-1)


def _upper_model(engine):
    """The decoder above the steering layer, sharing the model's modules (cached per engine)."""
    cached = getattr(engine, "_upper_model", None)
    if cached is not None:
        return cached
    inner = engine.model.model
    if engine.model.config.model_type not in ("llama", "mistral", "qwen2", "qwen3"):
        engine._upper_model = False  # e.g. Gemma rescales inputs_embeds: run the whole model instead
        return False
    view = copy.copy(inner)
    view._modules = dict(inner._modules)  # never touch the shared model's own module dict
    view.layers = torch.nn.ModuleList(list(inner.layers)[engine.basis.layer + 1 :])
    engine._upper_model = view
    return view


def _upper_logits(engine, obj: Objective, v: torch.Tensor | None, kl_only: bool = False, scored_only: bool = False) -> torch.Tensor:
    """Logits at the scored positions (all scored rows, or only the KL rows) with v added."""
    view = _upper_model(engine)
    rows = (obj.kind == 0) if kl_only else torch.ones(obj.rows, dtype=torch.bool)
    rows = rows.to(obj.input_ids.device)
    ids, attn, labels = obj.input_ids[rows], obj.attention_mask[rows], obj.targets[rows]
    if v is not None and obj.steer_from is not None:
        where = torch.arange(ids.shape[1], device=ids.device)[None, :] >= obj.steer_from.to(ids.device)[rows.cpu()][:, None]
        v = v * where[..., None].to(v.dtype)  # (B, T, d)
    if view is not False:
        hidden = obj.resid[rows] if v is None else obj.resid[rows] + v
        out = view(inputs_embeds=hidden, attention_mask=attn, use_cache=False).last_hidden_state
    else:
        handle = None
        if v is not None:
            layer = engine.layers[engine.basis.layer]

            def add(_m, _i, o):
                h = o[0] if isinstance(o, tuple) else o
                h = h + v
                return (h, *o[1:]) if isinstance(o, tuple) else h

            handle = layer.register_forward_hook(add)
        try:
            out = engine.model.model(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
        finally:
            if handle is not None:
                handle.remove()
    return engine.model.lm_head(out[labels != -100])


def loss(engine, obj: Objective, v: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """L(v) (a scalar with grad through v) and its parts."""
    logits = _upper_logits(engine, obj, v).float()
    labels = obj.targets[obj.targets != -100]
    token_lp = -F.cross_entropy(logits, labels, reduction="none")
    row_of = torch.arange(obj.rows, device=labels.device)[:, None].expand_as(obj.targets)[obj.targets != -100]
    counts = torch.bincount(row_of, minlength=obj.rows).clamp_min(1)
    row_lp = torch.zeros(obj.rows, device=labels.device).index_add(0, row_of, token_lp) / counts  # length-normalised
    kind = obj.kind.to(labels.device)
    nll = -row_lp[kind == 1].mean() if (kind == 1).any() else row_lp.sum() * 0  # a chunk of plain texts has no targets
    parts = {"nll": nll.item()}
    total = nll
    # preference: each prompt's target over its plain answer
    pos, neg = {}, {}
    for r in range(obj.rows):
        if kind[r] == 1:
            pos[int(obj.pair[r])] = row_lp[r]
        elif kind[r] == -1:
            neg[int(obj.pair[r])] = row_lp[r]
    both = [i for i in pos if i in neg]
    if both and PREF > 0:
        margin = torch.stack([pos[i] - neg[i] for i in both])
        pref = -F.logsigmoid(BETA * margin).mean()
        total = total + PREF * pref
        parts["pref"] = pref.item()
        parts["margin"] = margin.mean().item()
    kl_rows = kind[row_of] == 0
    if kl_rows.any() and KL_WEIGHT > 0 and obj.base_logprobs is not None:
        lp = F.log_softmax(logits[kl_rows], dim=-1)
        kl = F.kl_div(lp, obj.base_logprobs, log_target=True, reduction="batchmean")
        total = total + KL_WEIGHT * kl
        parts["kl"] = kl.item()
    parts["loss"] = total.item()
    return total, parts


def split(obj: Objective, pairs: int = CHUNK_PAIRS) -> list[tuple[Objective, float]]:
    """L(v) as chunks: `pairs` prompts' target and plain rows at a time, weighted by their share
    of the prompts, then the plain texts of the KL term (weight 1). The weighted chunk losses sum
    to L(v) (each prompt has one target and one plain row)."""
    kind, pair = obj.kind.cpu(), obj.pair.cpu()
    ids = sorted(set(pair[kind != 0].tolist()))
    out = []
    for start in range(0, len(ids), pairs):
        group = torch.tensor(ids[start : start + pairs])
        out.append((_rows(obj, torch.isin(pair, group) & (kind != 0), base=False), len(group) / len(ids)))
    if (kind == 0).any():
        out.append((_rows(obj, kind == 0, base=True), 1.0))
    return out


def _rows(obj: Objective, rows: torch.Tensor, base: bool) -> Objective:
    """The objective restricted to `rows` (and to their longest row's width)."""
    dev = rows.to(obj.input_ids.device)
    width = int(obj.attention_mask[dev].sum(1).max())
    sub = Objective(obj.input_ids[dev, :width], obj.attention_mask[dev, :width], obj.targets[dev, :width], obj.kind[rows], obj.pair[rows])
    sub.resid = obj.resid[dev, :width] if obj.resid is not None else None
    sub.steer_from = obj.steer_from[rows] if obj.steer_from is not None else None
    sub.base_logprobs = obj.base_logprobs if base else None  # the KL rows keep their order: same positions
    return sub


def chunked_loss(engine, chunks: Sequence[tuple[Objective, float]], vector: Callable[[], torch.Tensor],
                 params: Sequence[torch.Tensor] = ()) -> tuple[float, dict[str, float], list[torch.Tensor]]:
    """L(v) over `split` chunks, one compute-worker call each: its value, its parts and its
    gradient with respect to `params` (`vector()` builds v from them, inside each call)."""
    total, parts = 0.0, {}
    grads = [torch.zeros_like(p) for p in params]
    for chunk, weight in chunks:
        def one(chunk=chunk, weight=weight):
            with torch.enable_grad():
                value, p = loss(engine, chunk, vector())
                g = torch.autograd.grad(weight * value, list(params)) if params else ()
            return p, [x.detach() for x in g]

        p, g = on_compute_thread(one)
        has_targets = bool(chunk.kind.eq(1).any())
        for k, x in p.items():
            if has_targets or k == "kl":  # a plain-text chunk (weight 1) adds only its KL term
                parts[k] = parts.get(k, 0.0) + weight * x
        total += weight * p["loss"]
        grads = [a + b for a, b in zip(grads, g)]
    parts["loss"] = total
    return total, parts, grads


def attribution(engine, obj: Objective) -> torch.Tensor:
    """(d_sae,) first-order change of L per unit weight of each latent at v = 0: negative means
    adding the latent lowers the loss (steer with +), positive means suppressing it does."""
    d_model = engine.basis.directions.shape[1]
    v = torch.zeros(d_model, requires_grad=True, device=engine.model.device)
    _, _, (grad,) = chunked_loss(engine, split(obj), lambda: v, [v])
    return engine.basis.scale * (engine.basis.directions.to(grad.device) @ grad)


def free_share(engine, indices: Sequence[int], weights: Sequence[float], free: torch.Tensor | None) -> float:
    """|free| / (|SAE part| + |free|), `free` in residual units: how much of the steering no
    labelled feature explains (0 without a free vector)."""
    if free is None:
        return 0.0
    with torch.no_grad():
        sae = steering_vector(engine, indices, weights, None)
    f = float(free.norm())
    return round(f / max(float(sae.norm()) + f, 1e-9), 4)


def steering_vector(engine, indices: Sequence[int], weights: Sequence[float] | torch.Tensor, free: torch.Tensor | None) -> torch.Tensor:
    w = weights if isinstance(weights, torch.Tensor) else torch.tensor([float(x) for x in weights])
    dirs = engine.basis.directions[list(indices)].to(w.device)
    v = engine.basis.scale * (w @ dirs)
    return v + free if free is not None else v
