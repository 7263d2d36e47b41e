"""A profile meets a runtime: make one from a runtime's model and SAE, check that one fits, and
turn one into the engine's steering weights and system prompt."""

from __future__ import annotations

import torch

from ..runtime.basis import Steer
from ..runtime.engine import SteeringEngine
from ..runtime.shared import Runtime, get_runtime
from .profile import FeatureWeight, ProfileError, SteeringProfile, provenance, validate


def engine_for_profile(profile: SteeringProfile) -> SteeringEngine:
    """The engine of the profile's preset, after checking the profile fits its model and SAE."""
    rt = get_runtime(profile.model.preset)
    validate(profile, rt.model_ref, rt.sae_ref)
    return rt.engine


def weights_for(profile: SteeringProfile, engine: SteeringEngine) -> Steer:
    """The profile's weights (and free and opening directions) in the engine's units: a profile
    keeps meaning what it meant when saved even if the SAE's strength scale was recalibrated since."""
    ratio = profile.scale / engine.basis.scale if engine.basis is not None else 1.0
    free, opening = (_vector(profile, key, engine, ratio) for key in ("free_direction", "opening_direction"))
    return Steer({i: w * ratio for i, w in profile.weights().items()}, free, opening, profile.opening_tokens if opening is not None else 0)


def _vector(profile: SteeringProfile, key: str, engine: SteeringEngine, ratio: float) -> torch.Tensor | None:
    values = getattr(profile, key)
    if values is None:
        return None
    d_model = engine.model.config.hidden_size
    if len(values) != d_model:
        raise ProfileError(f"profile {profile.name!r}: {key} has {len(values)} values, the model's hidden size is {d_model}")
    return torch.tensor(values) * ratio


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
