"""Retrieval: merging sources, contrastive activations, probe prompts, LLM-written queries."""

import pytest

from steering.autosteer.retrieve import (
    PROBE_PROMPTS,
    FeatureCandidate,
    contrastive_candidates,
    contrastive_scores,
    mean_answer_activations,
    merge,
    probe_prompts,
    retrieve,
)
from steering.autosteer.targets import DistillAnswers
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

