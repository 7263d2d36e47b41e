"""One loaded model + SAE per process, shared by the CLI, the Q&A service and the app.

Loading is slow and the model is read-only during generation, so every caller gets the same
engine; steering state is per call (see engine.SteeringEngine.steering), never stored here.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from .basis import load_basis
from .engine import SteeringEngine
from .loading import load_model, load_sae
from .models import ModelPreset, ModelRef, SAERef, resolve_preset


@dataclass
class Runtime:
    preset: ModelPreset
    engine: SteeringEngine
    model_ref: ModelRef
    sae_ref: SAERef


_lock = threading.Lock()
_runtimes: dict[str, Runtime] = {}


DECODE_DEFAULT = "auto"


def decode_path() -> str:
    """How the shared runtime decodes: STEERING_DECODE = int8 (default), bfloat16, float32 (the
    fast path at full precision) or reference (transformers generate with a hook)."""
    return os.environ.get("STEERING_DECODE", DECODE_DEFAULT).strip().lower() or DECODE_DEFAULT


def get_runtime(preset: str | None = None, device: str = "cpu") -> Runtime:
    """The process-wide runtime for a preset, loaded on first use."""
    p = resolve_preset(preset)
    with _lock:
        if p.id not in _runtimes:
            model, tok = load_model(p, device)
            sae = load_sae(p, device)
            basis = load_basis(p, sae, model, tok)
            engine = SteeringEngine(model, tok, basis, sae, decode=decode_path())
            engine.start_scheduler()  # one worker decodes for every caller in the process
            _runtimes[p.id] = Runtime(
                p,
                engine,
                ModelRef(p.id, p.hub_id, p.revision),
                SAERef(p.sae.ident, sae.cfg.metadata.hook_name, basis.layer, basis.d_sae),
            )
        return _runtimes[p.id]
