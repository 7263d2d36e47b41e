"""Fold a steering profile into an ordinary checkpoint that any inference server can load.

A constant vector added to layer L's output equals a bias on layer L's MLP `down_proj`, because
the MLP output is the last thing added to the residual stream in a Llama block. With
`mlp_bias=True` (all other biases zero) vLLM, TGI and llama.cpp serve it with no hooks.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .models import decoder_layers

# Architectures whose decoder block ends with `h + mlp(norm(h))`, mlp ending in down_proj, and
# whose config has `mlp_bias`. Gemma-2 normalises the MLP output again: a bias would not be exact.
EXACT_FOLD = {"llama"}


class ExportError(ValueError):
    """The profile cannot be folded exactly into this model."""


def folded_model(model, layer: int, vector: torch.Tensor):
    """A copy of `model` with `vector` as layer `layer`'s down_proj bias (other MLP biases zero)."""
    from transformers import AutoModelForCausalLM

    cfg = model.config
    if cfg.model_type not in EXACT_FOLD:
        raise ExportError(
            f"cannot fold steering into a {cfg.model_type!r} model exactly (supported: {', '.join(sorted(EXACT_FOLD))}); "
            "serve it with the steering hook instead"
        )
    new_cfg = cfg.__class__.from_dict({**cfg.to_dict(), "mlp_bias": True})
    new = AutoModelForCausalLM.from_config(new_cfg, dtype=next(model.parameters()).dtype)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.endswith(".bias") for k in missing):
        raise ExportError(f"state dicts do not line up: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for block in decoder_layers(new):
            for proj in (block.mlp.gate_proj, block.mlp.up_proj, block.mlp.down_proj):
                proj.bias.zero_()
        decoder_layers(new)[layer].mlp.down_proj.bias.copy_(vector.to(new.dtype))
    new.generation_config = model.generation_config
    return new.eval()


SERVE_README = """# {name}: steered {hub_id}

Behaviour: "{behavior}"

This is an ordinary Hugging Face checkpoint. The steering profile `{name}` (SAE `{sae}`, layer
{layer}) is folded into layer {layer}'s MLP `down_proj` bias (`mlp_bias: true`; every other MLP
bias is zero), so no hooks are needed: any server that loads Llama checkpoints serves the steered
model as it is.

Features folded in:

{features}
{extra}
## Serve it

- vLLM: `vllm serve {dir}` then query the OpenAI-compatible API at http://localhost:8000/v1
- TGI: `docker run -p 8080:80 -v {dir}:/model ghcr.io/huggingface/text-generation-inference --model-id /model`
- llama.cpp: `python convert_hf_to_gguf.py {dir} --outfile steered.gguf` (from the llama.cpp repo), then
  `llama-server -m steered.gguf`. llama.cpp's Llama loader reads the `ffn_down` bias.
- transformers: `AutoModelForCausalLM.from_pretrained("{dir}")`

Tokenizer and chat template are included. Answers from this checkpoint match the hooked model's
greedy tokens (checked by the project's tests).
"""


def export_profile(profile, out_dir: str | Path) -> Path:
    """Write the folded checkpoint, tokenizer and a serving README to `out_dir`."""
    from .session import engine_for_profile, weights_for

    engine = engine_for_profile(profile)
    vector = engine.steering_vectors([weights_for(profile, engine)])[0]
    model = folded_model(engine.model, engine.basis.layer, vector)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    engine.tokenizer.save_pretrained(out)
    feats = "\n".join(f"- latent {f.index} ({f.label or 'no label'}): weight {f.weight:+.2f}" for f in profile.features) or "- none (unsteered)"
    extra = ""
    if profile.free_direction is not None:
        extra += (f"- a learned direction that is NOT an SAE feature: {profile.free_share:.0%} of the steering norm "
                  "(`free_direction` in steering_profile.json)\n")
    if profile.mode == "prompted_steered":
        extra += (f"\nThe app answers with this system prompt as well; send it as the system message to get the same "
                  f"answers:\n\n> {profile.system_prompt}\n")
    (out / "README.md").write_text(
        SERVE_README.format(
            name=profile.name, hub_id=profile.model.hub_id, behavior=profile.behavior, sae=profile.sae.id,
            layer=engine.basis.layer, features=feats, extra=extra, dir=out,
        )
    )
    (out / "steering_profile.json").write_text(json.dumps(profile.to_dict(), indent=2) + "\n")
    return out
