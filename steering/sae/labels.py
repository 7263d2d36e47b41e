"""Building the feature index: per-latent evidence (top-activating contexts, logit-lens tokens),
an offline label from that evidence (or an LLM's), and the label embeddings."""

from __future__ import annotations

import heapq
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..runtime.basis import sae_layer, unit_rows
from ..runtime.embeddings import embed
from ..runtime.loading import load_model, load_sae
from ..runtime.models import ModelPreset, index_dir
from .activations import residual_batches
from .corpus import index_texts
from .index import MARK_L, MARK_R, FeatureIndex, FeatureRecord

log = logging.getLogger(__name__)

CONTEXTS_PER_LATENT = 8
LEFT, RIGHT = 14, 4  # tokens of context around the firing token


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
    directions = unit_rows(sae.W_dec)
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




def build_preset_index(preset: ModelPreset, per_source: int = 1500, self_answers: str | Path = "runs/sae/self_answers.jsonl",
                       seed: int = 0, labeller: Callable[[FeatureRecord], str] | None = None,
                       progress: Callable[[int], Callable[[int], None]] | None = None) -> Path:
    """Build and save the preset's feature index from a balanced sample of the corpus (and the
    model's own answers, when the SAE build left them at `self_answers`); returns its folder.
    `progress(n_documents)` returns the callback told how many documents each batch read."""
    model, tok = load_model(preset)
    sae = load_sae(preset)
    answers_path = Path(self_answers)
    answers = [json.loads(line) for line in answers_path.open()] if answers_path.is_file() else []
    texts = index_texts(tok, seed, answers, per_source)
    index = build_index(
        model, tok, sae, sae_layer(sae), texts, labeller,
        meta={"preset": preset.id, "sae": preset.sae.ident, "seed": seed, "per_source": per_source},
        progress=progress(len(texts)) if progress else None,
    )
    return index.save(index_dir(preset))
