"""The loop's bookkeeping with the tiny real engine and scripted judges; numeric optimiser; retrieval."""

import threading

import pytest

from fakes import Given, ListOptimiser, ScriptedJudge
from steering.autosteer.config import AutoSteerConfig
from steering.autosteer.loop import AutoSteer, SCREEN_WEIGHT
from steering.autosteer.results import EpochResult, FinalResult, PhaseEvent, ScreenResult
from steering.autosteer.judges import harmonic_mean, Judge, JudgeContext, Judgement, JudgeError, MetricJudge
from steering.autosteer.optimisers import NumericOptimiser, Trial
from steering.autosteer.retrieve import contrastive_candidates, contrastive_scores, FeatureCandidate, merge, PROBE_PROMPTS, probe_prompts

FEATS = [FeatureCandidate(5, "five", "manual", 1.0, 1.0), FeatureCandidate(9, "nine", "manual", -1.0, 1.0)]


def events_of(loop):
    """The loop's results, without its phase announcements."""
    return [e for e in loop.run() if not isinstance(e, PhaseEvent)]


def run_loop(rt, scores, proposals, **cfg):
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=6, heldout=["Why?"], **cfg)
    judge = ScriptedJudge(scores)
    opt = ListOptimiser(proposals)
    loop = AutoSteer(rt, cfg, judge, Given(lambda cands, answers=None: opt), features=FEATS)
    events = events_of(loop)
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
    assert judge.calls[0][0].baseline == [g.text for g in tiny_runtime.engine.generate(["Hi", "Hello"], config=__import__("steering.runtime.engine", fromlist=["x"]).GenerationConfig(max_new_tokens=6))]


def test_early_stop_at_threshold(tiny_runtime):
    events, _, opt = run_loop(tiny_runtime, [3.0, 8.0, 0, 0, 0, 0], [[0.1, 0.1], [0.3, 0.3], [0.9, 0.9]], epochs=5, threshold=7)
    epochs = [e for e in events if isinstance(e, EpochResult)]
    assert len(epochs) == 2
    assert events[-1].stopped == "threshold"
    assert opt.proposals == [[0.9, 0.9]]


def test_cancel_stops_the_loop_and_skips_the_heldout_check(tiny_runtime):
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi"], max_new_tokens=6, epochs=10, threshold=99)
    loop = AutoSteer(tiny_runtime, cfg, ScriptedJudge([1.0] * 20), Given(lambda c, answers=None: ListOptimiser([[0.1, 0.1]] * 20)), features=FEATS)
    seen = []
    for event in loop.run():
        if not isinstance(event, PhaseEvent):
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
    events = events_of(AutoSteer(tiny_runtime, cfg, ScriptedJudge([1, 2, 3]), Given(lambda c, answers=None: opt), features=FEATS))
    # baseline call, then ONE call with 3 candidates x 2 prompts.
    assert len(calls) == 2
    assert len(calls[1][0]) == 6 and calls[1][0] == ["Hi", "Hello"] * 3
    assert calls[1][1][0] == calls[1][1][1] and calls[1][1][0] != calls[1][1][2]
    assert events[0].candidates == 3 and events[0].score == 3


