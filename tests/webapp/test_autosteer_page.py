"""The Auto-steer tab's view of a run, without a server: what each event puts on the page."""

import pytest

from steering.artefacts.bind import make_profile
from steering.autosteer.config import AutoSteerConfig
from steering.autosteer.events import follow
from steering.autosteer.results import (
    EpochResult,
    FinalResult,
    HeldOutResult,
    PhaseEvent,
    ScreenResult,
)
from steering.autosteer.retrieve import FeatureCandidate
from webapp import autosteer, common

FEATS = [FeatureCandidate(5, "five | dogs", "attribution", 1.0, 1.0), FeatureCandidate(9, "nine", "semantic", -1.0, 1.0)]


class FakeRun:
    def __init__(self):
        self.cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi"], epochs=2)
        self.features = FEATS


@pytest.fixture()
def updates(tiny_runtime, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "USER_PROFILES", tmp_path)
    profile = make_profile(tiny_runtime, "dog", "Behave like a dog", {5: 0.3, 9: -0.1})
    held = HeldOutResult(["Why?", "How?"], {"unsteered": 1.0, "prompted": 2.0, "steered": 3.0, "prompted_steered": 2.5}, {}, {}, {},
                         {"unsteered": [1.0, 1.0], "prompted": [3.0, 1.0], "steered": [4.0, 2.0], "prompted_steered": [3.0, 2.0]})
    events = [PhaseEvent("screen", "steering with each of 2 candidates alone"), ScreenResult(FEATS, [3.0, 1.0], ["", ""], 1, 0.5),
              EpochResult(1, [0.3, -0.1], ["Woof <b>"], 2.5, "more dog", 2.5, [0.3, -0.1], 4, {"generate": 1.25}),
              FinalResult(profile, FEATS, held, "epochs")]
    page = autosteer.Page(FakeRun(), {})
    return page, list(follow(events, page))


def test_every_update_fills_the_eight_outputs(updates):
    _, outs = updates
    assert all(len(o) == 8 for o in outs)
    assert "Trying each candidate feature alone... (screen: steering with each of 2 candidates alone)" in outs[0][0]
    assert outs[0][2]["visible"] is False


def test_screening_and_epochs_go_to_the_log_newest_first_and_escaped(updates):
    _, outs = updates
    log = outs[2][1]
    assert log.index("### Epoch 1: score 2.50") < log.index("### Screening: 2 candidate features")
    assert "five \\| dogs" in log and "Woof &lt;b&gt;" in log and "1.2s generating" in log
    assert list(outs[2][3]["weight"]) == [0.3, -0.1] and outs[2][2]["visible"] is True


def test_the_final_update_saves_the_profile_for_this_session_only(updates, tmp_path):
    page, outs = updates
    status, _, _, _, held, prof, path, learned = outs[-1]
    assert "Done (ran every epoch). Answers steering only." in status and "&#x27;my-dog&#x27;" in status
    assert list(held["condition"]) == ["plain model", "prompted (the behaviour as a system prompt)", "steered", "prompted + steered"]
    assert list(held["prompt by prompt"]) == ["", "", "beats prompting on 2, ties 0, trails 0 of 2 prompts",
                                              "beats prompting on 1, ties 1, trails 0 of 2 prompts"]
    assert prof["name"] == "dog" and path.startswith(str(tmp_path / "sessions")) and list(learned) == ["my-dog"]
    assert "held-out score 3.0/10" in learned["my-dog"]["description"]


def test_a_heads_up_stays_above_the_log_and_in_the_final_status(tiny_runtime, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "USER_PROFILES", tmp_path)
    profile = make_profile(tiny_runtime, "dog", "Behave like a dog", {5: 0.3})
    warning = "the model shows little of this behaviour even when told it directly: ... score 1.85, its plain answers 1.00 <x>"
    events = [PhaseEvent("heads-up", warning), ScreenResult(FEATS, [3.0, 1.0], ["", ""], 1, 0.5),
              EpochResult(1, [0.3, -0.1], ["Woof"], 2.5, "more dog", 2.5, [0.3, -0.1], 4, {"generate": 1.0}),
              FinalResult(profile, FEATS, None, "epochs")]
    outs = list(follow(events, autosteer.Page(FakeRun(), {})))
    for _, log, *_ in outs:  # every update, after the screening and the epoch rewrote the log
        assert log.startswith("> **Heads-up:** the model shows little") and "1.00 &lt;x&gt;" in log
    assert "Expect a weak effect" in outs[-1][0]
    plain = list(follow(events[1:], autosteer.Page(FakeRun(), {})))
    assert "Heads-up" not in plain[-1][1] and "weak effect" not in plain[-1][0]


def _bar(status: str) -> int:
    return int(status.split("width:")[1].split("%")[0])


def test_the_progress_bar_moves_through_every_phase_and_never_back(updates):
    _, outs = updates
    bars = [_bar(o[0]) for o in outs]
    assert bars[0] > 0 and bars == sorted(bars) and bars[-1] == 100, bars  # screening already moves it
    assert "s so far)" in outs[0][0]


def test_a_run_stopped_before_its_first_epoch_saves_nothing(tiny_runtime, tmp_path, monkeypatch):
    """Stop during retrieval or screening: there are no tuned weights, so no profile is offered."""
    monkeypatch.setattr(common, "USER_PROFILES", tmp_path)
    empty = make_profile(tiny_runtime, "dog", "Behave like a dog", {})
    events = [PhaseEvent("retrieve", "finding candidate features"), FinalResult(empty, [], None, "cancelled")]
    status, _, _, _, _, prof, path, learned = list(follow(events, autosteer.Page(FakeRun(), {})))[-1]
    assert "nothing was learned, so no profile was saved" in status and prof is None and path is None and learned == {}
    assert _bar(status) < 100 and "(took 0 min" in status and not (tmp_path / "sessions").exists()


def test_long_feature_labels_are_cut_so_the_weights_stay_on_screen():
    long = FeatureCandidate(7, "fires on lad, mate, dear; in text about lad, mate, i'll, let, it's; promotes criptions, uscript", "semantic", 1.0, 1.0)
    label = autosteer.features_frame([long], [0.5])["label"][0]
    assert len(label) == autosteer.LABEL_CHARS and label.endswith("…")


def test_a_multi_line_answer_stays_inside_its_quote_in_the_log():
    assert autosteer.quoted("Plants grow.\n\nThe plant <b>has</b>") == "Plants grow.  \n> The plant &lt;b&gt;has&lt;/b&gt;"
    assert autosteer.quoted("  ") == "(empty)"


def test_an_in_character_opening_is_named_in_the_progress_and_the_final_status(tiny_runtime, tmp_path, monkeypatch):
    monkeypatch.setattr(common, "USER_PROFILES", tmp_path)
    profile = make_profile(tiny_runtime, "dog", "Behave like a dog", {5: 0.0}, opening_direction=[0.1] * 64, opening_tokens=4)
    events = [EpochResult(1, [0.0, 0.0], ["Hi"], 1.0, "", 1.0, [0.0, 0.0], 1, {"generate": 1.0}),
              PhaseEvent("opening", "writing and fitting an in-character opening as a dog"), FinalResult(profile, FEATS, None, "epochs")]
    outs = list(follow(events, autosteer.Page(FakeRun(), {})))
    assert "Writing an in-character opening... (opening: writing and fitting" in outs[1][0] and _bar(outs[1][0]) == 90
    assert "in-character opening (a learned direction, NOT an SAE feature)" in outs[-1][0] and "first 4 answer tokens" in outs[-1][0]
