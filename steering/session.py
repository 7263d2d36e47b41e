"""One loaded model + SAE per process, shared by the CLI, the Q&A service and the app.

Loading is slow and the model is read-only during generation, so every caller gets the same
engine; steering state is per call (see engine.SteeringEngine.steering), never stored here.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch

from .engine import Steer, SteeringEngine
from .models import ModelPreset, load_model, load_sae, resolve_preset
from .profile import FeatureWeight, ModelRef, ProfileError, SAERef, SteeringProfile, provenance, validate
from .saes import load_basis


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


def engine_for_profile(profile: SteeringProfile) -> SteeringEngine:
    """The engine of the profile's preset, after checking the profile fits its model and SAE."""
    rt = get_runtime(profile.model.preset)
    validate(profile, rt.model_ref, rt.sae_ref)
    return rt.engine


def weights_for(profile: SteeringProfile, engine: SteeringEngine) -> Steer:
    """The profile's weights (and free direction) in the engine's units: a profile keeps meaning
    what it meant when saved even if the SAE's strength scale was recalibrated since."""
    ratio = profile.scale / engine.basis.scale if engine.basis is not None else 1.0
    free = None
    if profile.free_direction is not None:
        d_model = engine.model.config.hidden_size
        if len(profile.free_direction) != d_model:
            raise ProfileError(f"profile {profile.name!r}: free_direction has {len(profile.free_direction)} values, the model's hidden size is {d_model}")
        free = torch.tensor(profile.free_direction) * ratio
    return Steer({i: w * ratio for i, w in profile.weights().items()}, free)


def system_for(profile: SteeringProfile) -> str | None:
    """The system prompt the profile answers with (its mode), or None."""
    return profile.system_prompt if profile.mode == "prompted_steered" and profile.system_prompt else None


def blank_profile(rt: Runtime, name: str = "unsteered", behavior: str = "") -> SteeringProfile:
    """An all-zero profile for a runtime: generates exactly the unsteered answer."""
    return make_profile(rt, name, behavior, {}, provenance=provenance())


def make_profile(rt: Runtime, name: str, behavior: str, weights: dict[int, float], labels: dict[int, str] | None = None, **kw) -> SteeringProfile:
    labels = labels or {}
    return SteeringProfile(
        name=name,
        behavior=behavior,
        model=rt.model_ref,
        sae=rt.sae_ref,
        scale=rt.engine.basis.scale,
        features=[FeatureWeight(int(i), labels.get(i, ""), float(w)) for i, w in weights.items()],
        **kw,
    )
