"""Sentence embeddings: each distinct text is encoded once per call, small calls reuse recent texts,
and the cached vectors are the ones a fresh encode gives."""

import numpy as np

from steering.runtime import embeddings
from steering.runtime.embeddings import embed, embedder


def _spy(monkeypatch):
    model, seen = embedder(), []
    real = model.encode

    def encode(texts, **kw):
        seen.append(list(texts))
        return real(texts, **kw)

    monkeypatch.setattr(model, "encode", encode)
    monkeypatch.setattr(embeddings, "_cache", embeddings.OrderedDict())
    return seen


def test_repeated_texts_are_encoded_once_and_reused(monkeypatch):
    seen = _spy(monkeypatch)
    texts = ["Talk like a pirate.", "Why is the sky blue?", "Talk like a pirate.", "Talk like a pirate."]
    first = embed(texts)
    assert seen == [["Talk like a pirate.", "Why is the sky blue?"]]
    again = embed(["Why is the sky blue?", "How do bees make honey?"])
    assert seen[-1] == ["How do bees make honey?"]  # the sky was embedded already
    assert first.shape == (4, 384) and np.array_equal(first[0], first[2])
    fresh = embedder().encode(["Why is the sky blue?"], normalize_embeddings=True, convert_to_numpy=True)[0]
    assert np.allclose(again[0], fresh, atol=1e-5) and np.allclose(first[1], fresh, atol=1e-5)


def test_bulk_calls_bypass_the_cache_and_the_cache_stays_bounded(monkeypatch):
    seen = _spy(monkeypatch)
    monkeypatch.setattr(embeddings, "CACHE_CALL_MAX", 3)
    monkeypatch.setattr(embeddings, "CACHE_SIZE", 2)
    bulk = ["a", "b", "a", "c"]
    assert embed(bulk).shape == (4, 384) and seen == [bulk]  # as given, not deduplicated or cached
    assert len(embeddings._cache) == 0
    embed(["x", "y", "z"])
    assert list(embeddings._cache) == ["y", "z"]  # the oldest went
    assert embed([]).shape[0] == 0
    monkeypatch.setattr(embeddings, "WORKER_CALL", 3)
    seen.clear()
    chunked = embed(bulk)
    assert seen == [["a", "b", "a"], ["c"]]  # at most WORKER_CALL texts per compute-worker call
    assert np.allclose(chunked, embed(bulk), atol=1e-5) and np.allclose(chunked[0], chunked[2], atol=1e-6)
