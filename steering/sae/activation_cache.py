"""The SAE's training data: documents packed into token rows, and the residual stream for every
row as a sae-lens activation cache (sharded, resumable; attention sinks marked as BOS)."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .activations import layer_output


def token_dataset(tokenizer, texts: list[str], context_size: int):
    """Pack documents into rows of `context_size` tokens, each row starting with BOS."""
    from datasets import Dataset  # local: importing datasets takes ~1 s

    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    stream: list[int] = []
    for enc in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream.extend(enc + [eos])
    body = context_size - 1
    rows = [[bos] + stream[i : i + body] for i in range(0, len(stream) - body + 1, body)]
    return Dataset.from_dict({"input_ids": rows})


SINK_NORM_RATIO = 4.0


def mark_sinks(acts: torch.Tensor, token_ids: torch.Tensor, bos_id: int, ratio: float = SINK_NORM_RATIO) -> torch.Tensor:
    """`token_ids` with attention-sink positions replaced by BOS, so training skips them like BOS.

    The token right after BOS often carries a "massive activation" (norm 14,000-25,000 against a
    median of ~170 in SmolLM2's layer 15): ~0.1% of positions holding ~88% of the variance, which
    would dominate the SAE's squared-error loss. A position counts as a sink when its norm is over
    `ratio` times the median norm of the (non-BOS) positions in the same block.
    """
    norms = acts.float().norm(dim=-1)
    median = norms[token_ids != bos_id].median()
    return torch.where(norms > ratio * median, torch.full_like(token_ids, bos_id), token_ids)


def cache_activations(
    model, dataset, layer: int, hook_name: str, out: Path, bos_id: int, rows_per_shard: int = 512, batch_rows: int = 16,
    progress: bool = True,
) -> Path:
    """The residual stream after `layer` for every row of `dataset`, as a sae-lens activation cache.

    Written in shards of `rows_per_shard` rows (an interrupted run resumes at the next missing
    shard), then consolidated into one `datasets` folder with columns `hook_name`
    (context x d_model, float16) and `token_ids` - the layout `use_cached_activations` reads.
    `token_ids` is only used to filter what training sees: sink positions are written as BOS
    (see `mark_sinks`).
    """
    # local: importing datasets takes ~1 s, sae-lens ~6 s
    from datasets import Array2D, Dataset, Features, Sequence, Value
    from sae_lens.cache_activations_runner import CacheActivationsRunner

    final = out / "dataset"
    if (final / "state.json").is_file():
        return final
    shards = out / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    n_rows, ctx = len(dataset), len(dataset[0]["input_ids"])
    features = Features(
        {
            hook_name: Array2D(shape=(ctx, model.config.hidden_size), dtype="float16"),
            "token_ids": Sequence(Value("int32"), length=ctx),
        }
    )
    n_shards = math.ceil(n_rows / rows_per_shard)
    with tqdm(total=n_rows * ctx, unit="tok", unit_scale=True, desc="activations", disable=not progress) as bar:
        for i in range(n_shards):
            lo, hi = i * rows_per_shard, min(n_rows, (i + 1) * rows_per_shard)
            shard = shards / f"shard_{i:05d}"
            if (shard / "state.json").is_file():
                bar.update((hi - lo) * ctx)
                continue
            ids = torch.tensor(dataset[lo:hi]["input_ids"], dtype=torch.long, device=model.device)
            acts = _residuals(model, layer, ids, batch_rows, bar.update)
            token_ids = mark_sinks(torch.from_numpy(acts), ids.cpu(), bos_id)
            tmp = shards / f"tmp_{i:05d}"
            shutil.rmtree(tmp, ignore_errors=True)
            Dataset.from_dict({hook_name: acts, "token_ids": token_ids.int().numpy()}, features=features).save_to_disk(str(tmp))
            tmp.rename(shard)
    final.mkdir(parents=True, exist_ok=True)
    CacheActivationsRunner._consolidate_shards(shards, final, copy_files=False)
    return final


def _residuals(model, layer: int, ids: torch.Tensor, batch_rows: int, progress) -> np.ndarray:
    """(rows, context, d_model) float16 residuals after `layer`, `batch_rows` rows per forward."""
    acts = np.empty((ids.shape[0], ids.shape[1], model.config.hidden_size), dtype=np.float16)
    for b in range(0, ids.shape[0], batch_rows):
        x = ids[b : b + batch_rows]
        h = layer_output(model, layer, x, torch.ones_like(x)).float()
        acts[b : b + len(x)] = h.clamp(-65000, 65000).to(torch.float16).cpu().numpy()
        progress(x.numel())
    return acts


def cache_key(cfg, n_rows: int) -> str:
    keys = (cfg.preset, cfg.layer, cfg.context_size, cfg.seed, cfg.self_answers, cfg.chat_fraction, cfg.wordnet_docs, cfg.cache_dtype, n_rows)
    return hashlib.sha1(repr(keys).encode()).hexdigest()[:10]


