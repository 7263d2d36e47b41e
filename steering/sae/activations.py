"""Residual-stream activations at the SAE layer, for batches of texts.

Runs the model only up to the layer it needs, and masks out what the SAE never sees: the first
position (its norm is huge), special tokens and padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ..runtime.models import decoder_layers


class _Stop(Exception):
    pass


@dataclass
class ResidualBatch:
    texts: list[str]
    input_ids: torch.Tensor  # (B, T), left-padded
    attention_mask: torch.Tensor  # (B, T)
    hidden: torch.Tensor  # (B, T, d_model) output of the layer
    mask: torch.Tensor  # (B, T) bool: positions the SAE should see


def layer_output(model, layer: int, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The residual stream after `layer`, skipping the layers above it."""
    captured: list[torch.Tensor] = []

    def grab(_m, _i, out):
        captured.append(out[0] if isinstance(out, tuple) else out)
        raise _Stop

    handle = decoder_layers(model)[layer].register_forward_hook(grab)
    try:
        with torch.no_grad():
            model.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured[0]


def special_ids(tokenizer) -> torch.Tensor:
    return torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)


def residual_batches(
    model, tokenizer, texts: Sequence[str], layer: int, batch_size: int = 16, max_tokens: int = 128
) -> Iterator[ResidualBatch]:
    """Yield residuals for `texts` in batches of similar length (shortest first)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        chunk = [texts[i] for i in order[start : start + batch_size]]
        ids = tokenizer(chunk, add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]
        yield residuals_for_ids(model, tokenizer, ids, layer, chunk)


def residuals_for_ids(model, tokenizer, id_lists: Sequence[Sequence[int]], layer: int, texts: Sequence[str] | None = None) -> ResidualBatch:
    """Residuals for token-id sequences (one batch, left-padded)."""
    width = max(len(x) for x in id_lists)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(x)) + list(x) for x in id_lists], dtype=torch.long, device=model.device)
    attn = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in id_lists], dtype=torch.long, device=model.device)
    hidden = layer_output(model, layer, ids, attn)
    mask = attn.bool() & ~torch.isin(ids, special_ids(tokenizer).to(ids.device))
    first = attn.float().argmax(dim=1)  # first real token of each left-padded row
    mask[torch.arange(len(id_lists)), first] = False
    return ResidualBatch(list(texts) if texts is not None else [""] * len(id_lists), ids, attn, hidden, mask)
