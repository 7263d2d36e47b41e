"""What steering learns from: answers written with the behaviour (targets) and without (plain).

The gradient optimiser distils the targets, and the attribution and contrastive retrieval sources
read both; they are written once per run. Per question the judge picks the best-judged of a few
ways of asking for the behaviour (`distill_answers`), and `heads_up` warns the user when even the
best of them barely shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..runtime.engine import GenerationConfig
from .judges import JudgeContext, JudgeError


@dataclass
class DistillAnswers:
    """Answers to the same prompts written with the behaviour as a system prompt (targets) and
    without (plain): the contrastive source, the attribution source and the gradient optimiser
    all read them, so they are generated once per run. `phrasing` says how the targets were asked
    for, `note` why; `score` and `plain_score` are the judge's mean for the chosen targets and for
    the plain answers (None without a judge)."""

    prompts: list[str]
    targets: list[list[int]]
    plains: list[list[int]]
    phrasing: str = "system prompt"
    note: str = ""
    score: float | None = None
    plain_score: float | None = None


# Per question, the judge picks the target among the greedy answer written with the behaviour as a
# system prompt, the greedy one with the behaviour also repeated after the question, and
# TARGET_SAMPLES sampled ones (alternating the two phrasings, the system prompt alone first).
# SmolLM2-135M shows a behaviour in some samples and not in others ("Mmm, ... some classic dog
# treats" among plain answers about pizza): the best of them are what steering can learn that
# prompting alone does not do every time. With 2 samples on 6 behaviours x 11 questions, the judge
# chose the system-prompt sample for 21 targets and the reminded sample for 4: one sample keeps
# most of the gain for half the extra judging (the run's whole cost is ~20 s more before epoch 1).
TARGET_SAMPLES = 1
TARGET_TEMPERATURE = 0.8


def option_name(o: int) -> str:
    """What target option `o` is (see distill_answers)."""
    return ("greedy", "greedy + reminder")[o] if o < 2 else f"sample {o - 1}"


def remind(prompt: str, behavior: str) -> str:
    """The question with the behaviour repeated after it, as the user's reminder."""
    b = behavior.strip()
    return f"{prompt}\n\n({b if b.endswith(('.', '!', '?')) else b + '.'})"


def distill_answers(engine, behavior: str, prompts: Sequence[str], max_new_tokens: int = 48, cancel=None,
                    judge=None, samples: int = TARGET_SAMPLES, seed: int = 0) -> DistillAnswers:
    """One batched greedy generate (every prompt with the behaviour as a system prompt, with it as
    a system prompt AND a reminder after the question, and plain), then, when a `judge` is given,
    one sampled generate of `samples` more answers per prompt with the behaviour, and the judge
    picks each prompt's best-judged answer as its target (`choose_targets`).

    A small model follows the phrasings unevenly: with the reminder, SmolLM2-135M writes "Stay
    healthy, you're the first to walk the plank" for a pirate, but its dog answers get worse; and
    one sample in several shows a behaviour the greedy answer does not. Without a judge (or when it
    fails) the targets are the greedy system-prompt answers. The answers are always read, and
    fitted, after the plain question."""
    n = len(prompts)
    asks = list(prompts) + [remind(p, behavior) for p in prompts] + list(prompts)
    gens = engine.generate(asks, system=[behavior] * (2 * n) + [None] * n,
                           config=GenerationConfig(max_new_tokens=max_new_tokens), cancel=cancel)
    told, reminded, plains = gens[:n], gens[n : 2 * n], gens[2 * n :]
    answers = DistillAnswers(list(prompts), [g.token_ids for g in told], [g.token_ids for g in plains])
    if judge is None or not n or (cancel is not None and cancel.is_set()):
        return answers
    sampled = []
    if samples > 0:
        sampled = engine.generate([p if s % 2 == 0 else remind(p, behavior) for s in range(samples) for p in prompts],
                                  system=behavior, cancel=cancel,
                                  config=GenerationConfig(max_new_tokens=max_new_tokens, temperature=TARGET_TEMPERATURE, seed=seed))
    options = [told, reminded] + [sampled[s * n : (s + 1) * n] for s in range(samples)]
    choose_targets(answers, judge, behavior, options, [g.text for g in plains])
    return answers


