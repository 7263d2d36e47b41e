"""The Auto-steer tab's handlers: a run streamed to the page, Stop, feature search and the manual
steered-vs-unsteered comparison."""

from __future__ import annotations

import html
import threading
import time

import gradio as gr
import pandas as pd

from quora_kids.profiles import remember
from steering.artefacts.profile import HEADS_UP, opening_summary
from steering.autosteer.config import AutoSteerConfig
from steering.autosteer.events import AutoSteerView, follow
from steering.autosteer.factory import make_autosteer
from steering.autosteer.loop import AutoSteer
from steering.autosteer.results import EpochResult, FinalResult, PhaseEvent, ScreenResult
from steering.autosteer.retrieve import FeatureCandidate
from steering.llm import LLMClient, LLMError
from steering.runtime.engine import GenerationConfig
from steering.runtime.scheduler import BACKGROUND, iterate_at
from steering.sae.index import load_index

from .common import MAX_TEXT, kids_profiles, md_cell, private_profile_file, progress_html, runtime

_runs: dict[str, AutoSteer] = {}  # session hash -> running AutoSteer (for Stop)
_runs_lock = threading.Lock()

EMPTY_PLOT = pd.DataFrame({"epoch": pd.Series([], dtype=int), "score": pd.Series([], dtype=float), "series": pd.Series([], dtype=str)})
FEATURE_COLUMNS = ["feature", "label", "source", "weight"]
HELD_COLUMNS = ["condition", "score", "prompt by prompt"]
VERDICTS = {"threshold": "reached the target score", "epochs": "ran every epoch", "cancelled": "stopped"}
# The held-out table's rows, in words (the profile and the --json output keep the keys).
CONDITION_NAMES = {"unsteered": "plain model", "prompted": "prompted (the behaviour as a system prompt)",
                   "steered": "steered", "prompted_steered": "prompted + steered"}
# How far along the progress bar each phase starts: retrieval and screening take about half of a
# default run on 2 CPU cores, the epochs most of the rest.
PHASE_PROGRESS = {"baseline": 0.02, "retrieve": 0.05, "screen": 0.25, "mode": 0.45, "seed": 0.45, "opening": 0.9, "held-out": 0.92}
EPOCHS_START, EPOCHS_END = 0.45, 0.92
# What each phase is doing, in words, ahead of the loop's own detailed message.
PHASE_TITLES = {"baseline": "Answering your prompts without steering", "retrieve": "Finding candidate features",
                "screen": "Trying each candidate feature alone", "mode": "Choosing what to tune", "seed": "Preparing the optimiser",
                "epochs": "Tuning the weights", "opening": "Writing an in-character opening", "held-out": "Checking on questions it never saw", HEADS_UP: "Heads-up"}
LABEL_CHARS = 70  # the features table's labels, cut so its weights stay on screen


def features_frame(feats: list[FeatureCandidate], weights: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": [f.index for f in feats],
            "label": [f.label if len(f.label) <= LABEL_CHARS else f.label[: LABEL_CHARS - 1] + "…" for f in feats],
            "source": [f.source for f in feats],
            "weight": [round(w, 3) for w in (weights or [0.0] * len(feats))],
        }
    )


def quoted(text: str) -> str:
    """An answer inside the log's Markdown quote: every line of it stays in the quote."""
    return "  \n> ".join(html.escape(line) for line in text.strip().splitlines() if line.strip()) or "(empty)"


def plot_update(rows: pd.DataFrame, epochs: int | None = None):
    """The score plot, hidden while it has no points (an empty chart draws a '-Infinity' legend);
    its epoch axis spans the whole run, so one point does not read "1.000000"."""
    if epochs is None:
        return gr.update(value=rows, visible=not rows.empty)
    return gr.update(value=rows, visible=not rows.empty, x_lim=[0, max(2, epochs)])


def empty_held() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in HELD_COLUMNS})


def llm_client(base_url: str, model: str, key: str):
    if not (base_url or "").strip():
        return None
    return LLMClient.from_env(base_url.strip(), (model or "").strip() or None, (key or "").strip() or None)


ON_PROMPT = " · on top of the behaviour as a system prompt"


