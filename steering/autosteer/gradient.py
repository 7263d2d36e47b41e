"""Gradient steering's optimiser: bounded Adam on the kept features' weights (and an optional free
direction) against the distillation objective of `objective.py`, a few steps per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .objective import FREE_L2, Objective, build_objective, chunked_loss, free_share, split, steering_vector
from .optimisers import Optimiser, WeightVector


@dataclass
class FitResult:
    weights: list[float]
    free: torch.Tensor | None  # (d_model,) the learned non-SAE vector, or None
    losses: list[float] = field(default_factory=list)
    parts: dict[str, float] = field(default_factory=dict)

    def free_share(self, engine, indices: Sequence[int]) -> float:
        return free_share(engine, indices, self.weights, self.free)


def fit(engine, obj: Objective, indices: Sequence[int], start: Sequence[float], steps: int = 10, lr: float = 0.05,
        bound: float = 1.0, free: torch.Tensor | None = None, learn_free: bool = False) -> FitResult:
    """Adam on the kept features' weights (projected onto [-bound, bound] after every step), and
    optionally on a free vector, a few steps from `start`. Each step's forward/backward passes
    run on the compute worker chunk by chunk (`objective.chunked_loss`); the step itself here."""
    w = torch.tensor([float(x) for x in start], requires_grad=True)
    params = [w]
    u = None
    if learn_free:
        d_model = engine.basis.directions.shape[1]
        u = (free.clone() if free is not None else torch.zeros(d_model)).requires_grad_(True)
        params.append(u)
    opt = torch.optim.Adam([{"params": [w], "lr": lr}] + ([{"params": [u], "lr": lr * engine.basis.scale / math.sqrt(u.numel())}] if u is not None else []))
    chunks = split(obj)
    losses: list[float] = []
    best, best_loss = FitResult([float(x) for x in start], free), math.inf
    for _ in range(steps + 1):  # the last pass only measures the last step's result
        last = len(losses) == steps
        total, parts, grads = chunked_loss(engine, chunks, lambda: steering_vector(engine, indices, w, u if u is not None else free),
                                           [] if last else params)
        if u is not None:
            with torch.enable_grad():
                penalty = FREE_L2 * (u.norm() / engine.basis.scale) ** 2
                if not last:
                    grads[1] = grads[1] + torch.autograd.grad(penalty, u)[0]
            total += penalty.item()
        losses.append(total)
        if total < best_loss:  # keep the best iterate: a step can overshoot
            best_loss = total
            best = FitResult([round(float(x), 4) for x in w.detach()], u.detach().clone() if u is not None else free, parts=parts)
        if last:
            break
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        with torch.no_grad():
            w.clamp_(-bound, bound)
    best.losses = losses
    return best


class GradientOptimiser(Optimiser):
    """Adam on the kept features' weights against the distillation objective, a few steps per
    epoch; the judge picks among the fitted vector at two strengths, with and without the free
    direction, and the best-judged proposal is where the next epoch's steps start. Best-judged
    answers join the objective's targets."""

    name = "gradient"
    batched = True
    STRENGTHS = (1.0, 1.6)  # the objective cannot see garbling: the judge chooses how hard to push

    def __init__(self, engine, prompts: Sequence[str], targets: Sequence[Sequence[int]], plains: Sequence[Sequence[int]],
                 indices: Sequence[int], initial: Sequence[float], steps: int = 3, lr: float = 0.03,
                 free: bool = True, bound: float = 1.0):
        self.engine = engine
        self.prompts, self.targets, self.plains = list(prompts), [list(t) for t in targets], [list(p) for p in plains]
        self.indices = list(indices)
        self.k = len(self.indices)
        self.steps, self.lr, self.learn_free, self.bound = steps, lr, free, bound
        self.obj = build_objective(engine, self.prompts, self.targets, self.plains)
        self.current = WeightVector(initial)
        self.best_score = -math.inf

    def ask(self, n: int) -> list[WeightVector]:
        start_free = self.current.free * self.engine.basis.scale if self.current.free is not None else None
        res = fit(self.engine, self.obj, self.indices, list(self.current), steps=self.steps, lr=self.lr, bound=self.bound,
                  free=start_free, learn_free=self.learn_free)
        free = res.free / self.engine.basis.scale if res.free is not None else None
        out: list[WeightVector] = []
        for m in self.STRENGTHS:
            w = [max(-self.bound, min(self.bound, m * x)) for x in res.weights]
            out.append(WeightVector(w))
            if free is not None:
                out.append(WeightVector(w, m * free))
        return out[: max(n, 1)]

    def tell(self, trials) -> None:
        best = max(trials, key=lambda t: t.score)
        self.current = WeightVector(best.weights, WeightVector.of(best.weights).free)
        if best.score > self.best_score and best.outputs:
            self.best_score = best.score
            # The best-judged answers become extra targets (same prompts, no system prompt).
            tok = self.engine.tokenizer
            extra = [tok(o, add_special_tokens=False)["input_ids"] for o in best.outputs[: len(self.prompts)]]
            prompts = self.prompts + self.prompts[: len(extra)]
            self.obj = build_objective(self.engine, prompts, self.targets + extra, self.plains + self.plains[: len(extra)])

    def observe(self, trials) -> None:
        """Screening results: start from the best single feature if it beats the initial guess."""
        if trials:
            best = max(trials, key=lambda t: t.score)
            if best.score > 0 and not any(self.current):
                self.current = WeightVector(best.weights)
