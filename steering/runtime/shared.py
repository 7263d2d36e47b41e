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
from .scheduler import use_for_compute


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
            _runtimes[p.id] = _in_passing_thread(lambda: _load(p, device))
        return _runtimes[p.id]


def _load(p: ModelPreset, device: str) -> Runtime:
    model, tok = load_model(p, device)
    sae = load_sae(p, device)
    basis = load_basis(p, sae, model, tok)
    engine = SteeringEngine(model, tok, basis, sae, decode=decode_path())
    use_for_compute(engine.start_scheduler())  # one worker decodes (and computes) for every caller
    return Runtime(p, engine, ModelRef(p.id, p.hub_id, p.revision), SAERef(p.sae.ident, sae.cfg.metadata.hook_name, basis.layer, basis.d_sae))


def _in_passing_thread(fn):
    """`fn()` in a thread that ends with it. Loading runs torch's multi-threaded ops, which give
    the calling thread an OpenMP thread team for as long as that thread lives; with a second team
    (the worker's) on 2 cores, libgomp stops spin-waiting and every decode step gets ~1.5x slower.
    After this, the compute worker's team is the process's only one (see scheduler.call)."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            out["error"] = exc

    t = threading.Thread(target=run, name="runtime-load")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