def test_screening_keeps_the_candidates_that_score_best_alone(tiny_runtime, monkeypatch):
    import steering.autosteer.retrieve as retrieve_mod

    pool = [FeatureCandidate(i, f"f{i}", "semantic", s, 1.0) for i, s in ((3, 1.0), (7, -1.0), (11, 1.0), (20, -1.0))]
    asked = {}

    def fake_retrieve(engine, index, behavior, prompts, k, client=None, answers=None):
        asked.update(prompts=list(prompts), k=k)
        return pool

    _no_distill(monkeypatch)
    monkeypatch.setattr(retrieve_mod, "retrieve", fake_retrieve)
    calls = []
    real = tiny_runtime.engine.generate
    monkeypatch.setattr(tiny_runtime.engine, "generate", lambda p, w=None, **kw: calls.append(list(w or [])) or real(p, w, **kw))
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=4, epochs=1, features=2, screen=2, candidates=1, heldout=[])
    opt = NumericOptimiser(2, seed=0)
    # Screening scores (pool order): 1, 5, 3, 0 -> keep 7 then 11. Then one epoch with one candidate.
    judge = ScriptedJudge([1.0, 5.0, 3.0, 0.0, 2.0])
    events = events_of(AutoSteer(tiny_runtime, cfg, judge, Given(lambda c, answers=None: opt), features=None))
    screen = events[0]
    assert isinstance(screen, ScreenResult)
    assert [c.index for c in screen.candidates] == [7, 11, 3, 20] and screen.scores == [5.0, 3.0, 1.0, 0.0]
    assert screen.kept == 2
    assert [f.index for f in events[-1].features] == [7, 11]
    assert events[-1].screened is screen
    # Retrieval asked for features x screen candidates over the training prompts plus probe questions.
    assert asked["k"] == 4 and asked["prompts"][:2] == ["Hi", "Hello"] and len(asked["prompts"]) == 2 + len(PROBE_PROMPTS)
    # One batched generate for the screening: each candidate alone at its sign, once per prompt.
    assert calls[1] == [{c.index: c.sign * SCREEN_WEIGHT} for c in pool for _ in range(2)]
    # The optimiser saw the kept features' single scores as trials (one-hot vectors, kept order).
    told = sorted((t.params["w0"], t.params["w1"], t.value) for t in opt.study.trials if t.value is not None)
    assert (-SCREEN_WEIGHT, 0.0, 5.0) in told and (0.0, SCREEN_WEIGHT, 3.0) in told
    assert events[-1].profile.provenance["screened"] == {"7": 5.0, "11": 3.0, "3": 1.0, "20": 0.0}


def _no_distill(monkeypatch):
    """Skip the answers with/without the behaviour that real retrieval reads (retrieval is faked)."""
    import steering.autosteer.retrieve as retrieve_mod

    monkeypatch.setattr(retrieve_mod, "distill_answers", lambda engine, behavior, prompts, **kw: retrieve_mod.DistillAnswers(list(prompts), [], []))


def _spy_generate(monkeypatch, engine, calls, before=None):
    real = engine.generate

    def spy(prompts, weights=None, **kw):
        calls.append(list(prompts))
        if before:
            before(len(calls))
        return real(prompts, weights, **kw)

    monkeypatch.setattr(engine, "generate", spy)


def test_screening_chunks_rows_and_uses_at_most_four_prompts(tiny_runtime, monkeypatch):
    import steering.autosteer.loop as autosteer_mod
    import steering.autosteer.retrieve as retrieve_mod

    pool = [FeatureCandidate(i, "", "semantic", 1.0, 1.0) for i in (1, 2, 3)]
    _no_distill(monkeypatch)
    monkeypatch.setattr(retrieve_mod, "retrieve", lambda *a, **kw: pool)
    monkeypatch.setattr(autosteer_mod, "SCREEN_BATCH", 5)
    calls = []
    _spy_generate(monkeypatch, tiny_runtime.engine, calls)
    prompts = ["a?", "b?", "c?", "d?", "e?", "f?"]
    cfg = AutoSteerConfig(behavior="b", prompts=prompts, max_new_tokens=3, epochs=1, features=2, screen=2, candidates=1, heldout=[])
    judge = ScriptedJudge([1.0, 2.0, 3.0, 0.0])
    events = events_of(AutoSteer(tiny_runtime, cfg, judge, Given(lambda c, answers=None: NumericOptimiser(2, seed=0)), features=None))
    screen = events[0]
    # baseline (6 rows); 3 candidates x 4 prompts = 12 rows in chunks of 5, 5, 2; then the epoch.
    assert [len(c) for c in calls] == [6, 5, 5, 2, 6]
    assert calls[1] + calls[2] + calls[3] == prompts[:4] * 3
    assert judge.calls[0][0].prompts == prompts[:4] and len(judge.calls[0][1]) == 3
    assert [c.index for c in screen.candidates] == [3, 2, 1] and [len(o) for o in screen.outputs] == [4, 4, 4]
    assert screen.outputs[0] == judge.calls[0][1][2]


