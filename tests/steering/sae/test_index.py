"""The feature index: loading, search, Neuronpedia import."""

import json

import numpy as np
import pytest

from steering.runtime.embeddings import embed
from steering.sae.index import (
    FeatureIndex,
    FeatureRecord,
    import_neuronpedia,
)


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


def test_hits_say_which_query_words_their_label_mentions():
    from steering.sae.index import mentioned

    assert mentioned("Happy dogs", "fires on dog, happiness") == ("dogs", "happy")
    assert mentioned("cooking for kids", "in text about cook, cookies") == ("cooking",)
    assert mentioned("talk like a pirate", "fires on talk, like, a") == ()  # only function words in common
    assert mentioned("music", "fires on museum") == ()
    # the template's own words and the promoted token fragments are not what a latent is about
    assert mentioned("fireworks and textbooks", "fires on rain; in text about weather; promotes fireworks") == ()
    assert mentioned("medieval tax law", "fires on taxpay, lawn") == ()  # 3-letter words match whole words only
    assert mentioned("cat", "fires on cats") == ("cat",)
    hits = _hand_index().search_words("puppy dog tricks", k=2)
    assert hits[0].index == 0 and hits[0].mentions == ("dog", "puppy") and hits[1].mentions == ()


def test_search_hides_dead_and_unlabelled_latents():
    idx = _hand_index()
    assert 3 not in [h.index for h in idx.search("taxes and accounting law", k=5)]
    assert 3 in [h.index for h in idx.search("taxes and accounting law", k=5, include_dead=True)]
    assert 4 not in [h.index for h in idx.search("anything", k=5, include_dead=True)]
    with pytest.raises(ValueError):
        idx.search("   ")


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

