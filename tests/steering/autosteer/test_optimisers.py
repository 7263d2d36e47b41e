"""The numeric (Optuna) and LLM (textual-gradient) optimisers."""

import pytest

from steering.autosteer.optimisers import (
    LLMOptimiser,
    NumericOptimiser,
    Trial,
    parse_weights,
)
from steering.llm import LLMError


def test_numeric_optimiser_skips_repeated_initial_vectors():
    opt = NumericOptimiser(2, initial=[[0.2, 0.0], [0.2, 0.0], [0.1, 0.1]], bound=0.5)
    assert opt.ask(2) == [[0.2, 0.0], [0.1, 0.1]]
    assert all(-0.5 <= x <= 0.5 for w in opt.ask(4) for x in w)


def test_numeric_optimiser_observe_adds_known_trials():
    opt = NumericOptimiser(2, seed=0)
    opt.observe([Trial([0.3, 0.0], 4.0), Trial([0.0, -2.0], 1.0)])
    assert opt.study.best_value == 4.0 and opt.study.best_params == {"w0": 0.3, "w1": 0.0}
    assert sorted(t.params["w1"] for t in opt.study.trials) == [-1.0, 0.0]  # clamped
    assert len(opt.ask(3)) == 3


def test_numeric_optimiser_improves_a_synthetic_objective():
    target = [0.6, -0.4, 0.2]

    def f(w):
        return -sum((a - b) ** 2 for a, b in zip(w, target))

    opt = NumericOptimiser(3, seed=0)
    scores = []
    for _ in range(15):
        ws = opt.ask(4)
        trials = [Trial(w, f(w)) for w in ws]
        opt.tell(trials)
        scores.append(max(t.score for t in trials))
    assert all(-1 <= x <= 1 for w in ws for x in w)
    assert max(scores[-5:]) > max(scores[:2])
    assert max(scores) > -0.1


def test_numeric_optimiser_tries_the_suggested_directions_first():
    opt = NumericOptimiser(2, initial=[[0.5, -0.5], [2.0, 0.0]])
    assert opt.ask(2) == [[0.5, -0.5], [1.0, 0.0]]




def test_optimiser_first_proposal_is_the_initial_then_asks_the_llm(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "Behave like a dog", ["dogs", "barking", "formal tone"], initial=[0.5, 0.5, -0.5])
    assert opt.ask(1) == [[0.5, 0.5, -0.5]]
    assert fake_openai.requests == []
    opt.tell([Trial([0.5, 0.5, -0.5], 4.0, "not doggy enough", ("Hello.",))])
    fake_openai.script = ["More barking needed.\nWeights: [0.8, 1.7, -0.3]"]
    [w] = opt.ask(1)
    assert w == [0.8, 1.0, -0.3]  # clamped to [-1, 1]
    prompt = fake_openai.requests[0]["body"]["messages"][0]["content"]
    assert "not doggy enough" in prompt and "formal tone" in prompt


def test_optimiser_avoids_repeats_and_reasks_on_unparseable(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "b", ["a", "b"], initial=[0.0, 0.0])
    opt.ask(1)
    opt.tell([Trial([0.2, 0.4], 3.0, "c")])
    fake_openai.script = ["I think so.", "Weights: [0.2, 0.4]"]
    [w] = opt.ask(1)
    assert len(fake_openai.requests) == 2
    assert w != [0.2, 0.4] and all(-1 <= x <= 1 for x in w)


def test_optimiser_fails_clearly_when_the_llm_never_gives_weights(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "b", ["a", "b"], initial=[0.0, 0.0])
    opt.ask(1)
    opt.tell([Trial([0.0, 0.0], 1.0)])
    fake_openai.script = ["no idea", "still none"]
    with pytest.raises(LLMError, match="did not give 2 weights"):
        opt.ask(1)


def test_optimiser_history_is_bounded_but_keeps_the_best(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "b", ["a"], max_history=3)
    opt.tell([Trial([0.9], 9.0, "best one")] + [Trial([i / 20], float(i % 3), f"c{i}") for i in range(10)])
    shown = opt.visible_history()
    assert len(shown) == 3
    assert shown[0].critique == "best one"
    fake_openai.script = ["Weights: [0.1]"]
    opt.ask(1)
    prompt = fake_openai.requests[0]["body"]["messages"][0]["content"]
    assert "best one" in prompt and "c9" in prompt and "c2" not in prompt


def test_optimiser_tries_its_initial_first_even_after_observing_other_trials(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "b", ["a", "b"], initial=[0.2, 0.0])
    opt.observe([Trial([0.3, 0.0], 4.0, "a alone"), Trial([0.0, -0.3], 2.0, "b alone")])
    assert opt.ask(1) == [[0.2, 0.0]] and not fake_openai.requests
    fake_openai.script = ["Weights: [0.4, -0.1]"]
    assert opt.ask(1) == [[0.4, -0.1]]
    prompt = fake_openai.requests[0]["body"]["messages"][0]["content"]
    assert "a alone" in prompt and "b alone" in prompt


@pytest.mark.parametrize(
    "text, k, expected",
    [("Weights: [0.1, -0.2]", 2, [0.1, -0.2]), ("[0.3, 0.3] then Weights: [1, -1]", 2, [1.0, -1.0]), ("Weights: [0.1]", 2, None), ("[a, b]", 2, None)],
)
def test_parse_weights(text, k, expected):
    assert parse_weights(text, k) == expected

