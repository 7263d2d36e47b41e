"""The steering basis: what a feature weight means in the residual stream, and its calibration.

`SteeringBasis` holds unit-norm SAE decoder rows at one layer and the strength scale; `Steer` is
one row's feature weights (plus an optional free vector). The scale is calibrated from the layer's
typical residual norm and stored next to a local SAE (`steering.json`) or cached for hub SAEs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .loading import load_model
from .models import ModelPreset, cache_dir, decoder_layers, layer_from_hook_name

Weights = Mapping[int, float]  # SAE latent index -> weight in [-1, 1]


def unit_rows(w_dec: torch.Tensor) -> torch.Tensor:
    """An SAE's decoder rows scaled to unit norm (float32): the directions steering moves along."""
    w = w_dec.detach().float()
    return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-8)


class Steer(dict):
    """Feature weights (latent index -> weight) plus an optional free vector that is not an SAE
    feature, in units of the basis scale (so it means the same after a recalibration), and an
    optional opening vector (also not an SAE feature, same units) added only where the answer
    starts: at the prompt's last position and at the first `opening_tokens` answer tokens (so the
    first opening_tokens + 1 tokens are written under it; `autosteer/opening.py`)."""

    def __init__(self, weights: Mapping[int, float] = (), free: torch.Tensor | None = None,
                 opening: torch.Tensor | None = None, opening_tokens: int = 0):
        super().__init__(weights)
        self.free = free
        self.opening, self.opening_tokens = opening, opening_tokens

    def __bool__(self) -> bool:
        return len(self) > 0 or self.free is not None or self.opening is not None


@dataclass(frozen=True)
class SteeringBasis:
    """The directions steering moves along: unit-norm SAE decoder rows at one layer.

    `scale` turns a weight into a residual-stream displacement: |w| = 1 adds `scale` times a unit
    direction, calibrated from the layer's typical residual norm (see `calibrate_scale`).
    """

    directions: torch.Tensor  # (d_sae, d_model), rows of unit norm
    layer: int
    scale: float

    @property
    def d_sae(self) -> int:
        return self.directions.shape[0]

    @classmethod
    def from_sae(cls, sae, layer: int, scale: float) -> SteeringBasis:
        return cls(unit_rows(sae.W_dec), layer, float(scale))

    def _sized(self, vector: torch.Tensor, what: str) -> torch.Tensor:
        """`vector` if it has one value per hidden unit, else a ValueError naming `what`."""
        if vector.shape != (self.directions.shape[1],):
            raise ValueError(f"{what} vector has shape {tuple(vector.shape)}, the model's hidden size is {self.directions.shape[1]}")
        return vector

    def openings(self, weights: Sequence[Weights | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each row's opening vector (B, d_model), `scale` times its Steer's `opening` (zero rows
        without one), and how many answer tokens it steers (B,); None when no row has one."""
        if not any(getattr(w, "opening", None) is not None for w in weights):
            return None
        d = self.directions.shape[1]
        out, tokens = torch.zeros(len(weights), d), torch.zeros(len(weights), dtype=torch.long)
        for row, w in enumerate(weights):
            opening = getattr(w, "opening", None)
            if opening is not None:
                out[row], tokens[row] = self.scale * self._sized(opening, "opening").float(), int(w.opening_tokens)
        return out, tokens

    def vectors(self, weights: Sequence[Weights | None]) -> torch.Tensor:
        """(B, d_model) steering vectors, `sum_i w_i * scale * d_i` per row; None is a zero row."""
        out = torch.zeros(len(weights), self.directions.shape[1])
        for row, w in enumerate(weights):
            free = getattr(w, "free", None)
            if free is not None:
                out[row] += self.scale * self._sized(free, "free steering").float()
            if not w or not len(w):
                continue
            idx = torch.tensor(list(w.keys()), dtype=torch.long)
            if idx.min() < 0 or idx.max() >= self.d_sae:
                raise IndexError(f"feature index out of range 0..{self.d_sae - 1}: {sorted(w)}")
            vals = torch.tensor([float(v) for v in w.values()])
            out[row] += self.scale * (vals @ self.directions[idx])
        return out


def calibrate_scale(model, tokenizer, layer: int, texts: Sequence[str], factor: float = 1.0) -> float:
    """Median L2 norm of the residual stream after `layer` (first position excluded) times `factor`.

    The first position's norm is tens of times larger than the rest and would dominate.
    """
    norms: list[torch.Tensor] = []
    captured: list[torch.Tensor] = []
    handle = decoder_layers(model)[layer].register_forward_hook(
        lambda _m, _i, out: captured.append((out[0] if isinstance(out, tuple) else out).detach())
    )
    try:
        with torch.no_grad():
            for text in texts:
                ids = tokenizer(text, return_tensors="pt").to(model.device)
                captured.clear()
                model(**ids)
                norms.append(captured[0][0, 1:].float().norm(dim=-1))
    finally:
        handle.remove()
    return float(torch.cat(norms).median()) * factor


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
            model, tokenizer = load_model(preset)
        calib = measure_calibration(model, tokenizer, layer)
        save_calibration(preset, calib)
    return SteeringBasis.from_sae(sae, layer, calib["scale"])


def measure_calibration(model, tokenizer, layer: int, factor: float = DEFAULT_SCALE_FACTOR) -> dict:
    """The calibration record: the layer's median residual norm on CALIBRATION_TEXTS and the scale."""
    median = calibrate_scale(model, tokenizer, layer, CALIBRATION_TEXTS)
    return {"layer": layer, "median_residual_norm": median, "factor": factor, "scale": median * factor}


def save_calibration(preset: ModelPreset, calib: dict) -> Path:
    path = calibration_path(preset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calib, indent=2) + "\n")
    return path
