"""Optimisers: propose feature weights in [-1, 1] from the history of (weights, score, critique).

`NumericOptimiser` (offline default) is Optuna ask/tell: K candidates per epoch, judged from one
batched generate. `LLMOptimiser` is the reference method's textual-gradient loop.
"""

from __future__ import annotations

import json
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
import torch

from ..llm import LLMError


class WeightVector(list):
    """A proposal: one weight per kept feature, plus an optional free vector that is not an SAE
    feature (units of the basis scale; None for every optimiser but the gradient one)."""

    def __init__(self, weights: Sequence[float] = (), free: torch.Tensor | None = None):
        super().__init__(float(x) for x in weights)
        self.free = free

    @classmethod
    def of(cls, weights: Sequence[float]) -> WeightVector:
        """`weights` as a WeightVector (itself when it already is one)."""
        return weights if isinstance(weights, WeightVector) else cls(weights)


@dataclass
class Trial:
    weights: WeightVector  # one per candidate feature, in [-1, 1]
    score: float
    critique: str = ""
    outputs: tuple[str, ...] = ()


class Optimiser(ABC):
    """Proposes weight vectors from the history of (weights, score, critique). The loop calls
    `ask`, `tell` and `observe`, and reads `name` and `batched`."""

    name: str = "optimiser"
    batched: bool = False  # proposes several candidates per epoch (generated in one batch)

    @abstractmethod
    def ask(self, n: int) -> list[Sequence[float]]:
        """n weight vectors to try next (lists, or WeightVectors with a free direction)."""

    @abstractmethod
    def tell(self, trials: Sequence[Trial]) -> None:
        """Scores for the vectors from the last `ask`."""

    def observe(self, trials: Sequence[Trial]) -> None:
        """Scores for vectors it did not propose (the screening of single features); by default
        they teach it nothing."""


class OptimiserFactory(ABC):
    """Makes the optimiser once the kept features are known (after screening)."""

    needs_answers: bool = False  # reads the distillation answers (retrieve.DistillAnswers)

    @abstractmethod
    def __call__(self, features: Sequence, answers=None) -> Optimiser:
        """The optimiser for `features` (retrieve.FeatureCandidate, best first)."""


def clamp(weights: Sequence[float], bound: float = 1.0) -> list[float]:
    return [max(-bound, min(bound, float(w))) for w in weights]


class NumericOptimiser(Optimiser):
    """Optuna TPE over k weights in [-bound, bound]. The first asks are the `initial` vectors.

    On the calibrated scale one feature at 0.3 already changes the text a lot and several at 0.6
    garble it, so `make_autosteer` searches [-0.5, 0.5]: random draws from [-1, 1]^k waste most
    epochs on gibberish.
    """

    name = "numeric"
    batched = True  # proposes several candidates per epoch

    def __init__(self, k: int, initial: Sequence[Sequence[float]] = (), seed: int = 0, bound: float = 1.0):
        if not 0 < bound <= 1:
            raise ValueError("bound must be in (0, 1]")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.k = k
        self.bound = bound
        self.study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=6, multivariate=True)
        )
        seen = set()
        for w in initial:
            w = clamp(w, bound)
            if tuple(w) not in seen:  # e.g. "top 2" and "top 3" are the same vector when k = 2
                seen.add(tuple(w))
                self.study.enqueue_trial({f"w{i}": v for i, v in enumerate(w)})
        self._pending: list = []

    def ask(self, n: int) -> list[list[float]]:
        self._pending = [self.study.ask() for _ in range(n)]
        return [[t.suggest_float(f"w{i}", -self.bound, self.bound) for i in range(self.k)] for t in self._pending]

    def tell(self, trials: Sequence[Trial]) -> None:
        if len(trials) != len(self._pending):
            raise ValueError(f"told {len(trials)} results for {len(self._pending)} asked")
        for t, trial in zip(self._pending, trials):
            self.study.tell(t, trial.score)
        self._pending = []

    def observe(self, trials: Sequence[Trial]) -> None:
        dist = optuna.distributions.FloatDistribution(-self.bound, self.bound)
        for trial in trials:
            w = clamp(trial.weights, self.bound)
            self.study.add_trial(optuna.trial.create_trial(
                params={f"w{i}": v for i, v in enumerate(w)}, distributions={f"w{i}": dist for i in range(self.k)}, value=trial.score))


