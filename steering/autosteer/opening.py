"""An in-character opening: for a behaviour that names a character ("Behave like a dog", "Talk
like a pirate", "Act like a grumpy old man"), a learned direction that makes the answer start in
character, added only where the answer starts.

Why: a small model may not play a character it is told to play. Told "Behave like a dog" as a
system prompt, SmolLM2-135M never barks or says it is a dog (its "Woof" even gets less likely);
but continuing the plain text "<question>\\n\\nAnswer as a dog would, in character:\\n" it writes
"I'm a loyal dog. I love my people." So the model writes its own openings that way
(`write_openings`), a vector at the SAE layer is fitted to make them likely after the plain
question (`fit_opening`), and it is added at the prompt's last position and at the first
`opening_tokens` answer tokens (the positions that write the opening): the answer opens in character, then answers the
question ("I'm a loyal dog. The heart is a vital organ that pumps blood throughout the body").
Added at every position, the same kind of vector erases the question: "I'm a loyal dog who loves
to lounge in the shade" to every question (session 20, `docs/results.md`).

The direction is not an SAE feature: the profile, the app and the exports say so. The loop keeps
it only when the judge scores it (with or without the best weights) above the weights alone, on
the held-out prompts; the profile's best score is then the score of what it keeps (`rejudge`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from ..artefacts.profile import OPENING_MAX_NORM
from ..runtime.basis import Steer
from ..runtime.engine import GenerationConfig
from .judges import JudgeContext
from .objective import build_objective, chunked_loss, split
from .optimisers import WeightVector
from .results import Best, PhaseEvent

# "like a dog", "as a pirate", "be a teacher", "you are the captain": the character, up to a
# comma, a full stop or a clause ("who", "would").
ROLE = re.compile(r"\b(?:like|as|be|pretend to be|you are)\s+((?:an?|the)\s+[a-z][a-z' -]*)", re.I)
ROLE_END = re.compile(r"\s+(?:who|that|would|does|do|and|when|with|in|on|to|for)\b.*$", re.I)
FRAME = "{question}\n\nAnswer as {role} would, in character:\n"
OPENING_MAX_TOKENS = 12  # an opening is at most this many words, and is fitted on at most this many tokens
OPENING_STEPS = 30  # Adam steps of the fit
OPENING_LR = 0.05  # per step, in units of scale
OPENING_L2 = 0.01  # penalty on |u|^2 (u in units of scale): the fit lands at |u| ~ 4-5


@dataclass
class Opening:
    """A fitted opening: the direction (units of the basis scale), how many answer tokens it
    steers (0 until `try_opening` chooses), and the openings it was fitted to (shown to the user)."""

    direction: torch.Tensor
    tokens: int
    examples: list[str]


def role_of(behavior: str) -> str | None:
    """The character a behaviour names ("Behave like a dog" -> "a dog"), or None."""
    m = ROLE.search(behavior.strip())
    if not m:
        return None
    role = ROLE_END.sub("", m.group(1)).strip(" '-")
    words = role.split()
    return role if 2 <= len(words) <= 6 else None


def clean(text: str) -> str:
    """The first sentence of a plain-text continuation, without quotes, at most ~a dozen words."""
    text = text.strip().lstrip("\"“'").strip()
    text = re.split(r"[\"”\n]", text)[0].strip()
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    first = m.group(1) if m else text
    return " ".join(first.split()[:OPENING_MAX_TOKENS])


def write_openings(engine, role: str, prompts: Sequence[str], cancel=None) -> list[str]:
    """How the model starts each answer in character, continuing FRAME as plain text (greedy)."""
    gens = engine.generate([FRAME.format(question=p, role=role) for p in prompts], cancel=cancel,
                           config=GenerationConfig(max_new_tokens=2 * OPENING_MAX_TOKENS, chat=False))
    return [clean(g.text) for g in gens]


def fit_opening(engine, prompts: Sequence[str], openings: Sequence[str], steps: int = OPENING_STEPS, cancel=None) -> Opening | None:
    """A direction that raises each opening's likelihood after its plain question (no system
    prompt), added from the prompt's last position on (how many answer tokens it steers is chosen
    later, by `try_opening`: `tokens` is 0 here); None when no opening has 2+ tokens or when
    `cancel` (a threading.Event) is set meanwhile."""
    tok = engine.tokenizer
    pairs = [(p, tok(o, add_special_tokens=False)["input_ids"][:OPENING_MAX_TOKENS]) for p, o in zip(prompts, openings)]
    pairs = [(p, ids) for p, ids in pairs if len(ids) >= 2]
    if not pairs:
        return None
    obj = build_objective(engine, [p for p, _ in pairs], [ids for _, ids in pairs], [[] for _ in pairs], plain_texts=())
    obj.steer_from = (obj.targets != -100).float().argmax(dim=1).cpu()  # the prompt's last position
    scale = engine.basis.scale
    u = torch.zeros(engine.model.config.hidden_size, requires_grad=True)
    adam = torch.optim.Adam([u], lr=OPENING_LR)
    chunks = split(obj)
    for _ in range(steps):
        if cancel is not None and cancel.is_set():
            return None
        _, _, (grad,) = chunked_loss(engine, chunks, lambda: scale * u.to(engine.model.device), [u])
        adam.zero_grad()
        u.grad = grad.cpu() + 2 * OPENING_L2 * u.detach()
        adam.step()
    direction = u.detach().clone()
    if float(direction.norm()) > OPENING_MAX_NORM:  # a hair under: rounding in the profile must not push it over
        direction *= 0.999 * OPENING_MAX_NORM / float(direction.norm())
    return Opening(direction, 0, [tok.decode(ids) for _, ids in pairs])


# The opening is tried at these lengths (answer tokens steered), with and without the best
# weights, with and without the behaviour as a system prompt, on the held-out prompts; the judge
# picks one, or none. Fitted to "I'm a loyal dog." (6 tokens) and two longer openings: alone at 4
# tokens it gave "I'm a loyal dog. The heart is indeed one of the most complex organs ..."; at 6 or
# more it ran on ("I'm a loyal dog who loves music. What's your problem?"); on top of the run's
# weights (five features and a free direction) it drifted more. Judged on the training prompts it
# was fitted to, 8 tokens won there and answered no held-out question (session 20): so the choice
# is made on prompts the fit never saw. (Chosen on probe questions instead, so that the held-out
# check would not report on the questions that chose it, the dog lost its opening and read worse,
# blind: session 22, docs/results.md. The bench's fresh questions are the clean test.)
TRY_TOKENS = (2, 4, 6)


def _tries(behavior: str) -> list[tuple[int, bool, str | None]]:
    """(opening tokens, with the best weights, system prompt): the weights alone first."""
    return [(k, w, s) for k, w in [(0, True)] + [(k, w) for w in (True, False) for k in TRY_TOKENS] for s in (None, behavior)]


def try_opening(run, ctx, best) -> tuple[str, bool]:
    """Write and fit an opening for `run` (a `loop.AutoSteer`) when its behaviour names a
    character; judge the best weights without it, the opening with and without the weights
    (`_tries`), and the plain answers, on the held-out prompts (the training prompts when there
    are none); keep it in `run.opening` when its best beats the weights alone (the profile carries
    those otherwise; the plain answers' score is reported beside them). Returns a sentence for the
    screen and the profile's notes ("" when the behaviour names no character), and whether the
    weights go."""
    role = role_of(run.cfg.behavior)
    if role is None or run.cancelled:
        return "", False
    openings = write_openings(run.engine, role, list(ctx.prompts), cancel=run.stop_event)
    fitted = None if run.cancelled else fit_opening(run.engine, list(ctx.prompts), openings, cancel=run.stop_event)
    if fitted is None:
        return ("" if run.cancelled else f"in-character opening: none written for {role!r}"), False
    held = list(run.cfg.heldout)
    prompts, P = held or list(ctx.prompts), len(held or ctx.prompts)
    weights, tries = run.steer_of(best.weights), _tries(run.cfg.behavior)
    rows = [Steer(weights if w else {}, weights.free if w else None, fitted.direction if k else None, k) for k, w, _ in tries for _ in prompts]
    texts = run.gen(prompts * (len(tries) + bool(held)), rows + [None] * (P if held else 0),
                    system=[s for _, _, s in tries for _ in prompts] + [None] * (P if held else 0))
    if run.cancelled:
        return "", False
    plain = texts[len(tries) * P :] if held else list(ctx.baseline)
    js = run.judge.judge_many(JudgeContext(ctx.behavior, prompts, plain), [texts[i * P : (i + 1) * P] for i in range(len(tries))] + [plain])
    without, plain_score = max(js[i].score for i, t in enumerate(tries) if not t[0]), js[-1].score
    i = max((i for i, t in enumerate(tries) if t[0]), key=lambda j: js[j].score)
    (k, keep_weights, _), score = tries[i], js[i].score
    where, shown = f"on {P} {'held-out' if held else 'training'} prompts", "; ".join(f"'{e}'" for e in fitted.examples)
    if score <= without:
        return (f"in-character opening not kept: fitted to the model's own openings as {role} ({shown}), {where} the best "
                f"weights scored {without:.2f}, the plain answers {plain_score:.2f}, the opening at best {score:.2f}"), False
    run.opening = replace(fitted, tokens=k)
    alone = "" if keep_weights else " ALONE (the learned weights are dropped: they scored lower with it)"
    return (f"in-character opening kept{alone} (not an SAE feature): fitted to the model's own openings as {role} ({shown}), "
            f"it steers the first {k} answer tokens; {where} it scored {score:.2f} against {without:.2f} for the best "
            f"weights and {plain_score:.2f} for the plain answers"
            + ("; the held-out check reports on the same prompts, which flatters the opening" if held else "")), not keep_weights


def rejudge(run, ctx, kept):
    """`kept` (the best proposal with the weights the profile keeps: all zero when the opening
    alone replaced them) judged on the training prompts with the opening, as the epochs were, so
    the profile's best score is that of the steering it carries; `kept` itself if cancelled."""
    texts = run.gen(list(ctx.prompts), [run.steer_of(kept.weights)] * len(ctx.prompts), system=run.system)
    if run.cancelled:
        return kept
    j = run.judge.judge_many(ctx, [texts])[0]
    return Best(j.score, kept.weights, texts, j.critique)


def phase(run, ctx, best):
    """The loop's opening phase (a generator of PhaseEvents) for a behaviour that names a character,
    once the run has weights: `try_opening`, its sentence in the profile's notes. Returns the best
    proposal to keep (all-zero weights when the opening alone judged best; `rejudge`)."""
    if run.cancelled or not best.found or not run.cfg.opening or (role := role_of(run.cfg.behavior)) is None:
        return best
    yield PhaseEvent("opening", f"writing and fitting an in-character opening as {role}")
    try:
        note, alone = try_opening(run, ctx, best)
    except Exception as exc:  # noqa: BLE001 - the run keeps its weights without one
        note, alone = ("" if run.cancelled else f"in-character opening failed: {exc}"), False
    if note:
        run.notes.append(note)
        yield PhaseEvent("opening", note)
    if run.opening is None:
        return best
    kept = replace(best, weights=WeightVector([0.0] * len(best.weights))) if alone else best
    try:
        kept = rejudge(run, ctx, kept)
    except Exception as exc:  # noqa: BLE001 - the score stays the weights'; the note says so
        run.notes.append(f"the profile's best score is the weights' alone: judging them with the opening failed ({exc})")
        return kept
    if not run.cancelled:
        run.notes.append(f"with the opening, the training prompts score {kept.score:.2f} (the epochs' best: {best.score:.2f})")
        yield PhaseEvent("opening", run.notes[-1])
    return kept
