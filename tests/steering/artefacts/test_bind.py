"""A profile bound to a runtime: made from its model and SAE, the weights in the engine's units
(after a recalibration too), the system prompt of its mode."""

import pytest
import torch

from steering.artefacts.bind import blank_profile, make_profile, system_for, weights_for
from steering.artefacts.profile import ProfileError
from steering.runtime.engine import GenerationConfig


def test_make_profile_records_the_runtimes_model_sae_and_scale(tiny_runtime):
    prof = make_profile(tiny_runtime, "dog", "Behave like a dog", {5: 0.5, 9: -0.25}, {5: "five"})
    assert prof.model == tiny_runtime.model_ref and prof.sae == tiny_runtime.sae_ref
    assert prof.scale == tiny_runtime.engine.basis.scale and prof.weights() == {5: 0.5, 9: -0.25}
    assert [f.label for f in prof.features] == ["five", ""]


def test_weights_keep_their_meaning_after_a_recalibration(tiny_runtime):
    prof = make_profile(tiny_runtime, "dog", "b", {5: 0.5}, free_direction=[0.0] * 63 + [1.0])
    prof.scale = 2 * tiny_runtime.engine.basis.scale  # saved when the scale was twice today's
    steer = weights_for(prof, tiny_runtime.engine)
    assert steer == {5: pytest.approx(1.0)} and float(steer.free[-1]) == pytest.approx(2.0)
    v = tiny_runtime.engine.steering_vectors([steer])[0]
    expected = prof.scale * (0.5 * tiny_runtime.engine.basis.directions[5] + torch.tensor([0.0] * 63 + [1.0]))
    assert torch.allclose(v, expected, atol=1e-4)


def test_an_opening_binds_with_its_length_and_keeps_its_meaning_after_a_recalibration(tiny_runtime):
    prof = make_profile(tiny_runtime, "dog", "b", {5: 0.5}, opening_direction=[0.0] * 63 + [1.0], opening_tokens=4)
    prof.scale = 2 * tiny_runtime.engine.basis.scale
    steer = weights_for(prof, tiny_runtime.engine)
    assert steer.opening_tokens == 4 and float(steer.opening[-1]) == pytest.approx(2.0) and steer.free is None
    assert weights_for(make_profile(tiny_runtime, "dog", "b", {5: 0.5}), tiny_runtime.engine).opening is None
    with pytest.raises(ProfileError, match="opening_direction has 2 values"):
        weights_for(make_profile(tiny_runtime, "dog", "b", {}, opening_direction=[0.1, 0.2], opening_tokens=4), tiny_runtime.engine)


def test_a_free_direction_of_the_wrong_size_is_a_profile_error(tiny_runtime):
    prof = make_profile(tiny_runtime, "dog", "b", {}, free_direction=[0.1, 0.2])
    with pytest.raises(ProfileError, match="hidden size is 64"):
        weights_for(prof, tiny_runtime.engine)


def test_the_system_prompt_goes_with_the_prompted_mode_only(tiny_runtime):
    assert system_for(make_profile(tiny_runtime, "a", "Be a dog", {}, mode="steered", system_prompt="Be a dog")) is None
    assert system_for(make_profile(tiny_runtime, "b", "Be a dog", {}, mode="prompted_steered", system_prompt="Be a dog")) == "Be a dog"


def test_a_blank_profile_answers_exactly_like_the_unsteered_model(tiny_runtime):
    prof = blank_profile(tiny_runtime, behavior="Behave like a dog")
    assert prof.name == "unsteered" and prof.weights() == {} and prof.free_direction is None
    cfg = GenerationConfig(max_new_tokens=6)
    steered, plain = tiny_runtime.engine.generate(["Hi"] * 2, [weights_for(prof, tiny_runtime.engine), None], config=cfg)
    assert steered.token_ids == plain.token_ids
