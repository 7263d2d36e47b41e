"""SAE-side helpers: steering basis from a loaded sae-lens SAE, its calibrated strength scale.

The scale is stored next to a local SAE (`steering.json`) and cached for hub SAEs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .engine import SteeringBasis
from .models import ModelPreset, cache_dir, layer_from_hook_name

CALIBRATION_FILE = "steering.json"
# Sentences for measuring the typical residual norm; any ordinary text works.
CALIBRATION_TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Photosynthesis is how plants turn sunlight, water and air into food.",
    "Can you tell me why the sky is blue during the day and red at sunset?",
    "My favourite dinner is pasta with tomato sauce and a little cheese.",
    "The train left the station at nine and arrived in the city by noon.",
    "Whales are mammals that breathe air, even though they live in the ocean.",
]
# |w| = 1 adds this fraction of the typical residual norm along one unit direction.
DEFAULT_SCALE_FACTOR = 1.0


def sae_layer(sae) -> int:
    return layer_from_hook_name(sae.cfg.metadata.hook_name)


def calibration_path(preset: ModelPreset) -> Path:
    if preset.sae.local_dir is not None:
        return preset.sae.local_dir / CALIBRATION_FILE
    return cache_dir() / "calibration" / f"{preset.id}.json"


def read_calibration(preset: ModelPreset) -> dict | None:
    path = calibration_path(preset)
    return json.loads(path.read_text()) if path.is_file() else None


def load_basis(preset: ModelPreset, sae, model=None, tokenizer=None) -> SteeringBasis:
    """SteeringBasis for the preset's SAE, calibrating (and saving) the scale if needed."""
    layer = sae_layer(sae)
    calib = read_calibration(preset)
    if calib is None:
        if model is None:
            from .models import load_model

            model, tokenizer = load_model(preset)
        calib = write_calibration(preset, model, tokenizer, layer)
    return SteeringBasis.from_sae(sae, layer, calib["scale"])


def write_calibration(preset: ModelPreset, model, tokenizer, layer: int, factor: float = DEFAULT_SCALE_FACTOR) -> dict:
    from .engine import calibrate_scale

    median = calibrate_scale(model, tokenizer, layer, CALIBRATION_TEXTS)
    calib = {"layer": layer, "median_residual_norm": median, "factor": factor, "scale": median * factor}
    path = calibration_path(preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calib, indent=2) + "\n")
    return calib
