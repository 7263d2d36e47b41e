"""The loop's phases and bookkeeping with the tiny real engine and scripted judges and optimisers."""

import pytest

import steering.autosteer.loop as autosteer_mod
import steering.autosteer.retrieve as retrieve_mod
import steering.autosteer.targets as targets_mod
from fakes import Given, ListOptimiser, ScriptedJudge
from steering.autosteer.config import AutoSteerConfig
from steering.autosteer.judges import Judge, JudgeError, Judgement
from steering.autosteer.loop import SCREEN_WEIGHT, AutoSteer
from steering.autosteer.optimisers import NumericOptimiser, Optimiser, WeightVector
from steering.autosteer.results import (
    Best,
    EpochResult,
    FinalResult,
    HeldOutResult,
    PhaseEvent,
    ScreenResult,
)
from steering.autosteer.retrieve import PROBE_PROMPTS, FeatureCandidate
from steering.runtime.engine import GenerationConfig

FEATS = [FeatureCandidate(5, "five", "manual", 1.0, 1.0), FeatureCandidate(9, "nine", "manual", -1.0, 1.0)]


def events_of(loop):
    """The loop's results, without its phase announcements."""
    return [e for e in loop.run() if not isinstance(e, PhaseEvent)]


def run_loop(rt, scores, proposals, **cfg):
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=6, heldout=["Why?"], **{"opening": False, **cfg})
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


def test_the_runs_stop_reaches_its_llm_client(tiny_runtime):
    """Stop must also end a wait on the endpoint (tests/steering/test_llm.py): the run hands its
    stop event to the client it was given."""
    from steering.llm import LLMClient

    client = LLMClient(base_url="http://127.0.0.1:9/v1", model="m")
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi"], max_new_tokens=6, epochs=1)
    loop = AutoSteer(tiny_runtime, cfg, ScriptedJudge([1.0]), Given(lambda c, answers=None: ListOptimiser([[0.1, 0.1]])), client=client, features=FEATS)
    assert client.cancel is not None and not client.cancel.is_set()
    loop.cancel()
    assert client.cancel.is_set()


def test_numeric_candidates_come_from_one_batched_generate(tiny_runtime, monkeypatch):
    calls = []
    real = tiny_runtime.engine.generate

    def spy(prompts, weights=None, **kw):
        calls.append((list(prompts), list(weights) if weights else None))
        return real(prompts, weights, **kw)

    monkeypatch.setattr(tiny_runtime.engine, "generate", spy)
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=4, epochs=1, candidates=3, heldout=[], opening=False)
    opt = NumericOptimiser(2, seed=1)
    events = events_of(AutoSteer(tiny_runtime, cfg, ScriptedJudge([1, 2, 3]), Given(lambda c, answers=None: opt), features=FEATS))
    # baseline call, then ONE call with 3 candidates x 2 prompts.
    assert len(calls) == 2
    assert len(calls[1][0]) == 6 and calls[1][0] == ["Hi", "Hello"] * 3
    assert calls[1][1][0] == calls[1][1][1] and calls[1][1][0] != calls[1][1][2]
    assert events[0].candidates == 3 and events[0].score == 3


def test_screening_keeps_the_candidates_that_score_best_alone(tiny_runtime, monkeypatch):
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
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=4, epochs=1, features=2, screen=2, candidates=1, heldout=[], mode="steered")
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
    monkeypatch.setattr(targets_mod, "distill_answers", lambda engine, behavior, prompts, **kw: targets_mod.DistillAnswers(list(prompts), [], []))


def _spy_generate(monkeypatch, engine, calls, before=None):
    real = engine.generate

    def spy(prompts, weights=None, **kw):
        calls.append(list(prompts))
        if before:
            before(len(calls))
        return real(prompts, weights, **kw)

    monkeypatch.setattr(engine, "generate", spy)


