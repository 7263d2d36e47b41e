"""Targets: each question's best-judged answer written with the behaviour, the plain answers,
and the heads-up when even the best of them barely shows the behaviour."""

import pytest

from steering.autosteer.judges import Judge, Judgement, JudgeError
from steering.autosteer.targets import DistillAnswers, distill_answers, heads_up, remind


class _PhrasingJudge(Judge):
    """Scores each candidate (option) by a fixed value, or per prompt when `per_prompt` is given;
    records what it was shown."""

    def __init__(self, scores=None, error=False, per_prompt=None, plain=1.0):
        self.scores, self.error, self.per_prompt, self.seen, self.plain = scores, error, per_prompt, [], plain

    def judge(self, ctx, outputs):
        raise AssertionError("judge_many is used")

    def judge_many(self, ctx, candidates):
        self.seen.append((ctx, candidates))
        if self.error:
            raise JudgeError("no 'Score: N' line")
        if self.per_prompt is not None:
            per = list(self.per_prompt) + [(self.plain,) * len(ctx.prompts)] * (len(candidates) - len(self.per_prompt))
            return [Judgement(sum(p) / len(p), "", per_prompt=list(p)) for p in per]
        return [Judgement(s, "") for s in list(self.scores) + [self.plain] * (len(candidates) - len(self.scores))]


def _spy_generate(eng, monkeypatch):
    calls = []
    real = eng.generate

    def spy(prompts, *a, **kw):
        out = real(prompts, *a, **kw)
        calls.append((list(prompts), kw.get("system"), kw.get("config"), out))
        return out

    monkeypatch.setattr(eng, "generate", spy)
    return calls


def test_distill_answers_pick_each_prompts_best_judged_answer(tiny_runtime, monkeypatch):
    eng = tiny_runtime.engine
    calls = _spy_generate(eng, monkeypatch)
    prompts = ["Why is the sky blue?", "What is a cat?", "How do boats float?"]
    # options: greedy, greedy + reminder, sample 1, sample 2; each prompt's best is a different one
    judge = _PhrasingJudge(per_prompt=[(5, 1, 0), (1, 6, 0), (0, 2, 7), (0, 0, 7)])
    answers = distill_answers(eng, "Talk like a pirate", prompts, max_new_tokens=6, judge=judge, samples=2)
    (asks, system, cfg, gens), (s_asks, s_system, s_cfg, samples) = calls  # greedy batch, then one sampled batch
    n = len(prompts)
    assert asks == prompts + [remind(p, "Talk like a pirate") for p in prompts] + prompts
    assert system == ["Talk like a pirate"] * (2 * n) + [None] * n and cfg.temperature == 0
    assert s_asks == prompts + [remind(p, "Talk like a pirate") for p in prompts]  # sample 1 plain question, sample 2 reminded
    assert s_system == "Talk like a pirate" and s_cfg.temperature > 0 and s_cfg.seed is not None
    assert remind("Why?", " Talk like a pirate ") == remind("Why?", "Talk like a pirate.") == "Why?\n\n(Talk like a pirate.)"
    assert remind("Why?", "Be cheerful!") == "Why?\n\n(Be cheerful!)"
    ctx, cands = judge.seen[0]  # ONE judge call: every prompt, against the plain answers
    assert len(judge.seen) == 1 and ctx.prompts == prompts and ctx.baseline == [g.text for g in gens[2 * n :]]
    assert cands == [[g.text for g in gens[:n]], [g.text for g in gens[n : 2 * n]], [g.text for g in samples[:n]], [g.text for g in samples[n:]],
                     [g.text for g in gens[2 * n :]]]  # and the plain answers, last (never a target)
    # prompt 0: greedy (5); prompt 1: greedy + reminder (6); prompt 2: sample 1 beats sample 2 on the tie (7, 7)
    assert answers.targets == [gens[0].token_ids, gens[n + 1].token_ids, samples[2].token_ids]
    assert answers.plains == [g.token_ids for g in gens[2 * n :]] and answers.prompts == prompts
    assert "greedy: 1, greedy + reminder: 1, sample 1: 1" in answers.note and "judged 6.00 on average" in answers.note
    assert (answers.score, answers.plain_score) == (6.0, 1.0)


