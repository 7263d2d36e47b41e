"""Gradient attribution and the bounded Adam fit, on the tiny random model."""

from __future__ import annotations

import torch

from steering import gradient
from steering.engine import GenerationConfig

PROMPTS = ["Why is the sky blue?", "Dogs like bones and walks.", "Plants need water.", "Tell me about space."]


def _planted(engine, latent: int, weight: float = 1.0):
    """Targets: answers generated with one latent steered on; plain: unsteered answers."""
    cfg = GenerationConfig(max_new_tokens=12, repetition_penalty=1.0)
    steered = engine.generate(PROMPTS, [{latent: weight}] * len(PROMPTS), config=cfg)
    plain = engine.generate(PROMPTS, None, config=cfg)
    return gradient.build_objective(engine, PROMPTS, [g.token_ids for g in steered], [g.token_ids for g in plain], plain_texts=["The quick brown fox."])


def test_upper_layers_reproduce_the_full_forward(tiny_engine):
    obj = _planted(tiny_engine, 5)
    v = torch.randn(tiny_engine.basis.directions.shape[1])
    fast = gradient._upper_logits(tiny_engine, obj, v)
    tiny_engine._upper_model = False  # force the whole-model path with a hook
    slow = gradient._upper_logits(tiny_engine, obj, v)
    assert torch.allclose(fast, slow, atol=1e-4)


def test_attribution_ranks_a_planted_direction_first(tiny_engine):
    hits = []
    for latent in (3, 17, 40):
        obj = _planted(tiny_engine, latent)
        attr = gradient.attribution(tiny_engine, obj)
        assert attr.shape == (tiny_engine.basis.d_sae,)
        top = int((-attr).argmax())  # most negative: adding it lowers the loss the most
        hits.append(top == latent)
    assert sum(hits) >= 2, hits


def test_fit_lowers_the_loss_and_respects_bounds(tiny_engine):
    obj = _planted(tiny_engine, 17)
    attr = gradient.attribution(tiny_engine, obj)
    idx = [int(i) for i in (-attr).topk(3).indices]
    res = gradient.fit(tiny_engine, obj, idx, [0.0, 0.0, 0.0], steps=15, lr=0.01, bound=0.4)
    assert res.losses[-1] < res.losses[0]
    assert all(-0.4 <= w <= 0.4 for w in res.weights)
    assert res.free is None and res.free_share(tiny_engine, idx) == 0.0


def test_fit_with_a_free_direction_reports_its_share(tiny_engine):
    obj = _planted(tiny_engine, 17)
    res = gradient.fit(tiny_engine, obj, [1, 2], [0.0, 0.0], steps=8, lr=0.01, learn_free=True)
    assert res.free is not None and res.free.shape == (tiny_engine.basis.directions.shape[1],)
    assert res.free.norm() > 0
    assert 0.0 < res.free_share(tiny_engine, [1, 2]) <= 1.0
    assert res.losses[-1] < res.losses[0]


def test_fit_leaves_the_shared_model_untouched(tiny_engine):
    before = len(tiny_engine.model.model.layers)
    obj = _planted(tiny_engine, 3)
    gradient.fit(tiny_engine, obj, [3], [0.0], steps=2)
    assert len(tiny_engine.model.model.layers) == before
    assert not any(p.grad is not None for p in tiny_engine.model.parameters())
