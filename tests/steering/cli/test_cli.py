"""The command line's adapters, in process and without the real model: bad input exits 2 with
one line, and the two ways of showing a run (terminal, --json lines)."""

import json

import pytest
from tqdm import tqdm

from steering.artefacts.bind import make_profile
from steering.autosteer.config import AutoSteerConfig
from steering.autosteer.events import show
from steering.autosteer.results import (
    EpochResult,
    FinalResult,
    HeldOutResult,
    PhaseEvent,
    ScreenResult,
)
from steering.autosteer.retrieve import FeatureCandidate
from steering.cli import views as cli_views
from steering.cli.main import build_parser, main

FEATS = [FeatureCandidate(5, "five", "attribution", 1.0, 1.0)]


@pytest.mark.parametrize("argv, message", [
    (["autosteer", "--behavior", " ", "--prompt", "Hi"], "describe a behaviour"),
    (["autosteer", "--behavior", "x", "--prompt", "Hi", "--epochs", "0"], "epochs must be between 1 and 100"),
    (["autosteer", "--behavior", "x", "--prompt", "Hi", "--heldout", " "], "a held-out prompt is empty"),
    (["features", "search", "  "], "the search query is empty"),
    (["features", "search", "dogs", "--k", "0"], "--k must be between 1 and 1000"),
    (["evaluate-sae", "--preset", "gemma-2-2b-it"], "uses a hub SAE"),
    (["calibrate", "--preset", "gemma-2-2b-it"], "uses a hub SAE"),
    (["generate", "--profile", "missing.json", "--prompt", "Hi"], "profile file not found"),
    (["generate", "--profile", "missing.json", "--prompt", "  "], "--prompt is empty"),
    (["generate", "--profile", "missing.json", "--prompt", "x" * 2001], "--prompt is too long (2,001 characters"),
    (["export", "--profile", "missing.json", "--out", "x"], "profile file not found"),
    (["export", "--profile", "missing.json", "--out", "tests"], "already holds files; give a new or empty folder"),
    (["export", "--profile", "missing.json", "--out", "README.md"], "is a file; give a new folder"),
    (["autosteer", "--behavior", "b", "--prompt", "p", "--out", "tests"], "is a folder; give a file name"),
    (["autosteer", "--behavior", "b", "--prompt", "p", "--out", "README.md/p.json"], "README.md is a file, not a folder"),
    (["generate", "--profile", "missing.json", "--preset", "smollm2-135m", "--prompt", "Hi"], "--preset is for answering without a profile"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def _kids_with(tmp_path, **changes):
    """The shipped kids profile with some fields changed, as a file."""
    from steering.paths import PROFILES_DIR

    data = json.loads((PROFILES_DIR / "kids.json").read_text()) | changes
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("changes, message", [
    ({"free_share": "lots"}, "field 'free_share' should be float, got str"),
    ({"system_prompt": 12}, "field 'system_prompt' should be str, got int"),
    ({"prompts": "abc"}, "field 'prompts' should be list, got str"),
    ({"prompts": [1, 2]}, "prompts should be a list of strings"),
    ({"free_direction": [1e30] * 576}, "free_direction is 2.4e+31 long"),
    ({"model": {"preset": "llama-70b", "hub_id": "x"}}, "unknown model preset 'llama-70b'"),
])
def test_a_malformed_profile_is_bad_input_not_a_crash(changes, message, tmp_path, capsys):
    assert main(["generate", "--profile", _kids_with(tmp_path, **changes), "--prompt", "Hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_folder_is_not_called_missing(tmp_path, capsys):
    assert main(["generate", "--profile", str(tmp_path), "--prompt", "Hi"]) == 2
    assert "is not a profile file" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["generate", "--profile", "p.json", "--prompt", "Hi", "--max-new-tokens", "0"],
    ["generate", "--profile", "p.json", "--prompt", "Hi", "--max-new-tokens", "-5"],
    ["generate", "--profile", "p.json", "--prompt", "Hi", "--temperature", "nan"],
    ["generate", "--profile", "p.json", "--prompt", "Hi", "--temperature", "-1"],
    ["autosteer", "--behavior", "b", "--prompt", "p", "--max-new-tokens", "0"],
])
def test_out_of_range_numbers_are_refused_before_any_work(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "error: argument --" in capsys.readouterr().err


def test_a_mistyped_option_shows_its_own_commands_usage(capsys):
    """`features search dogs --verbose-ish`: the usage printed is `features search`'s, so the user
    sees the options there are."""
    with pytest.raises(SystemExit) as exc:
        main(["features", "search", "dogs", "--bogus", "3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "usage: python -m steering features search" in err and "unrecognized arguments: --bogus 3" in err


def test_the_spellings_a_newcomer_tries_are_accepted():
    args = build_parser().parse_args(["autosteer", "--behaviour", "b", "--prompt", "p", "--held-out", "h", "--optimiser", "numeric"])
    assert args.behavior == "b" and args.heldout == ["h"] and args.optimiser == "numeric"
    assert build_parser().parse_args(["features", "search", "dogs", "--top", "3"]).k == 3
    assert build_parser().parse_args(["features", "search", "dogs", "-k", "4"]).k == 4
    assert build_parser().parse_args(["generate", "--prompt", "Hi"]).profile is None  # no profile: the plain model


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["autosteer", "--help"])
    out = capsys.readouterr().out
    assert "default: 6" in out and "(default: metric)" in out and "default: None" not in out


def test_an_offline_preset_is_one_line_not_a_traceback(monkeypatch, tmp_path, capsys):
    """A profile for a hub model, with no network: the loader's message, exit 2."""
    from steering.errors import OfflineError
    from steering.runtime import shared

    def offline(preset=None, device="cpu"):
        raise OfflineError("preset 'gemma-2-2b-it' downloads google/gemma-2-2b-it ... not reachable here. Use --preset smollm2-135m")

    monkeypatch.setattr(shared, "get_runtime", offline)
    monkeypatch.setattr("steering.artefacts.bind.get_runtime", offline)
    assert main(["generate", "--profile", _kids_with(tmp_path), "--prompt", "Hi"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: preset 'gemma-2-2b-it'") and err.count("\n") == 1


def test_every_command_of_the_contract_is_there():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(sub.choices) == ["generate", "features", "export", "prepare", "autosteer", "build-sae", "build-index", "evaluate-sae", "calibrate"]
    args = build_parser().parse_args(["autosteer", "--behavior", "b", "--prompt", "p"])
    assert args.optimiser == "gradient" and args.judge == "metric" and args.epochs == 6 and args.mode == "auto"  # the defaults
    args = build_parser().parse_args(["autosteer", "--behavior", "b", "--prompt", "p", "--optimizer", "numeric", "--mode", "steered"])
    assert args.optimiser == "numeric" and args.mode == "steered"


class FakeRun:
    def __init__(self, cfg):
        self.cfg, self.features = cfg, FEATS


def _events(rt, heldout=None):
    profile = make_profile(rt, "dog", "Behave like a dog", {5: 0.3}, provenance={"notes": ["a note"]})
    return [PhaseEvent("retrieve", "finding"), ScreenResult(FEATS, [2.0], [""], 1, 1.0),
            EpochResult(1, [0.3], ["Woof."], 2.5, "more dog", 2.5, [0.3], 4, {"generate": 1.0}),
            FinalResult(profile, FEATS, heldout, "epochs")]


def test_json_lines_print_one_line_per_epoch_and_the_final_line(tiny_runtime, tmp_path, capsys):
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi"])
    view = cli_views.JsonLines(FakeRun(cfg), tmp_path / "dog.json")
    for event in _events(tiny_runtime):
        show(event, view)
    epoch, final = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert epoch["epoch"] == 1 and epoch["features"] == [5] and epoch["critique"] == "more dog"
    assert final["profile"] == str(tmp_path / "dog.json") and final["notes"] == ["a note"] and (tmp_path / "dog.json").is_file()


def test_the_terminal_shows_the_phase_screening_epochs_and_where_it_saved(tiny_runtime, tmp_path, capsys):
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi"])
    bar = tqdm(total=1, disable=True)
    view = cli_views.Terminal(cfg, tmp_path / "dog.json", bar)
    lines = []
    bar.write = lines.append
    held = HeldOutResult(["Why?", "How?"], {"unsteered": 1.0, "prompted": 2.0, "steered": 3.0, "prompted_steered": 2.5}, {}, {}, {},
                         {"unsteered": [1.0, 1.0], "prompted": [3.0, 1.0], "steered": [2.0, 4.0], "prompted_steered": [3.0, 2.0]})
    for event in _events(tiny_runtime, held):
        show(event, view)
    assert lines[0] == "[retrieve] finding" and "keep     5 +1 attribution  2.00  five" in lines[2]
    assert lines[3].startswith("epoch 1: score 2.50 (best 2.50)") and lines[5] == "  [Hi] 'Woof.'"
    out = capsys.readouterr().out
    assert out.startswith(f"saved {tmp_path / 'dog.json'} (epochs; answers steered)") and "  note: a note" in out
    assert "  held-out prompted           2.00\n" in out  # what steering is compared with, as it is
    assert "  held-out steered            3.00  (beats prompting on 1, ties 0, trails 1 of 2 prompts)" in out
