"""The steering basis: unit decoder rows, what a weight means, and the calibrated scale on disk."""

import json
from dataclasses import replace

import pytest
import torch

from steering.runtime import basis
from steering.runtime.basis import (
    CALIBRATION_TEXTS,
    Steer,
    SteeringBasis,
    calibrate_scale,
    calibration_path,
    load_basis,
    measure_calibration,
    read_calibration,
    sae_layer,
    save_calibration,
    unit_rows,
)
from steering.runtime.models import SAESource, resolve_preset


@pytest.fixture()
def local_preset(tmp_path):
    """The default preset pointed at an empty local SAE folder."""
    return replace(resolve_preset(None), sae=SAESource(layer=2, local_dir=tmp_path / "sae"))


def test_calibrate_scale_skips_the_first_position(tiny_model, tiny_tokenizer):
    texts = ["Dogs like bones and walks.", "Why is the sky blue?"]
    s = calibrate_scale(tiny_model, tiny_tokenizer, 2, texts)
    assert s > 0
    # Blow up the first position's residual: the median must not move.
    def spike(_m, _i, out):
        h = out[0] if isinstance(out, tuple) else out
        h = h.clone()
        h[:, 0] *= 1000
        return (h, *out[1:]) if isinstance(out, tuple) else h

    handle = tiny_model.model.layers[2].register_forward_hook(spike)
    try:
        assert calibrate_scale(tiny_model, tiny_tokenizer, 2, texts) == pytest.approx(s, rel=1e-5)
    finally:
        handle.remove()


def test_basis_from_sae_normalises_decoder_rows(tiny_sae):
    b = SteeringBasis.from_sae(tiny_sae, layer=2, scale=3.0)
    assert b.d_sae == tiny_sae.cfg.d_sae
    assert torch.allclose(b.directions.norm(dim=-1), torch.ones(b.d_sae), atol=1e-5)


def test_unit_rows_keeps_directions_and_survives_a_zero_row():
    w = torch.tensor([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    rows = unit_rows(w)
    assert torch.allclose(rows[0], torch.tensor([0.6, 0.8])) and torch.allclose(rows[2], torch.tensor([-1.0, 0.0]))
    assert torch.equal(rows[1], torch.zeros(2))  # no division by zero


def test_vectors_scale_weights_and_add_the_free_vector():
    b = SteeringBasis(torch.eye(3), layer=0, scale=2.0)
    v = b.vectors([Steer({0: 0.5, 2: -1.0}, torch.tensor([0.0, 1.0, 0.0])), None, Steer()])
    assert torch.allclose(v[0], torch.tensor([1.0, 2.0, -2.0]))
    assert torch.equal(v[1], torch.zeros(3)) and torch.equal(v[2], torch.zeros(3))
    with pytest.raises(IndexError, match="out of range"):
        b.vectors([{3: 0.1}])


def test_steer_is_true_with_weights_or_a_free_vector_only():
    assert not Steer() and Steer({1: 0.0}) and Steer(free=torch.zeros(2))
    assert Steer({4: 0.5}, None) == {4: 0.5}


def test_sae_layer_reads_the_hook_name(tiny_sae):
    assert sae_layer(tiny_sae) == 2


def test_measured_calibration_is_factor_times_the_median_norm(tiny_model, tiny_tokenizer):
    calib = measure_calibration(tiny_model, tiny_tokenizer, 2, factor=0.5)
    median = calibrate_scale(tiny_model, tiny_tokenizer, 2, CALIBRATION_TEXTS)
    assert calib == {"layer": 2, "median_residual_norm": median, "factor": 0.5, "scale": median * 0.5}


def test_calibration_round_trips_next_to_a_local_sae(local_preset):
    assert read_calibration(local_preset) is None
    path = save_calibration(local_preset, {"layer": 2, "scale": 7.5})
    assert path == calibration_path(local_preset) == local_preset.sae.local_dir / "steering.json"
    assert read_calibration(local_preset) == {"layer": 2, "scale": 7.5}
    assert json.loads(path.read_text())["scale"] == 7.5


def test_hub_sae_calibration_lives_in_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERING_CACHE", str(tmp_path))
    assert calibration_path(resolve_preset("gemma-2-2b-it")) == tmp_path / "calibration" / "gemma-2-2b-it.json"


def test_load_basis_reads_a_saved_scale_without_touching_the_model(local_preset, tiny_sae, monkeypatch):
    save_calibration(local_preset, {"layer": 2, "scale": 7.5})
    monkeypatch.setattr(basis, "load_model", lambda preset: pytest.fail("loaded a model although the scale is saved"))
    b = load_basis(local_preset, tiny_sae)
    assert (b.layer, b.scale, b.d_sae) == (2, 7.5, tiny_sae.cfg.d_sae)


def test_load_basis_calibrates_and_saves_when_nothing_is_saved(local_preset, tiny_sae, tiny_model, tiny_tokenizer):
    b = load_basis(local_preset, tiny_sae, tiny_model, tiny_tokenizer)
    saved = read_calibration(local_preset)
    assert saved is not None and b.scale == pytest.approx(saved["scale"]) and saved["factor"] == 1.0
