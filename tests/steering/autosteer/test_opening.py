"""The in-character opening (steering/autosteer/opening.py) on the tiny random Llama."""

import pytest
import torch

import steering.autosteer.opening as opening_mod
from fakes import Given, ListOptimiser, ScriptedJudge
from steering.autosteer.config import AutoSteerConfig
from steering.autosteer.loop import AutoSteer
from steering.autosteer.objective import build_objective, chunked_loss, split
from steering.autosteer.opening import TRY_TOKENS, clean, fit_opening, role_of
from steering.autosteer.results import FinalResult, PhaseEvent
from steering.autosteer.retrieve import FeatureCandidate
from steering.runtime.engine import GenerationConfig

FEATS = [FeatureCandidate(5, "five", "manual", 1.0, 1.0), FeatureCandidate(9, "nine", "manual", -1.0, 1.0)]


@pytest.mark.parametrize("behavior, role", [
    ("Behave like a dog", "a dog"),
    ("Talk like a pirate", "a pirate"),
    ("Act like a grumpy old man", "a grumpy old man"),
    ("Be cheerful and encouraging, like a sports coach", "a sports coach"),
    ("You are a cat who loves naps", "a cat"),
    ("Pretend to be the captain of a ship", "the captain of a ship"),
    ("Explain things in a way that children can understand", None),
    ("Be extremely polite and formal", None),
    ("Always talk about the ocean", None),
    ("Talk about food and cooking", None),
])
def test_role_of_finds_the_character_a_behaviour_names(behavior, role):
    assert role_of(behavior) == role


def test_clean_keeps_the_first_sentence_without_quotes():
    assert clean(' "I\'m a loyal dog. I love my people."\n\nThe dog wagged.') == "I'm a loyal dog."
    assert clean("Ahoy! I'm Captain Blackwood") == "Ahoy!"
    assert clean("no full stop at all here") == "no full stop at all here"


def _nll(engine, prompts, openings, u):
    tok = engine.tokenizer
    obj = build_objective(engine, prompts, [tok(o, add_special_tokens=False)["input_ids"] for o in openings], [[]] * len(prompts), plain_texts=())
    obj.steer_from = (obj.targets != -100).float().argmax(dim=1)
    value, _, _ = chunked_loss(engine, split(obj), lambda: engine.basis.scale * u)
    return value


def test_fit_opening_makes_the_openings_likelier_after_the_plain_question(tiny_engine):
    prompts, openings = ["Hi there", "What is up?"], ["woof woof I am a dog.", "woof I love bones."]
    d = tiny_engine.model.config.hidden_size
    before = _nll(tiny_engine, prompts, openings, torch.zeros(d))
    fitted = fit_opening(tiny_engine, prompts, openings, steps=20)
    after = _nll(tiny_engine, prompts, openings, fitted.direction)
    assert after < before - 0.2  # a wrong sign or a vector added in the wrong place would not lower it
    assert 0 < float(fitted.direction.norm()) <= 8.0
    assert [o.startswith(e) for e, o in zip(fitted.examples, openings)] == [True, True]  # the fitted tokens, shown to the user
    assert fitted.tokens == 0  # how many tokens it steers is chosen later, on held-out prompts


def test_fit_opening_needs_an_opening_of_two_tokens(tiny_engine):
    assert fit_opening(tiny_engine, ["Hi"], [""]) is None


def _run(rt, monkeypatch, scores, behavior="Behave like a dog"):
    monkeypatch.setattr(opening_mod, "write_openings", lambda engine, role, prompts, cancel=None: ["woof woof I am a dog."] * len(prompts))
    cfg = AutoSteerConfig(behavior=behavior, prompts=["Hi", "Hello"], max_new_tokens=6, heldout=["Why?"], epochs=1)
    judge = ScriptedJudge(scores)
    loop = AutoSteer(rt, cfg, judge, Given(lambda c, answers=None: ListOptimiser([[0.2, -0.2]])), features=FEATS)
    loop.judge_calls = judge.calls
    return loop, list(loop.run())


# The opening's trial judges 15 candidates on the held-out prompts, each of the first 14 without
# and with the behaviour as a system prompt: the best weights alone, the weights with the opening
# at each of TRY_TOKENS, then the opening alone at each; the 15th is the plain answers. A kept
# opening is then judged on the training prompts (REJUDGE), then the held-out check's four
# conditions (HELD).
WITHOUT, PLAIN, REJUDGE, HELD = [1.0, 1.5], [1.0], [2.5], [0, 0, 5.0, 1.0]


