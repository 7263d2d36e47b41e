"""SAE training pipeline on a tiny random Llama: token packing, activation cache, sae-lens training."""

from __future__ import annotations

import datasets
import torch
from conftest import TEXT

from steering.sae.activation_cache import cache_activations, mark_sinks, token_dataset
from steering.sae.activations import layer_output
from steering.sae.train import SAEBuildConfig, train_from_cache


def _dataset(tokenizer, context: int = 16):
    texts = [f"{i} {TEXT[i % 50:]}" for i in range(60)]
    return token_dataset(tokenizer, texts, context)


def test_token_rows_start_with_bos_and_have_context_length(tiny_tokenizer):
    ds = _dataset(tiny_tokenizer)
    rows = ds["input_ids"]
    assert len(rows) > 10
    assert all(len(r) == 16 and r[0] == tiny_tokenizer.bos_token_id for r in rows)


def test_activation_cache_matches_the_layer_output_and_resumes(tiny_model, tiny_tokenizer, tmp_path):
    ds = _dataset(tiny_tokenizer)
    bos = tiny_tokenizer.bos_token_id
    out = cache_activations(tiny_model, ds, 2, "model.layers.2", tmp_path, bos, rows_per_shard=7, batch_rows=3, progress=False)
    cached = datasets.load_from_disk(str(out)).with_format("torch")
    assert len(cached) == len(ds)
    ids = torch.tensor(ds[:5]["input_ids"])
    expected = layer_output(tiny_model, 2, ids, torch.ones_like(ids))
    got = cached[:5]["model.layers.2"].float()
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-3)  # float16 storage
    assert torch.equal(cached[:5]["token_ids"].long(), mark_sinks(expected, ids, bos))
    # A second call finds the finished cache and does no work.
    mtime = (out / "state.json").stat().st_mtime_ns
    assert cache_activations(tiny_model, ds, 2, "model.layers.2", tmp_path, bos, progress=False) == out
    assert (out / "state.json").stat().st_mtime_ns == mtime


def test_sae_lens_trains_from_the_cache_and_reconstructs(tiny_model, tiny_tokenizer, tmp_path):
    ds = _dataset(tiny_tokenizer)
    cache = cache_activations(tiny_model, ds, 2, "model.layers.2", tmp_path / "acts", tiny_tokenizer.bos_token_id, progress=False)
    cfg = SAEBuildConfig(
        layer=2, d_sae=128, k=8, context_size=16, training_tokens=40_000, train_batch_size_tokens=256,
        lr=3e-3, dead_feature_window=20, work_dir=str(tmp_path / "work"),
    )
    sae = train_from_cache(cfg, tiny_model, tiny_tokenizer, ds, cache, "tiny", progress=False)
    ids = torch.tensor(ds[:8]["input_ids"])
    x = layer_output(tiny_model, 2, ids, torch.ones_like(ids))[:, 1:].reshape(-1, 64)  # BOS excluded
    with torch.no_grad():
        recon = sae.decode(sae.encode(x))
    fve = 1 - (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    assert sae.cfg.normalize_activations == "none"  # the training-time scaling was folded in
    assert fve > 0.5, float(fve)


def test_mark_sinks_hides_massive_activation_positions_from_training():
    acts = torch.ones(2, 6, 4)
    acts[0, 1] *= 100  # a sink right after BOS
    acts[1, 3] *= 3  # large but ordinary
    ids = torch.tensor([[1, 5, 6, 7, 8, 9], [1, 5, 6, 7, 8, 9]])
    marked = mark_sinks(acts, ids, bos_id=1)
    assert marked[0, 1] == 1 and marked[1, 3] == 7
    assert int((marked != ids).sum()) == 1