OPTIMISER_PROMPT = """You tune a language model's behaviour by setting weights on its internal features.
Goal behaviour: "{behavior}".
Each weight is in [-1, 1]: positive adds the feature, negative suppresses it, 0 leaves it alone. Large
weights can make the text garbled.

Features:
{features}

History (most recent last), with the judge's score (0-10) and critique:
{history}

Reason briefly about what to change, then give the new weights as the last line, exactly in the form
Weights: [w1, w2, ...] with {k} numbers."""

_WEIGHTS = re.compile(r"weights\s*:\s*(\[[^\]]*\])", re.I)


def parse_weights(text: str, k: int) -> list[float] | None:
    found = _WEIGHTS.findall(text)
    candidates = found[::-1] or re.findall(r"\[[^\[\]]*\]", text)[::-1]
    for raw in candidates:
        try:
            values = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(values, list) and len(values) == k and all(isinstance(v, (int, float)) for v in values):
            return clamp(values)
    return None


class LLMOptimiser(Optimiser):
    """Textual gradients: the LLM reads features, history and critiques, then writes new weights.

    History shown to the LLM is bounded (`max_history` most recent plus the best so far); weights are
    clamped; a proposal that repeats an earlier one is nudged so every epoch tries something new.
    """

    name = "llm"
    batched = False

    def __init__(self, client, behavior: str, labels: Sequence[str], initial: Sequence[float] | None = None, max_history: int = 6, seed: int = 0):
        self.client = client
        self.behavior = behavior
        self.labels = list(labels)
        self.k = len(self.labels)
        self.max_history = max_history
        self.history: list[Trial] = []
        self._next_initial = clamp(initial) if initial is not None else None  # tried first, before asking the LLM
        self._rng = random.Random(seed)

    def _prompt(self) -> str:
        features = "\n".join(f"{i + 1}. {lab or '(no label)'}" for i, lab in enumerate(self.labels))
        shown = self.visible_history()
        history = "\n".join(
            f"- weights {[round(w, 2) for w in t.weights]}: score {t.score:.1f}; critique: {t.critique[:300]}; "
            f"first answer: {(t.outputs[0] if t.outputs else '')[:200]!r}"
            for t in shown
        ) or "(none yet)"
        return OPTIMISER_PROMPT.format(behavior=self.behavior, features=features, history=history, k=self.k)

    def visible_history(self) -> list[Trial]:
        recent = self.history[-self.max_history :]
        if self.history:
            best = max(self.history, key=lambda t: t.score)
            if best not in recent:
                recent = [best] + recent[1:]
        return recent

    def _novel(self, w: list[float]) -> list[float]:
        tried = {tuple(round(x, 2) for x in t.weights) for t in self.history}
        while tuple(round(x, 2) for x in w) in tried:
            w = clamp([x + self._rng.uniform(-0.15, 0.15) for x in w])
        return w

    def ask(self, n: int) -> list[list[float]]:
        out = []
        for _ in range(n):
            if self._next_initial is not None:
                out.append(self._novel(self._next_initial))
                self._next_initial = None
                continue
            text = self.client.chat([{"role": "user", "content": self._prompt()}], temperature=0.7, max_tokens=500)
            w = parse_weights(text, self.k)
            if w is None:
                text = self.client.chat(
                    [{"role": "user", "content": self._prompt()}, {"role": "assistant", "content": text},
                     {"role": "user", "content": f"Give only the last line: Weights: [ ... ] with {self.k} numbers."}],
                    max_tokens=100,
                )
                w = parse_weights(text, self.k)
            if w is None:
                raise LLMError(f"the LLM optimiser did not give {self.k} weights (answer: {text[:120]!r})")
            out.append(self._novel(w))
        return out

    def tell(self, trials: Sequence[Trial]) -> None:
        self.history.extend(trials)

    observe = tell