def test_cancel_during_screening_stops_before_any_epoch(tiny_runtime, monkeypatch):
    import steering.autosteer.loop as autosteer_mod
    import steering.autosteer.retrieve as retrieve_mod

    _no_distill(monkeypatch)
    monkeypatch.setattr(retrieve_mod, "retrieve", lambda *a, **kw: [FeatureCandidate(i, "", "semantic", 1.0, 1.0) for i in range(4)])
    monkeypatch.setattr(autosteer_mod, "SCREEN_BATCH", 2)
    cfg = AutoSteerConfig(behavior="b", prompts=["Hi"], max_new_tokens=3, epochs=3, features=2, screen=2, heldout=["Why?"])
    judge = ScriptedJudge([1.0] * 20)
    loop = AutoSteer(tiny_runtime, cfg, judge, Given(lambda c, answers=None: NumericOptimiser(2, seed=0)), features=None)
    calls = []
    _spy_generate(monkeypatch, tiny_runtime.engine, calls, before=lambda n: n == 2 and loop.cancel())
    events = events_of(loop)
    assert [type(e).__name__ for e in events] == ["FinalResult"]
    final = events[0]
    assert final.stopped == "cancelled" and final.heldout is None and final.profile.features == []
    assert len(calls) == 2 and not judge.calls  # the first screening chunk, then nothing


class FlakyJudge(Judge):
    """Fails on any batch of several candidates; one at a time, follows a script (None = fail)."""

    name = "flaky"

    def __init__(self, script):
        self.script = list(script)

    def judge_many(self, ctx, candidates):
        if len(candidates) > 1:
            raise JudgeError("no score")
        score = self.script.pop(0)
        if score is None:
            raise JudgeError("no 'Score: N' line")
        return [Judgement(score, "fine")]


def test_screening_survives_a_judge_that_fails_on_one_candidate(tiny_runtime, monkeypatch):
    import steering.autosteer.retrieve as retrieve_mod

    _no_distill(monkeypatch)
    monkeypatch.setattr(retrieve_mod, "retrieve", lambda *a, **kw: [FeatureCandidate(i, "", "semantic", 1.0, 1.0) for i in (4, 5, 6)])
    cfg = AutoSteerConfig(behavior="b", prompts=["Hi"], max_new_tokens=3, epochs=1, features=2, screen=2, candidates=1, heldout=[])
    events = events_of(AutoSteer(tiny_runtime, cfg, FlakyJudge([2.0, None, 1.0, 3.0]), Given(lambda c, answers=None: NumericOptimiser(2, seed=0)), features=None))
    screen = events[0]
    assert [c.index for c in screen.candidates] == [4, 6, 5] and screen.scores == [2.0, 1.0, 0.0]
    assert "not judged" in screen.critiques[2]
    assert events[1].score == 3.0 and [f.index for f in events[-1].features] == [4, 6]


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


