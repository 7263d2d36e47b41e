"""Export a steering profile for inference servers that know nothing about SAEs.

Two formats:

- `checkpoint` (default): fold the steering into an ordinary Hugging Face checkpoint. A constant
  vector added to layer L's output equals a bias on layer L's MLP `down_proj`, because the MLP
  output is the last thing added to the residual stream in a Llama block. With `mlp_bias=True`
  (all other biases zero) vLLM, TGI and llama.cpp serve it with no hooks. Its
  `generation_config.json` carries the app's decoding settings (see `app_generation_config`), so
  plain greedy `generate()` gives the app's answer.
- `control-vector`: a llama.cpp control-vector GGUF (`--control-vector FILE`) to apply to the
  plain model; see `write_control_vector`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gguf
import numpy as np
import torch
from transformers import AutoModelForCausalLM

from ..runtime.engine import GenerationConfig
from ..runtime.models import decoder_layers
from .bind import engine_for_profile, weights_for
from .profile import opening_summary

# Architectures whose decoder block ends with `h + mlp(norm(h))`, mlp ending in down_proj, and
# whose config has `mlp_bias`. Gemma-2 normalises the MLP output again: a bias would not be exact.
EXACT_FOLD = {"llama"}


class ExportError(ValueError):
    """The profile cannot be folded exactly into this model."""


def folded_model(model, layer: int, vector: torch.Tensor):
    """A copy of `model` with `vector` as layer `layer`'s down_proj bias (other MLP biases zero)."""
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
    new.generation_config = copy.deepcopy(model.generation_config)
    return new.eval()


def app_generation_config(model, tokenizer):
    """The model's generation config with the app's decoding settings, from `engine.GenerationConfig`'s
    defaults (greedy when its temperature is 0, its repetition penalty and answer length).

    `transformers` refuses to save a temperature with `do_sample=False`, so greedy is
    `do_sample=False` alone; servers that ignore `do_sample` (vLLM) need `temperature=0` per request.
    """
    app = GenerationConfig()
    gc = copy.deepcopy(model.generation_config)
    if app.temperature > 0:
        gc.do_sample, gc.temperature, gc.top_p = True, app.temperature, app.top_p
    else:
        gc.do_sample, gc.temperature, gc.top_p, gc.top_k = False, None, None, None
    gc.repetition_penalty = app.repetition_penalty
    gc.max_new_tokens = app.max_new_tokens
    gc.eos_token_id = tokenizer.eos_token_id
    gc.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gc.bos_token_id = tokenizer.bos_token_id
    return gc


def control_vector_layer(hook_layer: int, n_layers: int) -> int:
    """The llama.cpp control-vector index `N` (tensor `direction.N`) that steers like our hook on
    decoder layer `hook_layer` (0-based Hugging Face index: the SAE hook point `model.layers.L`
    reads and steers the OUTPUT of `model.model.layers[L]`).

    llama.cpp adds `direction.N` to the output of its block `N` (0-based, the same numbering as
    Hugging Face's `model.layers`): the loader stores `direction.N` at data offset `(N - 1) * n_embd`
    and the graph applies data offset `(il - 1) * n_embd` after block `il`; there is no slot for
    block 0. So the mapping is the identity, `N = L`, which was checked against llama.cpp itself
    (the kids' vector at offset (15 - 1) x n_embd gives the hooked engine's greedy text for the
    layer-15 SAE). Layer 0's output cannot be steered by a control vector.
    """
    if not 0 <= hook_layer < n_layers:
        raise ExportError(f"steering layer {hook_layer} is not a decoder layer of this {n_layers}-layer model")
    if hook_layer == 0:
        raise ExportError("llama.cpp control vectors cannot steer decoder layer 0's output (direction.0 is invalid)")
    return hook_layer


def write_control_vector(path: str | Path, vector: torch.Tensor, hook_layer: int, n_layers: int, model_hint: str) -> Path:
    """Write a llama.cpp control-vector GGUF (the format repeng exports).

    `general.architecture = "controlvector"`, `controlvector.model_hint`, `controlvector.layer_count`
    (the model's decoder layers), and one float32 `direction.N` tensor of the hidden size for every
    layer llama.cpp can steer (N = 1 .. n_layers - 1): `vector` at `control_vector_layer(hook_layer)`,
    zeros elsewhere (a zero direction changes nothing, and `--control-vector-layer-range` stays usable).
    Use it with the PLAIN model: `llama-cli -m model.gguf --control-vector FILE`.
    """
    target = control_vector_layer(hook_layer, n_layers)
    vec = vector.detach().float().cpu().numpy().astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", model_hint)
    writer.add_uint32("controlvector.layer_count", n_layers)
    for n in range(1, n_layers):
        writer.add_tensor(f"direction.{n}", vec if n == target else np.zeros_like(vec))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


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