def test_the_loop_keeps_an_opening_the_judge_scores_above_the_best_weights(tiny_runtime, monkeypatch):
    loop, events = _run(tiny_runtime, monkeypatch, [2.0] + WITHOUT + [0.5, 0.5, 6.0, 3.0, 0.5, 0.5] + [0.1] * 6 + PLAIN + REJUDGE + HELD)
    final = events[-1]
    assert isinstance(final, FinalResult)
    assert final.profile.opening_tokens == TRY_TOKENS[1] and len(final.profile.opening_direction) == tiny_runtime.engine.model.config.hidden_size
    notes = [e.message for e in events if isinstance(e, PhaseEvent) and e.phase == "opening"]
    assert any("opening kept (not an SAE feature)" in n and "first 4 answer tokens; on 1 held-out prompts it scored 6.00 "
               "against 1.50 for the best weights and 1.00 for the plain answers; the held-out check reports on the same prompts" in n
               for n in notes)
    ctx, candidates = loop.judge_calls[1]  # judged on the held-out prompt, against its unsteered answer
    assert ctx.prompts == ["Why?"] and len(candidates) == 15
    assert candidates[-1] == ctx.baseline == [g.text for g in tiny_runtime.engine.generate(["Why?"], config=GenerationConfig(max_new_tokens=6))]
    assert final.profile.weights() == {5: 0.2, 9: -0.2}
    assert any("opening kept" in n for n in final.profile.provenance["notes"])
    steer = loop.steer_of([0.2, -0.2])  # the held-out check and the profile steer with it
    assert steer.opening is not None and steer.opening_tokens == TRY_TOKENS[1]
    # The profile's best score is the steering it carries, judged on the training prompts.
    rejudged, _ = loop.judge_calls[2]
    assert rejudged.prompts == ["Hi", "Hello"] and final.profile.scores["best"] == 2.5
    assert any("with the opening, the training prompts score 2.50 (the epochs' best: 2.00)" in n for n in final.profile.provenance["notes"])
    assert notes[-1] == "with the opening, the training prompts score 2.50 (the epochs' best: 2.00)"  # on the screen too


def test_the_loop_drops_an_opening_that_scores_no_better(tiny_runtime, monkeypatch):
    loop, events = _run(tiny_runtime, monkeypatch, [4.0, 1.0, 3.0] + [0.5, 2.0, 3.0, 1.0, 0.5, 0.5] + [3.0] * 6 + PLAIN + HELD)
    final = events[-1]
    assert final.profile.opening_direction is None and final.profile.opening_tokens == 0
    assert any("opening not kept" in n for n in final.profile.provenance["notes"])
    assert loop.steer_of([0.2, -0.2]).opening is None and final.profile.scores["best"] == 4.0


def test_an_opening_is_weighed_against_the_weights_the_profile_would_carry(tiny_runtime, monkeypatch):
    # The opening beats the weights (0.9 against 0.5) though not the plain answers (1.0): kept, as
    # the profile would otherwise carry the weights; the note gives the plain answers' score.
    loop, events = _run(tiny_runtime, monkeypatch, [2.0, 0.5, 0.4] + [0.9] + [0.1] * 11 + PLAIN + REJUDGE + HELD)
    profile = events[-1].profile
    assert profile.opening_direction is not None and profile.opening_tokens == TRY_TOKENS[0] and profile.weights() == {5: 0.2, 9: -0.2}
    assert any("opening kept (not an SAE feature)" in n and "scored 0.90 against 0.50 for the best weights and 1.00 for the plain answers" in n
               for n in profile.provenance["notes"])


def test_the_opening_alone_replaces_the_weights_when_it_judges_best(tiny_runtime, monkeypatch):
    loop, events = _run(tiny_runtime, monkeypatch, [2.0] + WITHOUT + [0.5] * 6 + [0.5, 7.0, 0.5, 0.5, 0.5, 0.5] + PLAIN + REJUDGE + HELD)
    profile = events[-1].profile
    assert profile.weights() == {} and profile.opening_tokens == TRY_TOKENS[0] and profile.opening_direction is not None
    assert any("opening kept ALONE" in n for n in profile.provenance["notes"])
    assert profile.scores["best"] == 2.5  # the opening alone's score, not the dropped weights' 2.0
    rejudged, (texts,) = loop.judge_calls[2]
    assert texts == [g.text for g in tiny_runtime.engine.generate(["Hi", "Hello"], [loop.steer_of([0.0, 0.0])] * 2,
                                                                  config=GenerationConfig(max_new_tokens=6))]


def test_a_behaviour_without_a_character_gets_no_opening_phase(tiny_runtime, monkeypatch):
    _, events = _run(tiny_runtime, monkeypatch, [2.0, 0, 0, 5.0, 1.0], behavior="Always talk about the ocean")
    assert not [e for e in events if isinstance(e, PhaseEvent) and e.phase == "opening"]
    assert events[-1].profile.opening_direction is None


def test_a_stopped_run_stops_the_fit(tiny_engine):
    import threading

    stop = threading.Event()
    stop.set()
    assert fit_opening(tiny_engine, ["Hi there"], ["woof woof I am a dog."], cancel=stop) is None
