import json

import numpy as np
import pytest

from steering.runtime.embeddings import embed
from steering.sae.index import MARK_L, MARK_R, FeatureIndex, FeatureRecord, import_neuronpedia
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


def test_load_missing_index_says_how_to_build():
    with pytest.raises(FileNotFoundError, match="build-index"):
        FeatureIndex.load("/nonexistent/index")


def _hand_index() -> FeatureIndex:
    labels = ["dogs, puppies and barking", "cooking food in the kitchen", "the ocean, waves and sea water", "tax law and accounting", ""]
    recs = [FeatureRecord(i, lab, "offline", 1.0, 0.01 if i != 3 else 0.0) for i, lab in enumerate(labels)]
    emb = np.zeros((5, 384), dtype=np.float32)
    emb[:4] = embed(labels[:4])
    return FeatureIndex(recs, emb, {"d_sae": 5})


@pytest.mark.parametrize("query, best", [("puppy dog", 0), ("recipes and meals", 1), ("the sea", 2)])
def test_search_ranks_the_matching_label_first(query, best):
    hits = _hand_index().search(query, k=3)
    assert hits[0].index == best
    assert hits[0].score > hits[1].score


def test_search_hides_dead_and_unlabelled_latents():
    idx = _hand_index()
    assert 3 not in [h.index for h in idx.search("taxes and accounting law", k=5)]
    assert 3 in [h.index for h in idx.search("taxes and accounting law", k=5, include_dead=True)]
    assert 4 not in [h.index for h in idx.search("anything", k=5, include_dead=True)]
    with pytest.raises(ValueError):
        idx.search("   ")


def test_offline_label_uses_firing_tokens_and_distinctive_words():
    ctx = [f"my {MARK_L} dog{MARK_R} loves bones", f"the {MARK_L} dog{MARK_R} chased a ball and bones", f"a {MARK_L} puppy{MARK_R} with bones"]
    df = document_frequencies(ctx + ["the cat sat", "the end"] * 10)
    label = offline_label(ctx, ["bark", "the", "tail", "##"], df, 23)
    assert "dog" in label and "bones" in label and "bark" in label
    assert "the" not in label.split()


def test_neuronpedia_import_json_and_jsonl(tmp_path):
    items = [
        {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": "7", "description": "references to dogs and puppies"},
        {"modelId": "gemma-2-2b", "layer": "12-gemmascope-res-16k", "index": 3, "description": "cooking recipes"},
    ]
    (tmp_path / "np.json").write_text(json.dumps(items))
    (tmp_path / "np.jsonl").write_text("\n".join(json.dumps(i) for i in items))
    for name in ("np.json", "np.jsonl"):
        idx = import_neuronpedia(tmp_path / name, d_sae=10)
        assert len(idx) == 10 and idx.get(7).label == "references to dogs and puppies"
        assert idx.search("a puppy", k=5)[0].index == 7
        assert len(idx.search("a puppy", k=5)) == 2  # unlabelled latents are not returned


def test_neuronpedia_import_rejects_bad_items(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps([{"index": 99, "description": "x"}]))
    with pytest.raises(ValueError, match="out of range"):
        import_neuronpedia(tmp_path / "bad.json", d_sae=10)
    (tmp_path / "bad2.json").write_text(json.dumps([{"description": "x"}]))
    with pytest.raises(ValueError, match="integer 'index'"):
        import_neuronpedia(tmp_path / "bad2.json", d_sae=10)
