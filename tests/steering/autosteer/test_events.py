"""Following a run: each kind of event reaches its view method, and the final --json line."""

from steering.artefacts.bind import make_profile
from steering.autosteer.events import AutoSteerView, final_json, follow, show
from steering.autosteer.results import (
    EpochResult,
    FinalResult,
    HeldOutResult,
    PhaseEvent,
    ScreenResult,
)
from steering.autosteer.retrieve import FeatureCandidate

FEATS = [FeatureCandidate(5, "five", "attribution", 1.0, 1.0), FeatureCandidate(9, "nine", "semantic", -1.0, 1.0)]


class Recorder(AutoSteerView):
    def __init__(self):
        self.seen = []

    def phase(self, event):
        self.seen.append("phase")
        return "p"

    def screened(self, event):
        self.seen.append("screened")
        return "s"

    def epoch(self, event):
        self.seen.append("epoch")
        return "e"

    def final(self, event):
        self.seen.append("final")
        return "f"


def _final(rt, heldout=True, screened=True):
    profile = make_profile(rt, "dog", "Behave like a dog", {5: 0.3}, mode="prompted_steered", system_prompt="Behave like a dog",
                           provenance={"notes": ["epoch 3 failed: boom"]})
    held = HeldOutResult(["Why?"], {"unsteered": 1.0, "steered": 2.5}, {"unsteered": ["a"], "steered": ["b"]}, {}, {}) if heldout else None
    screen = ScreenResult(FEATS, [3.0, 1.0], ["", ""], 1, 0.5) if screened else None
    return FinalResult(profile, FEATS, held, "threshold", screen)


def test_each_event_goes_to_its_own_method_and_its_answer_comes_back(tiny_runtime):
    events = [PhaseEvent("baseline", "m"), ScreenResult(FEATS, [1.0, 0.5], ["", ""], 1, 0.1),
              EpochResult(1, [0.1, 0.2], ["x"], 2.0, "c", 2.0, [0.1, 0.2], 4, {}), _final(tiny_runtime)]
    view = Recorder()
    assert list(follow(events, view)) == ["p", "s", "e", "f"]
    assert view.seen == ["phase", "screened", "epoch", "final"]
    assert show(PhaseEvent("epochs", "epoch 1 of 2"), view) == "p"


def test_final_json_has_the_documented_fields(tiny_runtime, tmp_path):
    line = final_json(_final(tiny_runtime), tmp_path / "dog.json")
    assert list(line) == ["profile", "stopped", "features", "held_out", "held_out_outputs", "mode", "free_share", "opening_tokens", "notes", "screened"]
    assert line["profile"] == str(tmp_path / "dog.json") and line["stopped"] == "threshold" and line["mode"] == "prompted_steered"
    assert line["features"] == [{"index": 5, "label": "five", "source": "attribution"}, {"index": 9, "label": "nine", "source": "semantic"}]
    assert line["held_out"] == {"unsteered": 1.0, "steered": 2.5} and line["held_out_outputs"]["steered"] == ["b"]
    assert line["notes"] == ["epoch 3 failed: boom"] and line["screened"][0] == {"index": 5, "label": "five", "source": "attribution",
                                                                                 "sign": 1.0, "score": 3.0}
    bare = final_json(_final(tiny_runtime, heldout=False, screened=False), "x.json")
    assert bare["held_out"] is None and bare["held_out_outputs"] is None and bare["screened"] is None
