"""`quora_kids curate`: a learned profile becomes a curated one the site lists by name."""

import json

import pytest

from quora_kids.cli import main
from quora_kids.profiles import load_curated
from steering.artefacts.bind import make_profile
from steering.artefacts.profile import ProfileError, scaled


@pytest.fixture
def learned(tiny_runtime, tmp_path):
    prof = make_profile(tiny_runtime, "pirate-run", "Talk like a pirate", {5: 0.8, 9: -0.4}, {5: "ships"},
                        free_direction=[0.5, -0.25] + [0.0] * 62, free_share=0.4, provenance={"notes": ["learned"]})
    return prof, prof.save(tmp_path / "run" / "pirate.json")


def test_curate_writes_a_gentler_named_profile_the_site_lists(learned, tmp_path, capsys):
    prof, path = learned
    out = tmp_path / "curated" / "pirate.json"
    code = main(["curate", "--profile", str(path), "--strength", "0.5", "--name", "pirate", "--mode", "prompted_steered",
                 "--display-name", "  Pirate   storyteller ", "--description", "Answers like a sea captain.", "--out", str(out)])
    assert code == 0 and json.loads(capsys.readouterr().out)["name"] == "pirate"
    entry = load_curated(out.parent)["pirate"]
    assert (entry.title, entry.description) == ("Pirate storyteller", "Answers like a sea captain.")
    got = entry.profile
    assert got.weights() == {5: 0.4, 9: -0.2} and got.free_direction[:2] == [0.25, -0.125] and got.free_share == 0.4
    assert got.mode == "prompted_steered" and got.system_prompt == "Talk like a pirate"
    assert got.provenance["notes"][0] == "learned" and "x0.5" in got.provenance["notes"][1]


def test_curate_keeps_the_runs_mode_and_weights_at_full_strength(learned, tmp_path):
    prof, path = learned
    out = tmp_path / "c" / "p.json"
    assert main(["curate", "--profile", str(path), "--display-name", "P", "--description", "D.", "--out", str(out)]) == 0
    got = load_curated(out.parent)["pirate-run"].profile
    assert got.weights() == prof.weights() and got.mode == prof.mode and got.free_direction == prof.free_direction


@pytest.mark.parametrize("extra, message", [
    (["--strength", "1.5"], "strength"), (["--strength", "0"], "strength"), (["--display-name", " "], "must not be empty"),
])
def test_curate_refuses_bad_settings_with_a_one_line_error(learned, tmp_path, capsys, extra, message):
    _, path = learned
    args = ["curate", "--profile", str(path), "--display-name", "P", "--description", "D.", "--out", str(tmp_path / "x.json")]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_curate_refuses_a_missing_profile(tmp_path, capsys):
    args = ["curate", "--profile", str(tmp_path / "nope.json"), "--display-name", "P", "--description", "D.", "--out", str(tmp_path / "x.json")]
    assert main(args) == 2 and "error:" in capsys.readouterr().err


def test_scaled_refuses_a_strength_outside_0_to_1(learned):
    prof, _ = learned
    for bad in (0, -0.5, 1.01, float("nan")):
        with pytest.raises(ProfileError):
            scaled(prof, bad)
