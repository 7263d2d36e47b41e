"""SAE quality on held-out text: variance explained, L0, dead latents, CE loss recovered.

CE recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean), where the layer's output is
replaced by the SAE reconstruction (spliced) or by zeros (zero-ablated) at every position the
SAE covers (the first position and special tokens are left as they were).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..runtime.basis import read_calibration
from ..runtime.engine import GenerationConfig
from ..runtime.models import ModelPreset, decoder_layers
from ..runtime.shared import get_runtime
from .activations import residual_batches
from .corpus import chat_text, seed_questions
from .index import load_index
from .model_card import model_card


@dataclass
class SAEQuality:
    tokens: int
    variance_explained: float
    l0: float
    dead_fraction: float  # latents never active on these tokens
    ce_clean: float
    ce_spliced: float
    ce_zero_ablated: float
    ce_recovered: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _ce_with(model, input_ids, attention_mask, layer: int, replace) -> tuple[float, int]:
    """Summed next-token CE and count, with the layer's output passed through `replace`."""

    def hook(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        h = replace(h)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = decoder_layers(model)[layer].register_forward_hook(hook) if replace else None
    try:
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    finally:
        if handle:
            handle.remove()
    target = input_ids[:, 1:]
    valid = attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(), reduction="none")
    return float(loss[valid.flatten()].sum()), int(valid.sum())


def evaluate_sae(model, tokenizer, sae, layer: int, texts: Sequence[str], batch_size: int = 8) -> SAEQuality:
    n_tok = 0
    sq_err = 0.0
    x_sum = None
    x_sq = 0.0
    l0_sum = 0.0
    ever_active = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    ce = {"clean": [0.0, 0], "spliced": [0.0, 0], "zero": [0.0, 0]}
    for batch in residual_batches(model, tokenizer, texts, layer, batch_size):
        x = batch.hidden[batch.mask].float()
        with torch.no_grad():
            acts = sae.encode(x)
            recon = sae.decode(acts)
        n_tok += x.shape[0]
        sq_err += float((x - recon).pow(2).sum())
        x_sum = x.sum(0) if x_sum is None else x_sum + x.sum(0)
        x_sq += float(x.pow(2).sum())
        l0_sum += float((acts > 0).sum())
        ever_active |= (acts > 0).any(0).cpu()

        mask = batch.mask[..., None]
        attn = batch.attention_mask

        def splice(h, mask=mask):
            with torch.no_grad():
                r = sae.decode(sae.encode(h.float())).to(h.dtype)
            return torch.where(mask, r, h)

        for name, fn in (("clean", None), ("spliced", splice), ("zero", lambda h, mask=mask: torch.where(mask, torch.zeros_like(h), h))):
            s, c = _ce_with(model, batch.input_ids, attn, layer, fn)
            ce[name][0] += s
            ce[name][1] += c
    # Total variance around the mean: E||x||^2 - ||E x||^2, summed over tokens.
    total_var = x_sq - float(x_sum.pow(2).sum()) / n_tok
    clean, spliced, zero = (ce[k][0] / ce[k][1] for k in ("clean", "spliced", "zero"))
    return SAEQuality(
        tokens=n_tok,
        variance_explained=1.0 - sq_err / total_var,
        l0=l0_sum / n_tok,
        dead_fraction=float((~ever_active).float().mean()),
        ce_clean=clean,
        ce_spliced=spliced,
        ce_zero_ablated=zero,
        ce_recovered=(zero - spliced) / (zero - clean),
    )



def heldout_texts(engine, tokenizer, questions: Sequence[str], max_new_tokens: int = 64) -> list[str]:
    """Chat transcripts of the model's greedy answers to questions the SAE never trained on."""
    texts = []
    for start in range(0, len(questions), 40):
        qs = list(questions[start : start + 40])
        outs = engine.generate(qs, config=GenerationConfig(max_new_tokens=max_new_tokens))
        texts += [chat_text(tokenizer, q, g.text) for q, g in zip(qs, outs)]
    return texts


def evaluate_preset(preset: ModelPreset, questions: int = 120) -> dict:
    """Measure a local SAE on the model's answers to `questions` held-out seed questions, then
    write `quality.json` and the model card (`README.md`) next to it; returns the figures."""
    folder = preset.sae.local_dir
    recipe = json.loads((folder / "recipe.json").read_text())
    rt = get_runtime(preset.id)
    engine = rt.engine
    # Questions after the ones the build used for the model's own answers: never in the corpus.
    used = recipe["build_config"]["self_answers"]
    asked = seed_questions(recipe["build_config"]["seed"])[used : used + questions]
    texts = heldout_texts(engine, engine.tokenizer, asked)
    quality = evaluate_sae(engine.model, engine.tokenizer, engine.sae, engine.basis.layer, texts).to_dict()
    quality["questions"] = len(asked)
    index = load_index(preset)
    if index is not None:
        quality["dead_fraction_index"] = sum(r.frequency == 0 for r in index.records) / len(index)
        quality["index_tokens"] = index.meta.get("tokens")
    else:
        quality["dead_fraction_index"] = quality["dead_fraction"]
    (folder / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    (folder / "README.md").write_text(model_card(folder.name, recipe, quality, read_calibration(preset)))
    return quality