@pytest.mark.parametrize("score, warned", [(1.4, True), (3.0, False)])
def test_a_behaviour_the_model_barely_shows_when_told_gets_a_heads_up(tiny_runtime, monkeypatch, score, warned):
    weak = targets_mod.DistillAnswers(["Hi"], [], [], score=score, plain_score=1.0)
    monkeypatch.setattr(targets_mod, "distill_answers", lambda engine, behavior, prompts, **kw: weak)
    monkeypatch.setattr(retrieve_mod, "retrieve", lambda *a, **kw: [FeatureCandidate(i, "", "semantic", 1.0, 1.0) for i in (1, 2, 3)])
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi"], max_new_tokens=3, epochs=1, features=2, screen=2, candidates=1,
                          heldout=[], mode="steered")
    events = list(AutoSteer(tiny_runtime, cfg, ScriptedJudge([1.0, 2.0, 3.0, 0.0]),
                                 Given(lambda c, answers=None: NumericOptimiser(2, seed=0)), features=None).run())
    said = [e.message for e in events if isinstance(e, PhaseEvent) and e.phase == "heads-up"]
    notes = events[-1].profile.provenance["notes"]
    assert bool(said) is warned and any(n.startswith("heads-up: the model shows little") for n in notes) is warned
    if warned:
        assert f"score {score:.2f}, its plain answers 1.00" in said[0]


def test_screening_chunks_rows_and_uses_at_most_four_prompts(tiny_runtime, monkeypatch):
    pool = [FeatureCandidate(i, "", "semantic", 1.0, 1.0) for i in (1, 2, 3)]
    _no_distill(monkeypatch)
    monkeypatch.setattr(retrieve_mod, "retrieve", lambda *a, **kw: pool)
    monkeypatch.setattr(autosteer_mod, "SCREEN_BATCH", 5)
    calls = []
    _spy_generate(monkeypatch, tiny_runtime.engine, calls)
    prompts = ["a?", "b?", "c?", "d?", "e?", "f?"]
    cfg = AutoSteerConfig(behavior="b", prompts=prompts, max_new_tokens=3, epochs=1, features=2, screen=2, candidates=1, heldout=[], mode="steered")
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
    _no_distill(monkeypatch)
    monkeypatch.setattr(retrieve_mod, "retrieve", lambda *a, **kw: [FeatureCandidate(i, "", "semantic", 1.0, 1.0) for i in range(4)])
    monkeypatch.setattr(autosteer_mod, "SCREEN_BATCH", 2)
    cfg = AutoSteerConfig(behavior="b", prompts=["Hi"], max_new_tokens=3, epochs=3, features=2, screen=2, heldout=["Why?"], mode="steered")
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
    _no_distill(monkeypatch)
    monkeypatch.setattr(retrieve_mod, "retrieve", lambda *a, **kw: [FeatureCandidate(i, "", "semantic", 1.0, 1.0) for i in (4, 5, 6)])
    cfg = AutoSteerConfig(behavior="b", prompts=["Hi"], max_new_tokens=3, epochs=1, features=2, screen=2, candidates=1, heldout=[], mode="steered")
    events = events_of(AutoSteer(tiny_runtime, cfg, FlakyJudge([2.0, None, 1.0, 3.0]), Given(lambda c, answers=None: NumericOptimiser(2, seed=0)), features=None))
    screen = events[0]
    assert [c.index for c in screen.candidates] == [4, 6, 5] and screen.scores == [2.0, 1.0, 0.0]
    assert "not judged" in screen.critiques[2]
    assert events[1].score == 3.0 and [f.index for f in events[-1].features] == [4, 6]



class Observing(Optimiser):
    """Records what it observes; proposes nothing."""

    def __init__(self):
        self.observed = []

    def ask(self, n):
        return []

    def tell(self, trials):
        pass

    def observe(self, trials):
        self.observed += trials


