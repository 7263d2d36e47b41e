import json

import pytest

from steering.artefacts.profile import (
    FeatureWeight,
    ProfileError,
    SteeringProfile,
    SCHEMA_VERSION,
    load_profile,
    opening_summary,
    provenance,
    scaled,
    validate,
)
from steering.runtime.models import ModelRef, SAERef

MODEL = ModelRef("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "r1")
SAE = SAERef("smollm2-135m-l15-topk", "model.layers.15", 15, 4096)


def make(**kw) -> SteeringProfile:
    base = dict(
        name="kids",
        behavior="Explain things in a way that children can understand",
        model=MODEL,
        sae=SAE,
        scale=120.0,
        features=[FeatureWeight(12, "simple words", 0.4), FeatureWeight(4095, "jargon", -0.7)],
        prompts=["Why is the sky blue?"],
        scores={"epochs": [3.0, 5.5], "held_out": {"steered": 6.0}},
        provenance=provenance("metric", "numeric"),
    )
    base.update(kw)
    return SteeringProfile(**base)


def write(tmp_path, data) -> str:
    p = tmp_path / "p.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(p)


def test_round_trip(tmp_path):
    prof = make()
    path = prof.save(tmp_path / "sub" / "kids.json")
    again = load_profile(path)
    assert again == prof
    assert again.weights() == {12: 0.4, 4095: -0.7}
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION == 3


def test_zero_weights_are_dropped_from_weights():
    assert make(features=[FeatureWeight(1, "", 0.0)]).weights() == {}


def test_integer_weights_are_accepted(tmp_path):
    data = make().to_dict()
    data["features"][0]["weight"] = 1
    assert load_profile(write(tmp_path, data)).features[0].weight == 1.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("model"), "missing field 'model'"),
        (lambda d: d.__setitem__("schema_version", 99), "schema_version 99"),
        (lambda d: d["features"][0].__setitem__("index", 4096), "out of range"),
        (lambda d: d["features"][0].__setitem__("index", -1), "out of range"),
        (lambda d: d["features"][1].__setitem__("weight", 1.5), "outside \\[-1, 1\\]"),
        (lambda d: d["features"][1].__setitem__("weight", float("nan")), "outside"),
        (lambda d: d["features"][1].__setitem__("index", 12), "appears twice"),
        (lambda d: d["features"][0].__setitem__("weight", "high"), "should be float"),
        (lambda d: d["features"][0].__setitem__("index", True), "should be int"),
        (lambda d: d.__setitem__("scale", -1.0), "scale must be a positive"),
        (lambda d: d.__setitem__("features", {"12": 0.4}), "should be list"),
        (lambda d: d["sae"].pop("d_sae"), "missing field 'd_sae'"),
    ],
)
def test_validation_errors(tmp_path, mutate, message):
    data = make().to_dict()
    mutate(data)
    with pytest.raises(ProfileError, match=message):
        load_profile(write(tmp_path, data))


def test_not_json_and_not_an_object_and_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(write(tmp_path, "{nope"))
    with pytest.raises(ProfileError, match="JSON object"):
        load_profile(write(tmp_path, "[1, 2]"))
    with pytest.raises(ProfileError, match="not found"):
        load_profile(tmp_path / "missing.json")


def test_profile_for_another_model_or_sae_is_refused():
    prof = make()
    validate(prof, MODEL, SAE)
    with pytest.raises(ProfileError, match="learned on model"):
        validate(prof, ModelRef("gemma-2-2b-it", "google/gemma-2-2b-it"), SAE)
    with pytest.raises(ProfileError, match="learned on SAE"):
        validate(prof, MODEL, SAERef("other", "model.layers.10", 10, 4096))
    with pytest.raises(ProfileError, match="learned on SAE"):
        validate(prof, MODEL, SAERef(SAE.id, SAE.hook, 15, 8192))


def test_save_refuses_an_invalid_profile(tmp_path):
    with pytest.raises(ProfileError):
        make(features=[FeatureWeight(0, "", 2.0)]).save(tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()


def test_version_1_profiles_still_load_and_mean_steered_only(tmp_path):
    d = make().to_dict()
    d["schema_version"] = 1
    for k in ("mode", "system_prompt", "free_direction", "free_share"):
        d.pop(k)
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(d))
    p = load_profile(path)
    assert p.mode == "steered" and p.system_prompt == "" and p.free_direction is None


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.__setitem__("mode", "shouting"), "mode 'shouting'"),
        (lambda d: d.update(mode="prompted_steered", system_prompt=""), "needs a system_prompt"),
        (lambda d: d.__setitem__("free_direction", ["a", 1]), "free_direction should be a list of numbers"),
        (lambda d: d.__setitem__("free_share", 1.5), "free_share 1.5"),
        (lambda d: d.update(opening_direction=[9.0, 0.0], opening_tokens=4), "opening_direction is 9 long"),
        (lambda d: d.update(opening_direction=[1.0, 0.0], opening_tokens=0), "opening_tokens should be 1-32"),
        (lambda d: d.update(opening_direction="woof", opening_tokens=4), "opening_direction should be a list of numbers"),
        (lambda d: d.update(opening_direction=[1.0, 0.0], opening_tokens="4"), "field 'opening_tokens' should be int"),
    ],
)
def test_mode_and_free_direction_are_validated(tmp_path, mutate, message):
    d = make().to_dict()
    mutate(d)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_an_opening_round_trips_and_version_2_profiles_have_none(tmp_path):
    prof = make(opening_direction=[0.5, -1.0, 2.0], opening_tokens=5)
    again = load_profile(prof.save(tmp_path / "o.json"))
    assert again.opening_direction == [0.5, -1.0, 2.0] and again.opening_tokens == 5
    assert scaled(again, 0.5).opening_direction == [0.25, -0.5, 1.0]
    assert "first 5 answer tokens" in opening_summary(again) and "NOT an SAE feature" in opening_summary(again)
    d = make().to_dict()
    d["schema_version"] = 2
    for k in ("opening_direction", "opening_tokens"):
        d.pop(k)
    (tmp_path / "v2.json").write_text(json.dumps(d))
    old = load_profile(tmp_path / "v2.json")
    assert old.opening_direction is None and opening_summary(old) == ""
