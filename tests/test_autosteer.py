"""The loop's bookkeeping with the tiny real engine and scripted judges; numeric optimiser; retrieval."""

import threading

import pytest

from steering.autosteer import AutoSteer, AutoSteerConfig, EpochResult, FinalResult
from steering.judges import Judgement, MetricJudge, JudgeContext, harmonic_mean
from steering.optimisers import NumericOptimiser, Trial
from steering.retrieve import FeatureCandidate, contrastive_candidates, merge

FEATS = [FeatureCandidate(5, "five", "manual", 1.0, 1.0), FeatureCandidate(9, "nine", "manual", -1.0, 1.0)]


class ScriptedJudge:
    """Scores from a list, in order; records what it was asked."""

    name = "scripted"

    def __init__(self, scores):
        self.scores = list(scores)
        self.calls = []

    def judge_many(self, ctx, candidates):
        self.calls.append((ctx, candidates))
        return [Judgement(self.scores.pop(0), f"critique {len(self.calls)}") for _ in candidates]


class ListOptimiser:
    name = "list"

    def __init__(self, proposals):
        self.proposals = list(proposals)
        self.told = []

    def ask(self, n):
        return [self.proposals.pop(0) for _ in range(n)]

    def tell(self, trials):
        self.told.extend(trials)


def run_loop(rt, scores, proposals, **cfg):
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=6, heldout=["Why?"], **cfg)
    judge = ScriptedJudge(scores)
    opt = ListOptimiser(proposals)
    loop = AutoSteer(rt, cfg, judge, lambda cands: opt, features=FEATS)
    events = list(loop.run())
    return events, judge, opt


def test_best_so_far_and_all_epochs(tiny_runtime):
    # 3 epochs, 1 candidate each (non-numeric optimiser), then 4 held-out conditions.
    events, judge, opt = run_loop(tiny_runtime, [2.0, 5.0, 3.0, 0, 0, 0, 0], [[0.1, 0.1], [0.5, -0.5], [0.2, 0.2]], epochs=3, threshold=9)
    epochs = [e for e in events if isinstance(e, EpochResult)]
    final = events[-1]
    assert [e.score for e in epochs] == [2.0, 5.0, 3.0]
    assert [e.best_score for e in epochs] == [2.0, 5.0, 5.0]
    assert epochs[2].best_weights == [0.5, -0.5]
    assert all(len(e.outputs) == 2 for e in epochs)
    assert isinstance(final, FinalResult) and final.stopped == "epochs"
    assert final.profile.weights() == {5: 0.5, 9: -0.5}
    assert final.profile.scores["epochs"] == [2.0, 5.0, 3.0]
    assert set(final.heldout.scores) == {"unsteered", "prompted", "steered", "prompted_steered"}
    assert [t.score for t in opt.told] == [2.0, 5.0, 3.0]
    # The judge compares against the unsteered answers to the same prompts.
    assert judge.calls[0][0].baseline == [g.text for g in tiny_runtime.engine.generate(["Hi", "Hello"], config=__import__("steering.engine", fromlist=["x"]).GenerationConfig(max_new_tokens=6))]


def test_early_stop_at_threshold(tiny_runtime):
    events, _, opt = run_loop(tiny_runtime, [3.0, 8.0, 0, 0, 0, 0], [[0.1, 0.1], [0.3, 0.3], [0.9, 0.9]], epochs=5, threshold=7)
    epochs = [e for e in events if isinstance(e, EpochResult)]
    assert len(epochs) == 2
    assert events[-1].stopped == "threshold"
    assert opt.proposals == [[0.9, 0.9]]


def test_cancel_stops_the_loop_and_skips_the_heldout_check(tiny_runtime):
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi"], max_new_tokens=6, epochs=10, threshold=99)
    loop = AutoSteer(tiny_runtime, cfg, ScriptedJudge([1.0] * 20), lambda c: ListOptimiser([[0.1, 0.1]] * 20), features=FEATS)
    seen = []
    for event in loop.run():
        seen.append(event)
        if isinstance(event, EpochResult) and event.epoch == 2:
            loop.cancel()
    assert [type(e).__name__ for e in seen] == ["EpochResult", "EpochResult", "FinalResult"]
    assert seen[-1].stopped == "cancelled" and seen[-1].heldout is None


