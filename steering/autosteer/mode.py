"""Which answers an auto-steer run's epochs optimise (`AutoSteerConfig.mode`).

"steered": steering alone. "prompted_steered": steering on top of the behaviour as a system
prompt. "auto": on top of the prompt when the prompted answers, judged on the screening prompts,
beat every screened feature steered alone: the model already shows the behaviour when asked, and
steering then has to add to that rather than replace it.
"""

from __future__ import annotations


def decide(asked: str, prompted_score: float | None, best_alone: float | None) -> tuple[str, str]:
    """(mode, a sentence saying why) for the asked mode, the prompted answers' score and the best
    screened feature's score alone (None where not measured)."""
    mode, why = asked, f"mode {asked} was asked for"
    if asked == "auto":
        mode, why = "steered", "no screening to compare with"
        if prompted_score is not None and best_alone is not None:
            if prompted_score > best_alone:
                mode = "prompted_steered"
                why = f"the behaviour as a system prompt scores {prompted_score:.2f}, the best feature alone {best_alone:.2f}"
            else:
                why = f"the best feature alone scores {best_alone:.2f}, the behaviour as a system prompt {prompted_score:.2f}"
    what = "steering on top of the behaviour as a system prompt" if mode == "prompted_steered" else "steering alone"
    return mode, f"optimising {what} ({why})"
