"""Building the feature index on the tiny model: evidence, frequencies, labels."""

import numpy as np
import pytest

from steering.sae.index import MARK_L, MARK_R, FeatureIndex
from steering.sae.labels import build_index, document_frequencies, offline_label

TEXTS = [
    "Dogs like bones and walks. The dog barks at the lazy fox.",
    "Why is the sky blue? Children ask questions about space.",
    "Plants need water and sunlight to grow in the garden.",
    "The ocean is full of whales, fish and salty water.",
    "The quick brown fox jumps over the lazy dog.",
    "Animals and children like the ocean and the sky.",
] * 3


@pytest.fixture(scope="module")
def built(tiny_model, tiny_tokenizer, tiny_sae):
    return build_index(tiny_model, tiny_tokenizer, tiny_sae, 2, TEXTS, meta={"sae": "tiny"})


def test_index_has_evidence_for_every_latent(built, tiny_sae):
    assert len(built) == tiny_sae.cfg.d_sae
    assert built.embeddings.shape == (tiny_sae.cfg.d_sae, 384)
    alive = [r for r in built.records if r.frequency > 0]
    assert len(alive) > tiny_sae.cfg.d_sae // 4
    for r in alive:
        assert r.max_activation > 0
        assert 1 <= len(r.contexts) <= 8
        assert all(MARK_L in c and MARK_R in c for c in r.contexts)
        assert len(r.promoted) == 10 and len(r.suppressed) == 10
        assert r.label
    # Top contexts come from distinct texts (at most 6 distinct texts exist here).
    assert max(len(r.contexts) for r in alive) <= 6
    assert built.meta["tokens"] > 0 and built.meta["sae"] == "tiny"


def test_frequency_is_a_fraction_and_dead_latents_are_labelled(built):
    freqs = np.array([r.frequency for r in built.records])
    assert ((freqs >= 0) & (freqs <= 1)).all()
    for r in built.records:
        if r.frequency == 0:
            assert r.dead and "dead" in r.label


def test_save_load_round_trip_and_datasets(built, tmp_path):
    built.save(tmp_path / "idx")
    again = FeatureIndex.load(tmp_path / "idx")
    assert [r.label for r in again.records] == [r.label for r in built.records]
    assert np.allclose(again.embeddings, built.embeddings, atol=2e-3)
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(tmp_path / "idx" / "features.jsonl"), split="train")
    assert len(ds) == len(built) and set(ds.column_names) >= {"index", "label", "contexts", "frequency"}


def test_offline_label_uses_firing_tokens_and_distinctive_words():
    ctx = [f"my {MARK_L} dog{MARK_R} loves bones", f"the {MARK_L} dog{MARK_R} chased a ball and bones", f"a {MARK_L} puppy{MARK_R} with bones"]
    df = document_frequencies(ctx + ["the cat sat", "the end"] * 10)
    label = offline_label(ctx, ["bark", "the", "tail", "##"], df, 23)
    assert "dog" in label and "bones" in label and "bark" in label
    assert "the" not in label.split()

