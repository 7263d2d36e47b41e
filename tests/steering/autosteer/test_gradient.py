"""Gradient attribution and the bounded Adam fit, on the tiny random model."""

from __future__ import annotations

import torch

from steering.autosteer import gradient, objective
from steering.autosteer.config import AutoSteerConfig
from steering.autosteer.factory import NamedOptimiserFactory
from steering.autosteer.judges import Judge, Judgement
from steering.autosteer.loop import AutoSteer
from steering.autosteer.results import EpochResult, FinalResult
from steering.autosteer.retrieve import FeatureCandidate
from steering.runtime.engine import GenerationConfig

PROMPTS = ["Why is the sky blue?", "Dogs like bones and walks.", "Plants need water.", "Tell me about space."]


def _planted(engine, latent: int, weight: float = 1.0):
    """Targets: answers generated with one latent steered on; plain: unsteered answers."""
    cfg = GenerationConfig(max_new_tokens=12, repetition_penalty=1.0)
    steered = engine.generate(PROMPTS, [{latent: weight}] * len(PROMPTS), config=cfg)
    plain = engine.generate(PROMPTS, None, config=cfg)
    return objective.build_objective(engine, PROMPTS, [g.token_ids for g in steered], [g.token_ids for g in plain], plain_texts=["The quick brown fox."])


def test_upper_layers_reproduce_the_full_forward(tiny_engine):
    obj = _planted(tiny_engine, 5)
    v = torch.randn(tiny_engine.basis.directions.shape[1])
    fast = objective._upper_logits(tiny_engine, obj, v)
    tiny_engine._upper_model = False  # force the whole-model path with a hook
    slow = objective._upper_logits(tiny_engine, obj, v)
    assert torch.allclose(fast, slow, atol=1e-4)


def test_attribution_ranks_a_planted_direction_first(tiny_engine):
    hits = []
    for latent in (3, 17, 40):
        obj = _planted(tiny_engine, latent)
        attr = objective.attribution(tiny_engine, obj)
        assert attr.shape == (tiny_engine.basis.d_sae,)
        top = int((-attr).argmax())  # most negative: adding it lowers the loss the most
        hits.append(top == latent)
    assert sum(hits) >= 2, hits


def test_fit_lowers_the_loss_and_respects_bounds(tiny_engine):
    obj = _planted(tiny_engine, 17)
    attr = objective.attribution(tiny_engine, obj)
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


def test_the_loop_runs_the_gradient_optimiser_end_to_end(tiny_runtime):
    """Distillation answers for the training prompts, 2 strengths x (with, without) the free
    direction per epoch in one batch, and a profile that records the free direction's share."""

    class PreferFree(Judge):
        name = "prefers-free"

        def judge_many(self, ctx, candidates):
            return [Judgement(float(i % 2) + 1.0, "ok") for i, _ in enumerate(candidates)]  # odd rows: with free direction

    feats = [FeatureCandidate(5, "five", "manual", 1.0, 1.0), FeatureCandidate(9, "nine", "manual", -1.0, 1.0)]
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi", "Tell me about bones."], max_new_tokens=6, epochs=2,
                          candidates=4, heldout=["Why?"], threshold=99)
    factory = NamedOptimiserFactory("gradient", cfg.behavior, engine=tiny_runtime.engine)
    events = [e for e in AutoSteer(tiny_runtime, cfg, PreferFree(), factory, features=feats).run()
              if isinstance(e, (EpochResult, FinalResult))]
    epochs, final = events[:-1], events[-1]
    assert [e.candidates for e in epochs] == [4, 4]
    assert all(0.0 < e.free_share <= 1.0 for e in epochs)  # the judge kept the free direction
    prof = final.profile
    assert prof.provenance["optimiser"] == "gradient"
    assert prof.free_direction is not None and len(prof.free_direction) == tiny_runtime.engine.basis.directions.shape[1]
    assert 0.0 < prof.free_share <= 1.0 and all(-1 <= f.weight <= 1 for f in prof.features)
    assert prof.mode in ("steered", "prompted_steered") and prof.system_prompt == cfg.behavior


def test_the_chunked_objective_is_the_whole_objective_in_several_worker_calls(tiny_engine, monkeypatch):
    """split + chunked_loss give L(v) and its gradient as one pass over every row does, in one
    compute-worker call per chunk (a child's question is served between two of them)."""
    obj = _planted(tiny_engine, 5)
    chunks = objective.split(obj, pairs=1)
    assert len(chunks) == len(PROMPTS) + 1 and abs(sum(w for _, w in chunks[:-1]) - 1) < 1e-9
    d = tiny_engine.basis.directions.shape[1]
    v = (0.1 * torch.randn(d)).requires_grad_(True)
    whole, parts = objective.loss(tiny_engine, obj, v)
    (g_whole,) = torch.autograd.grad(whole, v)
    calls = []
    monkeypatch.setattr(objective, "on_compute_thread", lambda fn, *a, **kw: calls.append(fn) or fn(*a, **kw))
    total, cparts, (g_chunks,) = objective.chunked_loss(tiny_engine, chunks, lambda: v, [v])
    assert len(calls) == len(chunks)
    assert abs(total - whole.item()) < 1e-4 * max(1.0, abs(whole.item()))
    assert all(abs(cparts[k] - parts[k]) < 1e-4 * max(1.0, abs(parts[k])) for k in ("nll", "pref", "kl"))
    assert torch.allclose(g_chunks, g_whole, rtol=1e-3, atol=1e-5)


def test_the_objective_is_built_a_few_rows_per_worker_call_with_the_whole_pass_values(tiny_engine, monkeypatch):
    """build_objective's residuals come RESID_ROWS rows per compute-worker call (a child's
    question waits for one short call), equal to one pass over every row."""
    monkeypatch.setattr(objective, "RESID_ROWS", 1000)
    whole = _planted(tiny_engine, 5)
    from steering.runtime import scheduler

    calls = []
    counted = lambda fn, *a, **kw: calls.append(fn) or fn(*a, **kw)  # noqa: E731
    monkeypatch.setattr(objective, "on_compute_thread", counted)  # the base log-probs
    monkeypatch.setattr(scheduler, "on_compute_thread", counted)  # the residuals' chunks
    monkeypatch.setattr(objective, "RESID_ROWS", 3)
    chunked = _planted(tiny_engine, 5)
    assert whole.rows == 2 * len(PROMPTS) + 1 and len(calls) == -(-whole.rows // 3) + 1  # the residuals' calls, then the base log-probs
    assert torch.allclose(chunked.resid, whole.resid, atol=1e-5)
    assert torch.allclose(chunked.base_logprobs, whole.base_logprobs, atol=1e-5)
