"""The end of an auto-steer run: the held-out check of the best weights and the profile it saves.

`run` is the `loop.AutoSteer` being finished (not imported here: the loop imports this module)."""

from __future__ import annotations

from collections.abc import Sequence

from ..artefacts.bind import make_profile
from ..artefacts.profile import FREE_MAX_NORM, SteeringProfile, provenance
from ..runtime.basis import Steer
from .judges import JudgeContext
from .results import CONDITIONS, Best, FinalResult, HeldOutResult, RunScores, ScreenResult, four_conditions


def heldout_check(run, weights: Steer, prompts: Sequence[str] | None = None) -> HeldOutResult:
    """Four conditions on prompts never trained on (the run's held-out prompts unless `prompts`
    is given), in one batched generate."""
    H = list(run.cfg.heldout if prompts is None else prompts)
    b = run.cfg.behavior
    n = len(H)
    batch, rows, systems = four_conditions(H, weights, b)
    texts = run.gen(batch, rows, system=systems)
    outs = {c: texts[i * n : (i + 1) * n] for i, c in enumerate(CONDITIONS)}
    ctx = JudgeContext(b, H, outs["unsteered"])
    js = run.judge.judge_many(ctx, [outs[c] for c in CONDITIONS])
    return HeldOutResult(
        H, {c: j.score for c, j in zip(CONDITIONS, js)}, outs, {c: j.critique for c, j in zip(CONDITIONS, js)},
        {c: j.parts for c, j in zip(CONDITIONS, js)}, {c: j.per_prompt for c, j in zip(CONDITIONS, js) if j.per_prompt},
    )


def run_profile(run, best: Best, history: list[float], heldout: HeldOutResult | None, stopped: str,
                screened: ScreenResult | None, optimiser_name: str) -> SteeringProfile:
    """The run's profile: the best weights, its scores, where each feature came from, and the
    answering mode."""
    cfg = run.cfg
    steer = run.steer_of(best.weights) if best.found else Steer()
    # The held-out check decides whether the profile answers with the behaviour as a system prompt
    # too; without one, it answers the way the epochs were judged.
    mode = run.trained_on
    if heldout is not None:
        mode = "prompted_steered" if heldout.scores["prompted_steered"] > heldout.scores["steered"] else "steered"
    labels = {f.index: f.label for f in run.features}
    screened_scores = {"screened": {str(c.index): sc for c, sc in zip(screened.candidates, screened.scores)}} if screened else {}
    free = _free_list(steer.free, run.notes)  # before the notes are written into the profile: it may add one
    if judged := run.judge.summary():  # e.g. an LLM judge that fell back to the metric one
        run.notes.append(judged)
    return make_profile(
        run.rt, cfg.name, cfg.behavior, {i: round(w, 4) for i, w in steer.items()}, labels,
        prompts=cfg.prompts,
        scores=RunScores(history, best.score if history else None, heldout.scores if heldout else None).to_dict(),
        provenance=provenance(run.judge.name, optimiser_name, stopped=stopped,
                              trained_on=run.trained_on,
                              sources={str(f.index): f.source for f in run.features}, notes=run.notes, **screened_scores),
        mode=mode, system_prompt=cfg.behavior,
        free_direction=free,
        free_share=run.free_share(best.weights),
        opening_direction=None if run.opening is None else [round(float(x), 6) for x in run.opening.direction],
        opening_tokens=0 if run.opening is None else run.opening.tokens,
    )


def _free_list(free, notes: list[str]) -> list[float] | None:
    """The free direction as the profile stores it, shortened to the longest a profile may carry
    (never seen in a run: longer ones garble), so the run's profile always saves."""
    if free is None:
        return None
    norm = float(free.norm())
    if norm > FREE_MAX_NORM:
        free = free * (0.999 * FREE_MAX_NORM / norm)  # a hair under: rounding to 6 decimals must not push it over
        notes.append(f"free direction shortened from {norm:.2f} to {FREE_MAX_NORM:g} (units of scale), the most a profile may carry")
    return [round(float(x), 6) for x in free]


def nothing_found(run) -> FinalResult:
    """Cancelled before any feature was kept: an empty profile."""
    cfg = run.cfg
    profile = make_profile(run.rt, cfg.name, cfg.behavior, {}, prompts=cfg.prompts, scores=RunScores().to_dict(),
                           provenance=provenance(run.judge.name, stopped="cancelled"))
    return FinalResult(profile, [], None, "cancelled")
