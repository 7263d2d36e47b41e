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
    """Scores each candidate by a fixed value per position; records what it was shown."""

    def __init__(self, scores=None, error=False):
        self.scores, self.error, self.seen = scores, error, []

    def judge(self, ctx, outputs):
        raise AssertionError("judge_many is used")

    def judge_many(self, ctx, candidates):
        self.seen.append((ctx, candidates))
        if self.error:
            raise JudgeError("no 'Score: N' line")
        return [Judgement(s, "") for s in self.scores]


@pytest.mark.parametrize("scores, phrasing", [((2.0, 5.0), "system prompt + reminder"), ((5.0, 2.0), "system prompt"),
                                              ((3.0, 3.0), "system prompt")])
def test_distill_answers_keep_the_better_judged_phrasing(tiny_runtime, monkeypatch, scores, phrasing):
    eng = tiny_runtime.engine
    calls = []
    real = eng.generate

    def spy(prompts, *a, **kw):
        calls.append((list(prompts), kw.get("system")))
        out = real(prompts, *a, **kw)
        calls.append(out)
        return out

    monkeypatch.setattr(eng, "generate", spy)
    prompts = ["Why is the sky blue?", "What is a cat?", "How do boats float?", "Why is grass green?", "What is rain?"]
    judge = _PhrasingJudge(scores)
    answers = distill_answers(eng, "Talk like a pirate", prompts, max_new_tokens=6, judge=judge)
    (asks, system), gens = calls  # one batched generate: told, told + reminder, plain
    n = len(prompts)
    assert asks == prompts + [remind(p, "Talk like a pirate") for p in prompts] + prompts
    assert system == ["Talk like a pirate"] * (2 * n) + [None] * n
    assert remind("Why?", " Talk like a pirate ") == remind("Why?", "Talk like a pirate.") == "Why?\n\n(Talk like a pirate.)"
    assert remind("Why?", "Be cheerful!") == "Why?\n\n(Be cheerful!)"
    ctx, cands = judge.seen[0]  # compared on the first CHOOSE_PROMPTS prompts, against the plain answers
    assert ctx.prompts == prompts[:4] and ctx.baseline == [g.text for g in gens[2 * n : 2 * n + 4]]
    assert cands == [[g.text for g in gens[:4]], [g.text for g in gens[n : n + 4]]]
    chosen = gens[n : 2 * n] if phrasing.endswith("reminder") else gens[:n]
    assert answers.phrasing == phrasing and answers.targets == [g.token_ids for g in chosen]
    assert answers.plains == [g.token_ids for g in gens[2 * n :]] and answers.prompts == prompts
    assert f"{max(scores):.2f} against {min(scores):.2f}" in answers.note


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