@pytest.mark.parametrize("scores, pick", [((2.0, 5.0), 1), ((5.0, 2.0), 0), ((3.0, 3.0), 0)])
def test_a_judge_without_per_prompt_scores_picks_one_option_for_every_prompt(tiny_runtime, monkeypatch, scores, pick):
    eng = tiny_runtime.engine
    calls = _spy_generate(eng, monkeypatch)
    prompts = ["Why is the sky blue?", "What is a cat?"]
    answers = distill_answers(eng, "Talk like a pirate", prompts, max_new_tokens=6, judge=_PhrasingJudge(scores), samples=0)
    assert len(calls) == 1  # no samples asked for: no sampled generate
    gens = calls[0][3]
    assert answers.targets == [g.token_ids for g in gens[pick * 2 : pick * 2 + 2]]


def test_distill_answers_fall_back_to_the_system_prompt_when_the_judge_fails(tiny_runtime):
    eng = tiny_runtime.engine
    answers = distill_answers(eng, "Talk like a pirate", ["Why is the sky blue?"], max_new_tokens=4, judge=_PhrasingJudge(error=True))
    plain = distill_answers(eng, "Talk like a pirate", ["Why is the sky blue?"], max_new_tokens=4)
    assert answers.phrasing == plain.phrasing == "system prompt" and plain.note == ""
    assert answers.targets == plain.targets and "could not compare" in answers.note


@pytest.mark.parametrize("best, plain, warned", [(1.85, 1.0, True), (1.96, 1.0, True), (2.27, 1.0, False), (2.95, 1.0, False), (7.0, 5.0, False), (5.0, 4.0, True)])
def test_the_heads_up_warns_when_the_best_targets_barely_beat_plain_answers(tiny_runtime, best, plain, warned):
    """Judged answers: a behaviour the model barely shows when told (dog: 1.85 vs 1.00) gets a
    warning; one it shows (pirate: 2.95) does not; the margin is on the judge's own scale."""
    answers = distill_answers(tiny_runtime.engine, "Behave like a dog", ["Why is the sky blue?", "What is a cat?"], max_new_tokens=4,
                              judge=_PhrasingJudge(scores=(best, best - 1, best - 1), plain=plain), samples=1)
    assert answers.score == pytest.approx(best) and answers.plain_score == plain
    note = heads_up(answers)
    assert bool(note) is warned
    if warned:
        assert f"score {best:.2f}, its plain answers {plain:.2f}" in note and "weak effect" in note


def test_no_heads_up_without_judged_targets(tiny_runtime):
    assert heads_up(None) == ""
    assert heads_up(DistillAnswers(["q"], [[1]], [[2]])) == ""
    failed = distill_answers(tiny_runtime.engine, "Behave like a dog", ["Why?"], max_new_tokens=3, judge=_PhrasingJudge(error=True))
    assert heads_up(failed) == ""


class _ShortJudge(_PhrasingJudge):
    """Forgets the last candidate (the plain answers)."""

    def judge_many(self, ctx, candidates):
        return super().judge_many(ctx, candidates)[:-1]


def test_a_judge_that_returns_too_few_verdicts_falls_back_to_the_system_prompt_targets(tiny_runtime):
    eng = tiny_runtime.engine
    answers = distill_answers(eng, "Talk like a pirate", ["Why is the sky blue?"], max_new_tokens=4, judge=_ShortJudge(scores=(5.0, 1.0, 1.0)))
    plain = distill_answers(eng, "Talk like a pirate", ["Why is the sky blue?"], max_new_tokens=4)
    assert answers.targets == plain.targets and "3 verdicts for 4 candidates" in answers.note and heads_up(answers) == ""