@pytest.mark.parametrize(
    "kw, msg",
    [
        ({"behavior": "  "}, "describe a behaviour"),
        ({"behavior": "x" * 501}, "too long"),
        ({"prompts": ["", " "]}, "training prompt"),
        ({"epochs": 0}, "epochs"),
        ({"features": 99}, "features"),
        ({"screen": 0}, "screen"),
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


def test_contrastive_candidates_rank_latents_by_consistent_activation_difference(tiny_runtime, monkeypatch):
    from steering.autosteer.retrieve import DistillAnswers, mean_answer_activations

    eng = tiny_runtime.engine
    tok = eng.tokenizer
    dog = tok("Dogs like bones and walks. Dogs like bones.", add_special_tokens=False)["input_ids"]
    sky = tok("The quick brown fox jumps over the lazy dog.", add_special_tokens=False)["input_ids"]
    # The tiny random model ignores system prompts; script its answers: behaviour rows talk about bones.
    answers = DistillAnswers(["Why is the sky blue?"], [dog], [sky])
    cands = contrastive_candidates(eng, None, answers, k=6)
    assert len(cands) == 6 and len({c.index for c in cands}) == 6
    assert [c.score for c in cands] == sorted([c.score for c in cands], reverse=True)
    ctx = tok(eng.chat_prompt("Why is the sky blue?"), add_special_tokens=False)["input_ids"]
    means = mean_answer_activations(eng, [ctx, ctx], [dog, sky])
    diff = means[0] - means[1]
    for c in cands:
        assert c.sign == (1.0 if diff[c.index] > 0 else -1.0)
        assert abs(float(diff[c.index])) == pytest.approx(c.score, rel=1e-5)
    assert cands[0].score == pytest.approx(float(diff.abs().max()), rel=1e-5)


def test_contrastive_score_prefers_consistent_latents():
    import torch

    # latent 0 jumps on one prompt only; latent 1 moves a little on every prompt; latent 2 is mixed.
    per_prompt = torch.tensor([[4.0, 1.0, 2.0], [0.0, 1.0, -2.5], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    diff, score = contrastive_scores(per_prompt)
    assert diff.tolist() == pytest.approx([1.0, 1.0, 0.125])
    assert score.tolist() == pytest.approx([0.25, 1.0, 0.125 * 0.5])


def test_probe_prompts_add_the_fixed_probes_without_heldout_or_repeats():
    from steering.autosteer.retrieve import PROBE_PROMPTS

    out = probe_prompts(["A?", "A?", "B?", PROBE_PROMPTS[1]], exclude=[PROBE_PROMPTS[0]])
    assert out[:3] == ["A?", "B?", PROBE_PROMPTS[1]] and PROBE_PROMPTS[0] not in out
    assert len(out) == len(set(out)) == 3 + len(PROBE_PROMPTS) - 2
    many = probe_prompts([f"q{i}" for i in range(12)], max_prompts=8)
    assert many == [f"q{i}" for i in range(8)] + PROBE_PROMPTS


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
    # No behaviour but fluent and on the question: the rubric's 0-1 band, never more.
    assert same.score <= 1.0 and "concept" in same.critique
    assert doggy.parts["concept_similarity"] > 0.5  # (the likelihood half needs a real model)
    assert garbage.score < doggy.score or doggy.score == 0
    assert empty.score == 0
    assert 0 <= doggy.score <= 10


def test_metric_judge_relevance_is_zero_off_topic_and_full_near_the_baseline(tiny_runtime):
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Explain things in a way that children can understand", ["How do plants grow?"],
                       ["Plants grow from seeds. They take in water through their roots and use sunlight to make food."])
    same, off_topic = judge.judge_many(ctx, [ctx.baseline, ["My favourite football team won the cup yesterday after a penalty shootout."]])
    assert same.parts["relevance"] == 1.0
    assert off_topic.parts["relevance"] == 0.0 and off_topic.score == 0.0



LOOP = "The sky is made up of lots of things that make it blue. " * 5


def test_metric_judge_gives_zero_to_a_looping_answer(tiny_runtime):
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Explain things in a way that children can understand", ["Why is the sky blue?"],
                       ["The sky looks blue because air scatters blue sunlight more than red light."])
    [loop] = judge.judge_many(ctx, [[LOOP]])
    assert loop.score == 0.0 and loop.parts["coherence"] == 0.0 and loop.parts["degenerate"] == 1.0
    assert "degenerate" in loop.critique


def test_metric_judge_gives_zero_to_an_answer_that_leaves_the_question(tiny_runtime):
    # The kids' profile's drift, quoted in the issue: brushing teeth -> breathing and "why I'm here".
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Explain things in a way that children can understand", ["Why do we have to brush our teeth?"],
                       ["We brush our teeth to remove food and plaque, which stops tooth decay and gum disease."])
    drift = ("Breathing is not just about breathing. It's also about the environment. So let me tell you something. "
             "You're right. That's why I'm here today.")
    [j] = judge.judge_many(ctx, [[drift]])
    assert j.parts["relevance"] == 0.0 and j.score == 0.0
