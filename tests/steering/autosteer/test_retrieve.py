"""Retrieval: merging sources, contrastive activations, probe prompts, LLM-written queries."""

import pytest

from steering.autosteer.retrieve import (
    PROBE_PROMPTS,
    DistillAnswers,
    FeatureCandidate,
    contrastive_candidates,
    contrastive_scores,
    distill_answers,
    mean_answer_activations,
    merge,
    probe_prompts,
    remind,
    retrieve,
)
from steering.autosteer.judges import Judge, Judgement, JudgeError
from steering.runtime.embeddings import embed
from steering.sae.index import FeatureIndex, FeatureRecord


def test_merge_round_robins_and_dedupes():
    a = [FeatureCandidate(i, "", "contrastive", 1, 1) for i in (1, 2, 3)]
    b = [FeatureCandidate(i, "", "semantic", 1, 1) for i in (2, 4, 5)]
    assert [c.index for c in merge([a, b], 4)] == [1, 2, 3, 4]
    assert [c.index for c in merge([a, []], 10)] == [1, 2, 3]


def test_contrastive_candidates_rank_latents_by_consistent_activation_difference(tiny_runtime, monkeypatch):
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
    out = probe_prompts(["A?", "A?", "B?", PROBE_PROMPTS[1]], exclude=[PROBE_PROMPTS[0]])
    assert out[:3] == ["A?", "B?", PROBE_PROMPTS[1]] and PROBE_PROMPTS[0] not in out
    assert len(out) == len(set(out)) == 3 + len(PROBE_PROMPTS) - 2
    many = probe_prompts([f"q{i}" for i in range(12)], max_prompts=8)
    assert many == [f"q{i}" for i in range(8)] + PROBE_PROMPTS


class _PhrasingJudge(Judge):
    """Scores each candidate (option) by a fixed value, or per prompt when `per_prompt` is given;
    records what it was shown."""

    def __init__(self, scores=None, error=False, per_prompt=None):
        self.scores, self.error, self.per_prompt, self.seen = scores, error, per_prompt, []

    def judge(self, ctx, outputs):
        raise AssertionError("judge_many is used")

    def judge_many(self, ctx, candidates):
        self.seen.append((ctx, candidates))
        if self.error:
            raise JudgeError("no 'Score: N' line")
        if self.per_prompt is not None:
            return [Judgement(sum(p) / len(p), "", per_prompt=list(p)) for p in self.per_prompt]
        return [Judgement(s, "") for s in self.scores]


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
    assert cands == [[g.text for g in gens[:n]], [g.text for g in gens[n : 2 * n]], [g.text for g in samples[:n]], [g.text for g in samples[n:]]]
    # prompt 0: greedy (5); prompt 1: greedy + reminder (6); prompt 2: sample 1 beats sample 2 on the tie (7, 7)
    assert answers.targets == [gens[0].token_ids, gens[n + 1].token_ids, samples[2].token_ids]
    assert answers.plains == [g.token_ids for g in gens[2 * n :]] and answers.prompts == prompts
    assert "greedy: 1, greedy + reminder: 1, sample 1: 1" in answers.note and "judged 6.00 on average" in answers.note


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


def test_llm_retrieval_queries_add_opposite_features(fake_openai, llm_client, tiny_runtime):
    labels = ["dogs and puppies", "barking and howling", "formal business letters", "cats", "the weather"]
    idx = FeatureIndex([FeatureRecord(i, l, "offline", 1.0, 0.1) for i, l in enumerate(labels)], embed(labels), {})
    fake_openai.script = ['{"add": ["barking"], "suppress": ["formal business writing"]}']
    cands = retrieve(None, idx, "Behave like a dog", [], k=4, client=llm_client)
    by_index = {c.index: c for c in cands}
    assert by_index[2].source == "llm-opposite" and by_index[2].sign == -1.0
    assert by_index[1].source in ("llm", "semantic")
    assert cands[0].source == "semantic" and cands[0].index in (0, 1)


def test_llm_retrieval_failure_falls_back_to_offline_sources(fake_openai, llm_client):
    labels = ["dogs and puppies", "cats"]
    idx = FeatureIndex([FeatureRecord(i, l, "offline", 1.0, 0.1) for i, l in enumerate(labels)], embed(labels), {})
    fake_openai.script = [(500, {"error": "x"})]
    cands = retrieve(None, idx, "Behave like a dog", [], k=2, client=llm_client)
    assert [c.source for c in cands] == ["semantic", "semantic"]