def _loop(rt, judge, opt=None, features=FEATS, **cfg):
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=4, heldout=["Why?", "How?"], **cfg)
    return AutoSteer(rt, cfg, judge, Given(lambda c, answers=None: opt), features=features)


def test_screen_alone_orders_candidates_by_their_score_alone(tiny_runtime):
    pool = [FeatureCandidate(i, f"f{i}", "semantic", 1.0, 1.0) for i in (3, 7, 11)]
    loop = AutoSteer(tiny_runtime, AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=4, features=2),
                     ScriptedJudge([1.0, 3.0, 2.0]), Given(lambda c, answers=None: None))
    ctx = loop.baseline()
    res = loop.screen(pool, ctx)
    assert [c.index for c in res.candidates] == [7, 11, 3] and res.scores == [3.0, 2.0, 1.0] and res.kept == 2
    assert all(len(outs) == 2 for outs in res.outputs)


def test_seed_alone_tells_the_optimiser_what_each_kept_feature_scored_alone(tiny_runtime):
    opt = Observing()
    loop = _loop(tiny_runtime, ScriptedJudge([]), opt)
    other = FeatureCandidate(42, "dropped", "semantic", 1.0, 1.0)
    screened = ScreenResult([FEATS[1], other, FEATS[0]], [4.0, 3.0, 2.0], ["c9", "c42", "c5"], 2, 0.1, [["a"], ["b"], ["c"]])
    assert loop.seed(screened) is opt
    assert [(list(t.weights), t.score, t.critique, t.outputs) for t in opt.observed] == [
        ([0.0, -SCREEN_WEIGHT], 4.0, "c9", ("a",)), ([SCREEN_WEIGHT, 0.0], 2.0, "c5", ("c",))]
    assert all(isinstance(t.weights, WeightVector) and t.weights.free is None for t in opt.observed)


def test_epoch_alone_keeps_the_better_best(tiny_runtime):
    loop = _loop(tiny_runtime, ScriptedJudge([2.0]))
    ctx = loop.baseline()
    before = Best(5.0, WeightVector([0.4, 0.0]), ["x", "y"], "old")
    result, best = loop.epoch(1, ListOptimiser([[0.1, 0.2]]), ctx, before)
    assert best is before and result.score == 2.0 and result.best_score == 5.0 and result.best_weights == [0.4, 0.0]
    assert result.weights == [0.1, 0.2] and result.free_share == 0.0 and set(result.seconds) == {"optimise", "generate", "judge"}


def test_heldout_check_alone_judges_the_four_conditions_in_one_call(tiny_runtime):
    judge = ScriptedJudge([1.0, 2.0, 3.0, 4.0])
    loop = _loop(tiny_runtime, judge)
    held = loop.heldout_check(loop.steer_of([0.5, -0.5]))
    assert held.scores == {"unsteered": 1.0, "prompted": 2.0, "steered": 3.0, "prompted_steered": 4.0}
    assert len(judge.calls) == 1 and len(judge.calls[0][1]) == 4
    plain = [g.text for g in tiny_runtime.engine.generate(["Why?", "How?"], config=GenerationConfig(max_new_tokens=4))]
    assert held.outputs["unsteered"] == plain and judge.calls[0][0].baseline == plain
    assert held.prompts == ["Why?", "How?"]


def test_heldout_check_on_other_prompts_answers_and_judges_those(tiny_runtime):
    judge = ScriptedJudge([1.0, 2.0, 3.0, 4.0])
    loop = _loop(tiny_runtime, judge)
    held = loop.heldout_check(loop.steer_of([0.5, -0.5]), ["What now?"])
    assert held.prompts == ["What now?"] and judge.calls[0][0].prompts == ["What now?"]
    assert all(len(outs) == 1 for outs in held.outputs.values())
    plain = [g.text for g in tiny_runtime.engine.generate(["What now?"], config=GenerationConfig(max_new_tokens=4))]
    assert held.outputs["unsteered"] == plain
    assert held.per_prompt == {} and held.per_question("steered") is None  # this judge gives no per-prompt scores