def choose_targets(answers: DistillAnswers, judge, behavior: str, options: list, plains: list[str]) -> None:
    """Each prompt's target: the best-judged of its options (one list of generations per option,
    one generation per prompt), judged against the plain answers in ONE judge call. A judge that
    scores only whole candidates (no per-prompt scores) picks one option for every prompt; on a
    tie the first option (the greedy system-prompt answer) stays."""
    n = len(answers.prompts)
    try:  # the plain answers are judged too (last, never picked): what the targets gain over them
        js = judge.judge_many(JudgeContext(behavior, list(answers.prompts), plains), [[g.text for g in opt] for opt in options] + [plains])
        if len(js) != len(options) + 1:
            raise JudgeError(f"{len(js)} verdicts for {len(options) + 1} candidates")
    except JudgeError as exc:
        answers.note = f"targets: the behaviour as a system prompt (the judge could not compare answers: {exc})"
        return
    *js, plain = js
    per = [j.per_prompt if len(j.per_prompt) == n else [j.score] * n for j in js]
    picks = [max(range(len(options)), key=lambda o: (per[o][i], -o)) for i in range(n)]
    answers.targets = [options[o][i].token_ids for i, o in enumerate(picks)]
    counts = {option_name(o): picks.count(o) for o in sorted(set(picks))}
    answers.phrasing = "best of " + ", ".join(option_name(o) for o in range(len(options)))
    chosen = answers.score = sum(per[o][i] for i, o in enumerate(picks)) / n
    answers.plain_score = plain.score
    answers.note = (f"targets: per question, the best-judged of {len(options)} answers written with the behaviour "
                    f"({', '.join(f'{k}: {v}' for k, v in counts.items())}); judged {chosen:.2f} on average, "
                    f"against {js[0].score:.2f} for the greedy system-prompt answers")


# The chosen targets' mean must beat the plain answers' by this much (0-10) for steering to have
# something to learn. Session 13's benchmark (metric judge, plain = 1.00): kids 4.97, grumpy 3.73,
# pirate 2.95, ocean 2.83, where a reader found steering ahead of prompting (by 0.4 to 3.6 on
# 0-10), and polite 1.96, food 1.90, dog 1.85, coach 1.79, where every condition read 0-2 ("no
# answer of any condition acts like a dog"). Chosen with the metric judge, which scores the plain
# answers 1.00 by construction; an LLM judge scores them on its own absolute scale, where the same
# margin is a guess. Session 19: 1.5 warned "Talk like a pirate" on the app's default prompts
# (targets 2.27) and on a one-prompt CLI run (2.40), where the benchmark's pirate is the clearest win
# after kids; 1.1 sits between the highest score of the four behaviours nobody could read
# (polite, 0.96 above plain) and those two pirate runs (1.27, 1.40). Session 20, with the judge
# reading the behaviour against a neutral system prompt (plain = 1.00): kids 4.61, grumpy 3.90,
# pirate 3.09 clear it; ocean 1.57, polite 1.31, food 1.10, coach 1.08 and dog 0.99 are warned.
WEAK_MARGIN = 1.1


def heads_up(answers: DistillAnswers | None) -> str:
    """A warning for the user when the model shows little of the behaviour even when told it
    directly (so steering has little to learn); "" otherwise or when the targets were not judged."""
    if answers is None or answers.score is None or answers.plain_score is None:
        return ""
    if answers.score - answers.plain_score >= WEAK_MARGIN:
        return ""
    return (f"the model shows little of this behaviour even when told it directly: its best answers written with the "
            f"behaviour as a system prompt score {answers.score:.2f}, its plain answers {answers.plain_score:.2f}. "
            f"Steering learns from those answers, so expect a weak effect; a larger model may follow it better")