class Page(AutoSteerView):
    """The run as the tab shows it: (status, log, plot, features, held-out, profile json, profile
    file, learned) for every event. `learned` is this browser session's learned profiles."""

    def __init__(self, run: AutoSteer, learned: dict):
        self.run, self.cfg, self.learned = run, run.cfg, learned
        self.log_md = ""
        self.rows: list[dict] = []
        self.feats_df: pd.DataFrame | None = None
        self.heads_up = ""  # shown above the log for the rest of the run (see targets.heads_up)
        self.started = time.monotonic()
        self.fraction = 0.0  # of the whole run, for the progress bar

    def progress(self, text: str, fraction: float | None = None, over: bool = False) -> str:
        """The progress bar (it never moves back) and `text`, with the time so far (or in all, `over`)."""
        self.fraction = max(self.fraction, fraction if fraction is not None else self.fraction)
        secs = int(time.monotonic() - self.started)
        took = f"{secs // 60} min {secs % 60:02d} s"
        return progress_html(round(100 * self.fraction), 100, f"{text} ({'took ' + took if over else took + ' so far'})")

    def epochs_fraction(self, done: int) -> float:
        return EPOCHS_START + (EPOCHS_END - EPOCHS_START) * done / max(1, self.cfg.epochs)

    def out(self, status, plot=EMPTY_PLOT, feats=None, held=None, prof=None, file=None):
        log = f"> **Heads-up:** {html.escape(self.heads_up)}.\n\n{self.log_md}" if self.heads_up else self.log_md
        return (status, log, plot_update(plot, self.cfg.epochs), feats if feats is not None else features_frame([]),
                held if held is not None else empty_held(), prof, file, self.learned)

    def plot(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows) if self.rows else EMPTY_PLOT

    def phase(self, event: PhaseEvent):
        if event.phase == HEADS_UP:
            self.heads_up = event.message
        done = 0 if not self.rows else self.rows[-1]["epoch"]
        at = self.epochs_fraction(done) if event.phase == "epochs" else PHASE_PROGRESS.get(event.phase)
        title = PHASE_TITLES.get(event.phase, event.phase)
        return self.out(self.progress(f"{title}... ({event.phase}: {event.message})", at), self.plot(), self.feats_df)

    def screened(self, event: ScreenResult):
        kept = event.candidates[: event.kept]
        lines = "\n".join(
            f"| {c.index} | {md_cell(c.label[:80])} | {c.source} | {s:.2f} | {'kept' if i < event.kept else ''} |"
            for i, (c, s) in enumerate(zip(event.candidates, event.scores))
        )
        self.log_md = (f"### Screening: {len(event.candidates)} candidate features, each steered alone\n\n"
                       f"| feature | label | source | score alone | |\n|---|---|---|---|---|\n{lines}\n\n---\n")
        self.feats_df = features_frame(kept)
        return self.out(self.progress(f"Kept the {len(kept)} best features; tuning their weights...", EPOCHS_START), feats=self.feats_df)

    def epoch(self, event: EpochResult):
        self.rows += [{"epoch": event.epoch, "score": event.score, "series": "epoch score"},
                      {"epoch": event.epoch, "score": event.best_score, "series": "best so far"}]
        self.feats_df = features_frame(self.run.features, event.best_weights)
        answers = "\n".join(f"> **{html.escape(p)}**  \n> {quoted(o)}\n" for p, o in zip(self.cfg.prompts, event.outputs))
        free = (f" + a free direction (**not an SAE feature**, {event.free_share:.0%} of the steering norm)"
                if event.free_share else "")
        self.log_md = (
            f"### Epoch {event.epoch}: score {event.score:.2f} (best {event.best_score:.2f})\n"
            f"weights `{event.weights}`{free}{ON_PROMPT if event.condition == 'prompted_steered' else ''}"
            f" · {event.seconds['generate']:.1f}s generating\n\n{answers}\n"
            f"*Critique:* {html.escape(event.critique)}\n\n---\n" + self.log_md
        )
        return self.out(self.progress(f"Epoch {event.epoch} of {self.cfg.epochs} done", self.epochs_fraction(event.epoch)),
                        pd.DataFrame(self.rows), self.feats_df)

    def final(self, event: FinalResult):
        """The held-out check; the profile goes into this session's list and a private download file."""
        profile = event.profile
        if event.stopped == "cancelled" and not profile.features and profile.free_direction is None:
            return self.out(self.progress("Stopped before the first epoch finished: nothing was learned, so no profile was saved.", over=True),
                            self.plot(), self.feats_df)
        path = private_profile_file(profile)
        held = None
        if event.heldout:
            held = pd.DataFrame(dict(zip(HELD_COLUMNS, ([CONDITION_NAMES.get(c, c) for c in event.heldout.scores], [round(s, 2) for s in event.heldout.scores.values()],
                                                        [event.heldout.versus_prompted(c) for c in event.heldout.scores]))))
        held_score = event.heldout.scores.get(profile.mode) if event.heldout else None
        self.learned, learned_name = remember(self.learned, profile, held_score)
        verdict = VERDICTS.get(event.stopped, f"stopped early: {event.stopped}")
        mode = "with the behaviour as a system prompt too" if profile.mode == "prompted_steered" else "steering only"
        free = (f"; {profile.free_share:.0%} of the steering is a learned direction that is not an SAE feature"
                if profile.free_share else "") + (f"; {opening_summary(profile)}" if profile.opening_direction is not None else "")
        weak = " Expect a weak effect: the model barely shows this behaviour even when told it (see the log)." if self.heads_up else ""
        status = self.progress(f"Done ({verdict}). Answers {mode}{free}. "
                               f"Saved for this browser session as {learned_name!r} (download it below).{weak}",
                               1.0 if event.stopped != "cancelled" else None, over=True)
        feats = self.feats_df if self.feats_df is not None else features_frame(self.run.features)
        return self.out(status, self.plot(), feats, held, profile.to_dict(), str(path))