class PerPromptJudge(ScriptedJudge):
    """Per-prompt scores from a list of lists, one per candidate."""

    def judge_many(self, ctx, candidates):
        self.calls.append((ctx, candidates))
        return [Judgement(sum(s) / len(s), "c", per_prompt=s) for s in (self.scores.pop(0) for _ in candidates)]


def test_heldout_check_keeps_per_prompt_scores_and_counts_questions_won(tiny_runtime):
    judge = PerPromptJudge([[1.0, 1.0], [2.0, 5.0], [3.0, 5.0], [1.0, 6.0]])
    loop = _loop(tiny_runtime, judge)
    held = loop.heldout_check(loop.steer_of([0.5, 0.0]))
    assert held.per_prompt == {"unsteered": [1.0, 1.0], "prompted": [2.0, 5.0], "steered": [3.0, 5.0], "prompted_steered": [1.0, 6.0]}
    assert held.per_question("steered") == (1, 1, 0) and held.per_question("prompted_steered") == (1, 0, 1)
    assert held.per_question("unsteered", against="steered") == (0, 0, 2)


def _held(prompted_steered, steered):
    return HeldOutResult(["Why?"], {"unsteered": 1.0, "prompted": 1.0, "steered": steered, "prompted_steered": prompted_steered}, {}, {}, {})


def test_make_profile_answers_with_the_prompt_too_only_when_that_scored_better(tiny_runtime):
    loop = _loop(tiny_runtime, ScriptedJudge([]))
    best = Best(6.0, WeightVector([0.5, -0.25]), ["a"], "c")
    prof = loop.make_profile(best, [4.0, 6.0], _held(5.0, 3.0), "epochs", None, "list")
    assert prof.mode == "prompted_steered" and prof.system_prompt == "Behave like a dog" and prof.weights() == {5: 0.5, 9: -0.25}
    assert prof.scores == {"epochs": [4.0, 6.0], "best": 6.0, "held_out": _held(5.0, 3.0).scores}
    assert prof.provenance["judge"] == "scripted" and prof.provenance["optimiser"] == "list" and prof.provenance["stopped"] == "epochs"
    assert loop.make_profile(best, [6.0], _held(3.0, 5.0), "epochs", None, "list").mode == "steered"
    none_found = loop.make_profile(Best(float("-inf"), WeightVector([0.0, 0.0]), [], ""), [], None, "cancelled", None, "list")
    assert none_found.weights() == {} and none_found.scores["best"] is None and none_found.mode == "steered"


class ObservingList(ListOptimiser):
    """Proposes the given vectors and records what it observes."""

    def __init__(self, proposals):
        super().__init__(proposals)
        self.observed = []

    def observe(self, trials):
        self.observed.extend(trials)


def _auto_run(tiny_runtime, monkeypatch, scores):
    """features=1 from a pool of 2 (screened), one epoch; records each generate's system prompts."""
    _no_distill(monkeypatch)
    pool = [FeatureCandidate(3, "three", "semantic", 1.0, 1.0), FeatureCandidate(7, "seven", "semantic", -1.0, 1.0)]
    monkeypatch.setattr(retrieve_mod, "retrieve", lambda *a, **kw: pool)
    systems = []
    real = tiny_runtime.engine.generate

    def spy(prompts, weights=None, **kw):
        systems.append(kw.get("system"))
        return real(prompts, weights, **kw)

    monkeypatch.setattr(tiny_runtime.engine, "generate", spy)
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Hello"], max_new_tokens=4, epochs=1, features=1, screen=2,
                          candidates=1, heldout=[])
    opt = ObservingList([[0.4]])
    judge = ScriptedJudge(scores)
    events = list(AutoSteer(tiny_runtime, cfg, judge, Given(lambda c, answers=None: opt), features=None).run())
    mode = next(e for e in events if isinstance(e, PhaseEvent) and e.phase == "mode")
    return events, mode, systems, opt, judge