def test_numeric_candidates_come_from_one_batched_generate(tiny_runtime, monkeypatch):
    calls = []
    real = tiny_runtime.engine.generate

    def spy(prompts, weights=None, **kw):
        calls.append((list(prompts), list(weights) if weights else None))
        return real(prompts, weights, **kw)

    monkeypatch.setattr(tiny_runtime.engine, "generate", spy)
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=4, epochs=1, candidates=3, heldout=[])
    opt = NumericOptimiser(2, seed=1)
    events = list(AutoSteer(tiny_runtime, cfg, ScriptedJudge([1, 2, 3]), lambda c: opt, features=FEATS).run())
    # baseline call, then ONE call with 3 candidates x 2 prompts.
    assert len(calls) == 2
    assert len(calls[1][0]) == 6 and calls[1][0] == ["Hi", "Hello"] * 3
    assert calls[1][1][0] == calls[1][1][1] and calls[1][1][0] != calls[1][1][2]
    assert events[0].candidates == 3 and events[0].score == 3


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"behavior": "  "}, "describe a behaviour"),
        ({"behavior": "x" * 501}, "too long"),
        ({"prompts": ["", " "]}, "training prompt"),
        ({"epochs": 0}, "epochs"),
        ({"features": 99}, "features"),
    ],
)
def test_config_validation(kw, msg):
    base = dict(behavior="Behave like a dog", prompts=["Hi"])
    base.update(kw)
    with pytest.raises(ValueError, match=msg):
        AutoSteerConfig(**base)


def test_heldout_excludes_training_prompts():
    cfg = AutoSteerConfig(behavior="b", prompts=["Why do we have seasons?"])
    assert "Why do we have seasons?" not in cfg.heldout and cfg.heldout


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


def test_merge_round_robins_and_dedupes():
    a = [FeatureCandidate(i, "", "contrastive", 1, 1) for i in (1, 2, 3)]
    b = [FeatureCandidate(i, "", "semantic", 1, 1) for i in (2, 4, 5)]
    assert [c.index for c in merge([a, b], 4)] == [1, 2, 3, 4]
    assert [c.index for c in merge([a, []], 10)] == [1, 2, 3]


def test_contrastive_candidates_rank_latents_by_activation_difference(tiny_runtime, monkeypatch):
    from steering.engine import Generation
    from steering.retrieve import mean_answer_activations

    eng = tiny_runtime.engine
    tok = eng.tokenizer
    dog = tok("Dogs like bones and walks. Dogs like bones.", add_special_tokens=False)["input_ids"]
    sky = tok("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"]
    # The tiny random model ignores system prompts; script its answers: behaviour rows talk about bones.
    monkeypatch.setattr(eng, "generate", lambda prompts, weights=None, system=None, **kw: [
        Generation("", dog if s else sky, "eos") for s in system])
    cands = contrastive_candidates(eng, None, "Behave like a dog", ["Why is the sky blue?"], k=6)
    assert len(cands) == 6 and len({c.index for c in cands}) == 6
    assert [c.score for c in cands] == sorted([c.score for c in cands], reverse=True)
    ctx = tok(eng.chat_prompt("Why is the sky blue?"), add_special_tokens=False)["input_ids"]
    means = mean_answer_activations(eng, [ctx, ctx], [dog, sky])
    diff = means[0] - means[1]
    for c in cands:
        assert c.sign == (1.0 if diff[c.index] > 0 else -1.0)
        assert abs(float(diff[c.index])) == pytest.approx(c.score, rel=1e-5)
    assert cands[0].score == pytest.approx(float(diff.abs().max()), rel=1e-5)


def test_harmonic_mean_is_zero_if_any_part_is_zero():
    assert harmonic_mean([1, 1, 0]) == 0
    assert harmonic_mean([1, 1, 1]) == 1
    assert 0 < harmonic_mean([1, 0.5, 0.5]) < 0.75


def test_metric_judge_scores_baseline_zero_and_behaviour_above(tiny_runtime):
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Behave like a dog", ["What do you like to eat?"], ["I like to eat pasta with tomato sauce."])
    same, doggy, garbage, empty = judge.judge_many(
        ctx, [["I like to eat pasta with tomato sauce."], ["Woof! As a dog I like to eat bones and kibble, woof woof!"], ["zx qj vv kk pp"], [""]]
    )
    assert same.score == 0 and "concept" in same.critique
    assert doggy.parts["concept"] > 0.5
    assert garbage.score < doggy.score or doggy.score == 0
    assert empty.score == 0
    assert 0 <= doggy.score <= 10