def _new_run(behavior, prompts_text, epochs, n_features, judge, optimiser, base_url, model, key, threshold) -> AutoSteer:
    prompts = [p.strip() for p in (prompts_text or "").splitlines() if p.strip()]
    if len(behavior or "") > MAX_TEXT or len(prompts_text or "") > 10 * MAX_TEXT:
        raise ValueError(f"that text is too long; keep the behaviour under {MAX_TEXT} characters")
    try:
        epochs, n_features, threshold = int(epochs), int(n_features), float(threshold)
    except (TypeError, ValueError):
        raise ValueError("epochs, features and the stop-early score must be numbers") from None
    cfg = AutoSteerConfig(behavior=behavior or "", prompts=prompts, epochs=epochs, features=n_features, threshold=threshold)
    return make_autosteer(cfg, judge, optimiser, llm_client(base_url, model, key))


def start_autosteer(behavior, prompts_text, epochs, n_features, judge, optimiser, base_url, model, key, threshold=7.0, learned=None,
                    request: gr.Request = None):
    """Generator: streams (status, log, plot, features, held-out, profile json, profile file, learned).

    `learned` is this browser session's learned profiles (a gr.State): the finished profile is
    added there, and nowhere another visitor could see it."""
    sid = request.session_hash if request else "local"
    try:
        run = _new_run(behavior, prompts_text, epochs, n_features, judge, optimiser, base_url, model, key, threshold)
    except (ValueError, LLMError) as exc:
        yield (f"⚠️ {exc}", "", plot_update(EMPTY_PLOT), features_frame([]), empty_held(), None, None, dict(learned or {}))
        return
    page = Page(run, dict(learned or {}))
    with _runs_lock:
        _runs[sid] = run
    yield page.out(page.progress("Finding candidate features and trying each one alone (a default run takes 3-4 minutes on 2 CPU cores)...",
                                 PHASE_PROGRESS["baseline"]))
    try:
        yield from follow(iterate_at(BACKGROUND, run.run()), page)  # kids' questions decode first
    except (LLMError, RuntimeError, ValueError) as exc:
        yield page.out(f"⚠️ {exc}", page.plot(), page.feats_df)
    finally:
        with _runs_lock:
            if _runs.get(sid) is run:
                del _runs[sid]


def stop_autosteer(request: gr.Request):
    sid = request.session_hash if request else "local"
    with _runs_lock:
        run = _runs.get(sid)
    if run is None:
        return "Nothing is running."
    run.cancel()
    return "Stopping after the current step..."


def search_features(query):
    index = load_index(runtime().preset)
    if index is None or not (query or "").strip():
        return pd.DataFrame({"feature": [], "label": [], "score": [], "mentions": []})
    hits = index.search_words(query[:MAX_TEXT], k=15)
    return pd.DataFrame({"feature": [h.index for h in hits], "label": [h.label for h in hits], "score": [round(h.score, 3) for h in hits],
                         "mentions": [", ".join(h.mentions) or "-" for h in hits]})


def compare_manual(prompt, *slots):
    """Steered vs unsteered answer for hand-set feature weights (one batched generate)."""
    prompt = (prompt or "").strip()
    if not prompt:
        return "⚠️ Type a prompt first.", ""
    if len(prompt) > MAX_TEXT:
        return f"⚠️ The prompt is too long ({len(prompt):,} characters; {MAX_TEXT} at most).", ""
    weights = {}
    for idx, w in zip(slots[::2], slots[1::2]):
        if idx is None or idx == "" or not w:
            continue
        try:
            weights[int(idx)] = float(w)
        except (TypeError, ValueError):
            return f"⚠️ A feature is a whole number and a weight a number between -1 and 1 (got {str(idx)[:20]!r}, {str(w)[:20]!r}).", ""
    rt = runtime()
    for i in weights:
        if not 0 <= i < rt.engine.basis.d_sae:
            return f"⚠️ Feature {i} does not exist (0 to {rt.engine.basis.d_sae - 1}).", ""
    steered, plain = rt.engine.generate([prompt, prompt], [weights, None], config=GenerationConfig(max_new_tokens=96))
    return steered.text, plain.text


def use_in_kids(learned):
    """Pick this session's newest learned profile in the kids' tab."""
    if not learned:
        return gr.update(), "⚠️ Run auto-steer first: there is no profile yet."
    name = list(learned)[-1]
    update, _ = kids_profiles(learned, name)
    return update, f"Kids' Q&A now uses your profile {name!r}."
