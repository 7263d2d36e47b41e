"""The feature index: per-latent evidence, labels and label embeddings; semantic search over it.
(Building one is `labels.py`.)

On disk (a folder `datasets` can load): `features.jsonl` (one latent a line: index, label,
source, max_activation, frequency, contexts, promoted, suppressed), `embeddings.npy` (float16,
one unit-norm row per latent, all-MiniLM-L6-v2) and `meta.json`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..runtime.embeddings import embed
from ..runtime.models import ModelPreset, index_dir

MARK_L, MARK_R = "\u00ab", "\u00bb"  # «firing token»


@dataclass
class FeatureRecord:
    index: int
    label: str
    source: str  # "offline" | "llm" | "neuronpedia"
    max_activation: float = 0.0
    frequency: float = 0.0  # fraction of tokens on which it is active
    contexts: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)

    @property
    def dead(self) -> bool:
        return self.frequency == 0.0 and self.source != "neuronpedia"


@dataclass(frozen=True)
class FeatureHit:
    index: int
    label: str
    score: float
    mentions: tuple[str, ...] = ()  # the query's words found in the label ("dogs" in "fires on dog, dogs")


# Similarity alone does not say whether anything matched: unrelated queries score 0.2-0.45
# ("medieval tax law" 0.45 -> "fires on enough"), good matches 0.36-0.58 ("happy" 0.36 ->
# "fires on happy, happiness"). A query word in the label does.
_STOP = frozenset("a an and are as at be behave by for from in into is it its like of on or that the this to with "
                  "about talk talks act acts way ways things thing explain".split())
_TEMPLATE = frozenset({"fires", "text", "about"})  # the offline labels' own words: "fires on ...; in text about ...; promotes ..."


def mentioned(query: str, label: str) -> tuple[str, ...]:
    """The query's content words that a word of `label` matches, reading only what the label says
    a latent fires on or is about (not the token fragments it "promotes", nor the template's own
    words): the same word or its plural ("dog" / "dogs"), one a prefix of the other when both have
    4+ letters ("fire" / "fireworks"), or the same first 4 letters when both have 5+ ("happy" /
    "happiness")."""
    words = {w for w in re.findall(r"[a-z]+", query.lower()) if len(w) >= 3 and w not in _STOP}
    said = " ".join(part for part in label.lower().split(";") if not part.strip().startswith("promotes"))
    label_words = {w for w in re.findall(r"[a-z]+", said) if len(w) >= 3 and w not in _TEMPLATE}

    def same(a: str, b: str) -> bool:
        if a.rstrip("s") == b.rstrip("s"):
            return True
        short = min(len(a), len(b))
        return (short >= 4 and (a.startswith(b) or b.startswith(a))) or (short >= 5 and a[:4] == b[:4])

    return tuple(sorted(w for w in words if any(same(w, lw) for lw in label_words)))


# ---------------------------------------------------------------- the index


class FeatureIndex:
    """Records plus label embeddings for one SAE; `search` ranks latents by cosine similarity."""

    def __init__(self, records: list[FeatureRecord], embeddings: np.ndarray, meta: dict):
        if len(records) != embeddings.shape[0]:
            raise ValueError(f"{len(records)} records but {embeddings.shape[0]} embeddings")
        self.records = records
        self.embeddings = embeddings.astype(np.float32)
        self.meta = meta
        self._by_index = {r.index: i for i, r in enumerate(records)}

    def __len__(self) -> int:
        return len(self.records)

    def get(self, index: int) -> FeatureRecord:
        try:
            return self.records[self._by_index[index]]
        except KeyError:
            raise KeyError(f"latent {index} is not in this index (0..{self.meta.get('d_sae', len(self)) - 1})") from None

    def label(self, index: int) -> str:
        return self.get(index).label if index in self._by_index else ""

    def search(self, query: str, k: int = 10, include_dead: bool = False) -> list[FeatureHit]:
        query = query.strip()
        if not query:
            raise ValueError("empty search query")
        q = embed([query])[0]
        return self.search_vector(q, k, include_dead)

    def search_vector(self, q: np.ndarray, k: int = 10, include_dead: bool = False) -> list[FeatureHit]:
        scores = self.embeddings @ q
        hidden = [not r.label or (r.dead and not include_dead) for r in self.records]
        scores = np.where(hidden, -np.inf, scores)
        top = np.argsort(-scores)[:k]
        return [FeatureHit(self.records[i].index, self.records[i].label, float(scores[i])) for i in top if np.isfinite(scores[i])]

    def search_words(self, query: str, k: int = 10) -> list[FeatureHit]:
        """`search`, each hit with the query's words its label mentions (see `mentioned`)."""
        return [dataclasses.replace(h, mentions=mentioned(query, h.label)) for h in self.search(query, k)]

    # ------------------------------------------------------------ persistence

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "features.jsonl").open("w", encoding="utf-8") as fh:
            for r in self.records:
                fh.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
        np.save(folder / "embeddings.npy", self.embeddings.astype(np.float16))
        (folder / "meta.json").write_text(json.dumps(self.meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> FeatureIndex:
        folder = Path(folder)
        if not (folder / "features.jsonl").is_file():
            raise FileNotFoundError(f"no feature index at {folder}; build it with: python -m steering build-index")
        records = [FeatureRecord(**json.loads(line)) for line in (folder / "features.jsonl").open(encoding="utf-8") if line.strip()]
        emb = np.load(folder / "embeddings.npy")
        meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else {}
        return cls(records, emb, meta)

    def as_dataset(self):
        """The records as a `datasets.Dataset` (the same data `load_dataset('json', ...)` reads)."""
        from datasets import Dataset  # local: importing datasets takes ~1 s

        return Dataset.from_list([asdict(r) for r in self.records])


def load_index(preset: ModelPreset) -> FeatureIndex | None:
    """The preset's feature index, or None where none was built (retrieval and search then do without)."""
    try:
        return FeatureIndex.load(index_dir(preset))
    except FileNotFoundError:
        return None


def import_neuronpedia(path: str | Path, d_sae: int, meta: dict | None = None) -> FeatureIndex:
    """Build an index from a Neuronpedia explanations export (JSON list or JSONL).

    Each item needs `index` and `description` (Neuronpedia's export fields); other latents get
    an empty label and are left out of search.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    labels: dict[int, str] = {}
    for item in items:
        try:
            idx = int(item["index"])
            desc = str(item.get("description") or item.get("explanation") or "").strip()
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: each item needs an integer 'index' and a 'description' ({exc})") from exc
        if not 0 <= idx < d_sae:
            raise ValueError(f"{path}: index {idx} out of range for an SAE of {d_sae} latents")
        if desc:
            labels.setdefault(idx, desc)
    records = [FeatureRecord(i, labels.get(i, ""), "neuronpedia") for i in range(d_sae)]
    emb = np.zeros((d_sae, 384), dtype=np.float32)
    known = sorted(labels)
    if known:
        emb[known] = embed([labels[i] for i in known])
    return FeatureIndex(records, emb, {**(meta or {}), "d_sae": d_sae, "source": f"neuronpedia:{path.name}"})
