"""Token log-likelihoods through the fast decoder's vocabulary head: the judge's perplexities.

Scoring text needs log p(token) = logit(token) - logsumexp(all logits) at every position of every
answer (~2,300 positions per auto-steer epoch, three readings each). Through the exact fp32 head
that was half of the metric judge's time on 2 cores: a (positions x 576) x (576 x 49152) fp32
matmul and a log-softmax written out over the whole vocabulary. On the low-precision paths the
head is scored like a decode step instead (`decode.FastDecoder._rescore`):

- every logit from the head's bfloat16 copy (oneDNN bfloat16 matmuls run ~4-6x faster than
  fp32 ones on these CPUs),
- the target token's logit and the RESCORE best candidates' recomputed exactly from the fp32
  rows, so the numerator is exact and so is the part of the normaliser that carries the mass,
- log-sum-exp over exact best + approximate rest, in place on the bfloat16 logits: a float32
  log-softmax over the vocabulary, written out and read back, cost as much as the matmul, and
  masking the candidates out with scatters cost more than everything else together.

Per token the result is within ~0.005 nats of the exact fp32 head; answers' perplexities move by
at most ~0.3% and the judge's agreement with the hand labels is unchanged (docs/decoding.md).
The float32 path stays exact cross-entropy (the tests compare it with the reference model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RESCORE = 16  # best candidates per position whose logits are recomputed exactly
ROWS = 256  # positions per head matmul (bounds the (rows x vocabulary) logits in memory)


@torch.no_grad()
def token_nll(fast, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log p(target) per position under the unsteered model: `hidden` (N, d) final normed hidden
    states (FastDecoder.hidden_states), `targets` (N,) the tokens they predict."""
    if fast.lm_head.precision == "float32":
        return F.cross_entropy(hidden @ fast.head_exact.T, targets, reduction="none")
    return torch.cat([_rescored_nll(fast, h, t) for h, t in zip(hidden.split(ROWS), targets.split(ROWS))])


def _rescored_nll(fast, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    logits = F.linear(h.to(torch.bfloat16), fast.lm_head.w16)  # (n, V) bfloat16, the only big tensor
    cand = logits.topk(min(RESCORE, logits.shape[-1]), dim=-1).indices  # (n, K)
    exact_cand = torch.einsum("nd,nkd->nk", h, fast.head_exact[cand])
    exact_target = (h * fast.head_exact[t]).sum(-1)
    in_cand = (cand == t[:, None]).any(-1)
    # exp of every approximate logit in place, shifted by the best exact one (nothing overflows),
    # summed; then the candidates' and the target's approximate terms taken out again (the same
    # bfloat16 values, so they cancel), and their exact terms put in. Each token counts once.
    shift = exact_cand[:, :1].to(torch.bfloat16)
    e = logits.sub_(shift).exp_()
    gone = e.gather(1, cand).float().sum(-1) + torch.where(in_cand, 0.0, e.gather(1, t[:, None])[:, 0].float())
    rest = (e.sum(-1).float() - gone).clamp_min(0).log() + shift[:, 0].float()
    exact = torch.cat([exact_cand, torch.where(in_cand, float("-inf"), exact_target)[:, None]], dim=1)
    return torch.logaddexp(rest, torch.logsumexp(exact, dim=-1)) - exact_target