Tokenizer and chat template are included. `generation_config.json` holds the app's decoding
settings (greedy, `repetition_penalty` {repetition_penalty}, at most {max_new_tokens} new tokens):
plain `model.generate(...)` with it gives the app's answers token for token at full precision
(checked by the project's tests; the app's int8 decoding can differ in a near tie). vLLM reads the repetition penalty from it but samples unless the request sends
`temperature: 0`. With llama.cpp, decode like the app with `--temp 0 --repeat-penalty {repetition_penalty}
--repeat-last-n -1` (llama.cpp penalises only the last 64 tokens by default, the app the whole context;
not checked token for token by this project).
"""


FORMATS = ("checkpoint", "control-vector")


def profile_vector(profile, engine) -> torch.Tensor:
    """The profile's steering vector in the residual stream (what the engine's hook adds)."""
    if engine.basis is None:
        raise ExportError("this model has no SAE: nothing to export")
    return engine.steering_vectors([weights_for(profile, engine)])[0]


def export_profile(profile, out_dir: str | Path, fmt: str = "checkpoint") -> Path:
    """Export `profile` to `out_dir` in format `fmt` (see FORMATS); returns the folder."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    engine = engine_for_profile(profile)
    if fmt == "control-vector":
        return export_control_vector(profile, engine, out_dir)
    return export_checkpoint(profile, engine, out_dir)


CVEC_README = """# {name}: llama.cpp control vector for {hub_id}

Behaviour: "{behavior}"

`{file}` is a llama.cpp control vector (`general.architecture = controlvector`, the format repeng
writes): the steering profile `{name}` (SAE `{sae}`) as `direction.{n}`, added to the output of
decoder block {layer} (0-based); every other `direction.N` is zero. Apply it to the PLAIN model
converted to GGUF (`python convert_hf_to_gguf.py` from the llama.cpp repo):

    llama-cli -m model.gguf --control-vector {file} --temp 0 --repeat-penalty {repetition_penalty} --repeat-last-n -1

(`--control-vector-scaled {file} S` scales it; `--control-vector-layer-range {n} {n}` is the same here.)
The app decodes greedily with repetition penalty {repetition_penalty} over the whole context (prompt
included); the flags above are the closest llama.cpp equivalent. The project's tests check the
vector and the layer mapping; llama.cpp itself is not run by them.
{extra}
Features:

{features}
"""


def _features_md(profile) -> tuple[str, str]:
    feats = "\n".join(f"- latent {f.index} ({f.label or 'no label'}): weight {f.weight:+.2f}" for f in profile.features) or "- none (unsteered)"
    extra = ""
    if profile.free_direction is not None:
        extra += (f"- a learned direction that is NOT an SAE feature: {profile.free_share:.0%} of the steering norm "
                  "(`free_direction` in steering_profile.json)\n")
    if opening := opening_summary(profile):
        extra += (f"- NOT in this export: {opening} (`opening_direction`, `opening_tokens` in steering_profile.json). "
                  "It acts on a few positions only, which a constant bias or control vector cannot express, so the exported "
                  "model answers without it\n")
    if profile.mode == "prompted_steered":
        extra += (f"\nThe app answers with this system prompt as well; send it as the system message to get the same "
                  f"answers:\n\n> {profile.system_prompt}\n")
    return feats, extra


def export_control_vector(profile, engine, out_dir: str | Path) -> Path:
    """Write `<name>.gguf` (llama.cpp control vector), a README and the profile to `out_dir`."""
    out = Path(out_dir)
    n_layers = len(decoder_layers(engine.model))
    name = f"{profile.name}.gguf"
    write_control_vector(out / name, profile_vector(profile, engine), engine.basis.layer, n_layers, engine.model.config.model_type)
    feats, extra = _features_md(profile)
    (out / "README.md").write_text(CVEC_README.format(
        name=profile.name, hub_id=profile.model.hub_id, behavior=profile.behavior, file=name, sae=profile.sae.id,
        n=control_vector_layer(engine.basis.layer, n_layers), layer=engine.basis.layer,
        repetition_penalty=GenerationConfig().repetition_penalty, extra=extra, features=feats,
    ))
    (out / "steering_profile.json").write_text(json.dumps(profile.to_dict(), indent=2) + "\n")
    return out


def export_checkpoint(profile, engine, out_dir: str | Path) -> Path:
    """Write the folded checkpoint (with the app's generation config), tokenizer and a serving README."""
    model = folded_model(engine.model, engine.basis.layer, profile_vector(profile, engine))
    model.generation_config = app_generation_config(engine.model, engine.tokenizer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    engine.tokenizer.save_pretrained(out)
    feats, extra = _features_md(profile)
    gc = model.generation_config
    (out / "README.md").write_text(
        SERVE_README.format(
            name=profile.name, hub_id=profile.model.hub_id, behavior=profile.behavior, sae=profile.sae.id,
            layer=engine.basis.layer, features=feats, extra=extra, dir=out,
            repetition_penalty=gc.repetition_penalty, max_new_tokens=gc.max_new_tokens,
        )
    )
    (out / "steering_profile.json").write_text(json.dumps(profile.to_dict(), indent=2) + "\n")
    return out
