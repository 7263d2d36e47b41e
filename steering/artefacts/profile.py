"""The saved steering profile: a versioned JSON file, validated on load. Never pickled.

A profile names the model and SAE it was learned on; loading it against another model or SAE,
with an index out of range or a weight outside [-1, 1], is a clear `ProfileError`.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..runtime.models import ModelRef, SAERef

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # version 1 has no system prompt, mode or free direction; 2 no opening
MODES = ("steered", "prompted_steered")
# The longest free direction a profile may carry, in units of `scale` (as long as four features at
# full weight): learned ones are about 0.1-1, and one fitted to garble-free dog talk was 0.5 long.
FREE_MAX_NORM = 4.0
# The opening direction acts on a few positions only: fitted ones are 4-5 long (units of scale).
OPENING_MAX_NORM, OPENING_MAX_TOKENS = 8.0, 32


class ProfileError(InputError):
    """A profile file that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class FeatureWeight:
    index: int
    label: str
    weight: float


@dataclass
class SteeringProfile:
    name: str
    behavior: str
    model: ModelRef
    sae: SAERef
    scale: float
    features: list[FeatureWeight]
    prompts: list[str] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)  # {"epochs": [...], "held_out": {...}}
    provenance: dict[str, Any] = field(default_factory=dict)
    # How to answer: "steered" (vector only) or "prompted_steered" (the behaviour as a system
    # prompt as well); the held-out check picks the better one.
    mode: str = "steered"
    system_prompt: str = ""
    # A learned vector that is NOT an SAE feature (units of `scale`, one float per hidden unit),
    # and its share of the total steering norm; None when every bit of steering is labelled.
    free_direction: list[float] | None = None
    free_share: float = 0.0
    # An in-character opening (autosteer/opening.py): another learned vector that is NOT an SAE
    # feature (units of `scale`), added only at the prompt's last position and at the first
    # `opening_tokens` answer tokens; None when the profile has none.
    opening_direction: list[float] | None = None
    opening_tokens: int = 0
    schema_version: int = SCHEMA_VERSION

    def weights(self) -> dict[int, float]:
        """Feature index -> weight, zeros dropped (an all-zero profile is unsteered)."""
        return {f.index: f.weight for f in self.features if f.weight != 0.0}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SteeringProfile:
        return _parse(data)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Validate, then write atomically; `extra` fields (a curated profile's `display_name` and
        `description`) go first, beside the schema's."""
        validate(self)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({**(extra or {}), **self.to_dict()}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


HEADS_UP = "heads-up"  # a provenance note "heads-up: ...": the model barely showed the behaviour when told it (autosteer.targets)


def heads_up_note(warning: str) -> str:
    return f"{HEADS_UP}: {warning}"


def has_heads_up(notes) -> bool:
    """Whether a profile's (or a run's) notes carry the heads-up."""
    return any(str(n).startswith(HEADS_UP + ":") for n in notes or [])


def scaled(profile: SteeringProfile, strength: float, note: str = "") -> SteeringProfile:
    """A copy steering in the same directions, gentler: every feature weight and the free
    direction multiplied by `strength` (0 < strength <= 1; the free direction's share of the norm
    is unchanged), with `note` added to the provenance's notes."""
    if not (isinstance(strength, (int, float)) and 0 < strength <= 1):
        raise ProfileError(f"strength should be above 0 and at most 1, not {strength!r}")
    notes = list(profile.provenance.get("notes", [])) + ([note] if note else [])
    return replace(
        profile,
        features=[replace(f, weight=round(f.weight * strength, 4)) for f in profile.features],
        free_direction=None if profile.free_direction is None else [v * strength for v in profile.free_direction],
        opening_direction=None if profile.opening_direction is None else [v * strength for v in profile.opening_direction],
        provenance={**profile.provenance, "notes": notes},
    )


def opening_summary(profile: SteeringProfile) -> str:
    """One phrase about the profile's in-character opening for the screens and exports ("" without one)."""
    if profile.opening_direction is None:
        return ""
    return (f"an in-character opening (a learned direction, NOT an SAE feature) steers where each answer starts: "
            f"the question's last position and the first {profile.opening_tokens} answer tokens")


def provenance(judge: str = "", optimiser: str = "", **extra) -> dict[str, Any]:
    """Date and library versions for a new profile."""
    versions = {}
    for pkg in ("torch", "transformers", "sae-lens"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "judge": judge,
        "optimiser": optimiser,
        "versions": versions,
        **extra,
    }


def _req(data: dict, key: str, kind, where: str):
    if key not in data:
        raise ProfileError(f"{where}: missing field {key!r}")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProfileError(f"{where}: field {key!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _opt(data: dict, key: str, kind, default):
    """An optional field: `default` when missing or null, else checked like a required one."""
    return default if data.get(key) is None else _req(data, key, kind, "profile")


def _parse(data: Any) -> SteeringProfile:
    if not isinstance(data, dict):
        raise ProfileError("profile: expected a JSON object")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ProfileError(f"profile: schema_version {version!r} is not supported (expected one of {READABLE_VERSIONS})")
    m = _req(data, "model", dict, "profile")
    s = _req(data, "sae", dict, "profile")
    feats = _req(data, "features", list, "profile")
    features = []
    for i, f in enumerate(feats):
        if not isinstance(f, dict):
            raise ProfileError(f"features[{i}]: expected an object")
        features.append(
            FeatureWeight(_req(f, "index", int, f"features[{i}]"), str(f.get("label", "")), _req(f, "weight", float, f"features[{i}]"))
        )
    profile = SteeringProfile(
        name=_req(data, "name", str, "profile"),
        behavior=_req(data, "behavior", str, "profile"),
        model=ModelRef(_req(m, "preset", str, "model"), _req(m, "hub_id", str, "model"), str(m.get("revision", "main"))),
        sae=SAERef(_req(s, "id", str, "sae"), _req(s, "hook", str, "sae"), _req(s, "layer", int, "sae"), _req(s, "d_sae", int, "sae")),
        scale=_req(data, "scale", float, "profile"),
        features=features,
        prompts=_opt(data, "prompts", list, []),
        scores=data.get("scores", {}) or {},
        provenance=data.get("provenance", {}) or {},
        mode=str(data.get("mode", "steered")),
        system_prompt=_opt(data, "system_prompt", str, ""),
        free_direction=_vector(data.get("free_direction"), "free_direction"),
        free_share=_opt(data, "free_share", float, 0.0),
        opening_direction=_vector(data.get("opening_direction"), "opening_direction"),
        opening_tokens=_opt(data, "opening_tokens", int, 0),
    )
    validate(profile)
    return profile


def _vector(value: Any, key: str) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise ProfileError(f"profile: {key} should be a list of numbers (one per hidden unit) or null")
    return [float(x) for x in value]


def _validate_vector(values: list[float] | None, key: str, max_norm: float, why: str = "") -> None:
    """A learned direction (free or opening): finite, and at most `max_norm` long."""
    if values is None:
        return
    if not all(math.isfinite(x) for x in values):
        raise ProfileError(f"profile: {key} holds a value that is not a finite number")
    if (norm := math.sqrt(sum(x * x for x in values))) > max_norm:
        raise ProfileError(f"profile: {key} is {norm:.3g} long (in units of scale); at most {max_norm:g}{why}")


def _validate_opening(profile: SteeringProfile) -> None:
    _validate_vector(profile.opening_direction, "opening_direction", OPENING_MAX_NORM)
    if profile.opening_direction is not None and not 1 <= profile.opening_tokens <= OPENING_MAX_TOKENS:
        raise ProfileError(f"profile: opening_tokens should be 1-{OPENING_MAX_TOKENS} with an opening_direction, not {profile.opening_tokens}")


def validate(profile: SteeringProfile, model: ModelRef | None = None, sae: SAERef | None = None) -> None:
    """Raise ProfileError if the profile is malformed or does not fit `model`/`sae`."""
    if profile.mode not in MODES:
        raise ProfileError(f"profile: mode {profile.mode!r} should be one of {', '.join(MODES)}")
    if profile.mode == "prompted_steered" and not profile.system_prompt.strip():
        raise ProfileError("profile: mode 'prompted_steered' needs a system_prompt")
    _validate_vector(profile.free_direction, "free_direction", FREE_MAX_NORM, ": longer ones only garble the text")
    _validate_opening(profile)
    if not all(isinstance(p, str) for p in profile.prompts):
        raise ProfileError("profile: prompts should be a list of strings")
    if not 0.0 <= profile.free_share <= 1.0:
        raise ProfileError(f"profile: free_share {profile.free_share} outside [0, 1]")
    if not math.isfinite(profile.scale) or profile.scale <= 0:
        raise ProfileError(f"profile: scale must be a positive number, got {profile.scale}")
    seen = set()
    for i, f in enumerate(profile.features):
        if not 0 <= f.index < profile.sae.d_sae:
            raise ProfileError(f"features[{i}]: index {f.index} out of range for an SAE of {profile.sae.d_sae} latents")
        if not (math.isfinite(f.weight) and -1.0 <= f.weight <= 1.0):
            raise ProfileError(f"features[{i}]: weight {f.weight} outside [-1, 1]")
        if f.index in seen:
            raise ProfileError(f"features[{i}]: index {f.index} appears twice")
        seen.add(f.index)
    if model is not None and profile.model.preset != model.preset:
        raise ProfileError(
            f"profile {profile.name!r} was learned on model {profile.model.preset!r}, not {model.preset!r}"
        )
    if sae is not None and (profile.sae.id, profile.sae.layer, profile.sae.d_sae) != (sae.id, sae.layer, sae.d_sae):
        raise ProfileError(
            f"profile {profile.name!r} was learned on SAE {profile.sae.id!r} (layer {profile.sae.layer}, "
            f"{profile.sae.d_sae} latents), not {sae.id!r} (layer {sae.layer}, {sae.d_sae} latents)"
        )


def load_profile(path: str | Path) -> SteeringProfile:
    """Read and validate a profile file (structure only; `validate` checks it fits a model)."""
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"profile file not found: {path}" if not path.exists() else f"{path} is not a profile file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid JSON ({exc})") from exc
    return _parse(data)