def test_auto_mode_steers_on_top_of_the_prompt_when_the_prompt_alone_beats_every_feature(tiny_runtime, monkeypatch):
    # Screening scores 1 and 2, the prompted answers 4, then the epoch 3.
    events, mode, systems, opt, judge = _auto_run(tiny_runtime, monkeypatch, [1.0, 2.0, 4.0, 3.0])
    b = "Behave like a dog"
    assert "on top of the behaviour as a system prompt" in mode.message and "4.00" in mode.message
    # The baseline batch holds the prompted answers too; the screening steers alone; the epoch answers with the prompt.
    assert systems[0] == [None, None, b, b] and systems[1] is None and systems[2] == b
    epoch = next(e for e in events if isinstance(e, EpochResult))
    final = events[-1]
    assert epoch.condition == "prompted_steered" and epoch.to_json(final.features)["condition"] == "prompted_steered"
    assert final.profile.mode == "prompted_steered" and final.profile.provenance["trained_on"] == "prompted_steered"
    # The optimiser learnt the prompt alone (all weights 0) and its score, not the steered-alone screening.
    assert [(list(t.weights), t.score) for t in opt.observed] == [([0.0], 4.0)]
    ctx, cands = judge.calls[1]  # the prompted answers, judged against the unsteered ones
    assert len(cands) == 1 and len(cands[0]) == 2 and ctx.baseline == judge.calls[0][0].baseline


def test_auto_mode_steers_alone_when_a_feature_alone_beats_the_prompt(tiny_runtime, monkeypatch):
    events, mode, systems, opt, _ = _auto_run(tiny_runtime, monkeypatch, [1.0, 5.0, 2.0, 3.0])
    assert "optimising steering alone" in mode.message and "5.00" in mode.message
    assert systems[2] is None
    epoch = next(e for e in events if isinstance(e, EpochResult))
    assert epoch.condition == "steered" and events[-1].profile.provenance["trained_on"] == "steered"
    assert [(list(t.weights), t.score) for t in opt.observed] == [([-SCREEN_WEIGHT], 5.0)]  # feature 7 alone


def test_mode_is_checked():
    import pytest

    with pytest.raises(ValueError, match="mode must be one of"):
        AutoSteerConfig(behavior="b", prompts=["Hi"], mode="both")


def test_decide_without_a_comparison_steers_alone_and_a_forced_mode_stays():
    from steering.autosteer.mode import decide

    assert decide("auto", None, 3.0)[0] == "steered" and "no screening" in decide("auto", 2.0, None)[1]
    assert decide("auto", 2.0, 2.0)[0] == "steered"  # a tie keeps steering alone
    assert decide("prompted_steered", None, None)[0] == "prompted_steered"
    assert decide("steered", 9.0, 1.0)[0] == "steered"


def test_a_free_direction_too_long_for_a_profile_is_shortened_so_the_run_still_saves():
    import torch

    from steering.artefacts.profile import FREE_MAX_NORM
    from steering.autosteer.finish import _free_list

    notes: list[str] = []
    short = _free_list(torch.full((4,), 0.1), notes)
    assert short == [0.1] * 4 and not notes
    long = _free_list(torch.full((4,), 5.0), notes)  # 10 long
    assert FREE_MAX_NORM - 0.01 < sum(x * x for x in long) ** 0.5 <= FREE_MAX_NORM and "shortened from 10.00" in notes[0]
    for seed in range(20):  # stored values are rounded: still short enough for the profile check
        stored = _free_list(torch.randn(576, generator=torch.Generator().manual_seed(seed)) * 0.5, [])
        assert sum(x * x for x in stored) ** 0.5 <= FREE_MAX_NORM
    assert _free_list(None, notes) is None
