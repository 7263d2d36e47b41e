"""Gradio app: "Auto-steer" (learn a steering profile from one line) and "Kids' Q&A".

UI wiring only: every handler calls into `steering` / `quora_kids` and formats the result.
Run `python app.py` (or `make run`); it serves on 0.0.0.0:7860 (PORT / GRADIO_SERVER_PORT).
"""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import pandas as pd

from quora_kids.profiles import UNSTEERED, ProfileCatalog, ProfileEntry, UnknownProfile, content_key, remember
from quora_kids.questions import QuestionSearch, categories, load_questions
from quora_kids.service import AnswerService, Partial, QuestionError, default_safety
from quora_kids.store import AnswerStore
from steering.autosteer import AutoSteerConfig, EpochResult, PhaseEvent, ScreenResult, make_autosteer
from steering.engine import GenerationConfig
from steering.features import FeatureIndex
from steering.llm import LLMClient, LLMError
from steering.models import index_dir
from steering.profile import ProfileError, SteeringProfile
from steering.retrieve import FeatureCandidate
from steering.scheduler import BACKGROUND, INTERACTIVE, iterate_at
from steering.session import blank_profile, get_runtime, make_profile, weights_for

log = logging.getLogger("app")
ROOT = Path(__file__).resolve().parent
SHIPPED_PROFILES = ROOT / "assets" / "profiles"
# Downloads of learned profiles: one unguessable folder per run, never listed for anyone.
USER_PROFILES = Path(os.environ.get("STEERING_PROFILES_DIR", ROOT / "profiles"))
MAX_TEXT = 2000
MANUAL_SLOTS = 5
KIDS_BEHAVIOUR = "Explain things in a way that children can understand"

_runs: dict[str, object] = {}  # session hash -> running AutoSteer (for Stop)
_runs_lock = threading.Lock()
_services: OrderedDict[str, AnswerService] = OrderedDict()  # profile content key -> service
_services_lock = threading.Lock()
MAX_SERVICES = 32
# Kids' questions wait in the generation scheduler, not in Gradio's queue: the scheduler merges
# the ones that arrive together into one batch, so Gradio may run many at once.
KIDS_CONCURRENCY = 16
STREAM_EVERY_S = 0.2  # partial answers are sent at most this often (each update costs the server CPU)
_catalog: ProfileCatalog | None = None
_safety = None


# ------------------------------------------------------------------ shared helpers


def runtime():
    return get_runtime()


def feature_index():
    try:
        return FeatureIndex.load(index_dir(runtime().preset))
    except FileNotFoundError:
        return None


def catalog() -> ProfileCatalog:
    """The curated profiles (read once from assets/profiles); learned ones live in each session."""
    global _catalog
    if _catalog is None:
        _catalog = ProfileCatalog(SHIPPED_PROFILES)
    return _catalog


def profile_choices(learned: dict | None = None) -> list[tuple[str, str]]:
    """(name and one-line description, profile name) for the kids' dropdown: the curated profiles,
    the unsteered model, and the profiles THIS session learned."""
    return catalog().choices(learned)


def default_profile_choice() -> str:
    return catalog().default()


def kids_profiles(learned, current=None):
    """(dropdown update, the list as JSON) for this session; keeps the current pick if it still exists."""
    entries = catalog().entries(learned)
    names = [e.name for e in entries]
    value = current if current in names else default_profile_choice()
    return gr.update(choices=[(e.label, e.name) for e in entries], value=value), [e.to_dict() for e in entries]


def llm_client(base_url: str, model: str, key: str):
    if not (base_url or "").strip():
        return None
    return LLMClient.from_env(base_url.strip(), (model or "").strip() or None, (key or "").strip() or None)


def progress_html(done: int, total: int, text: str) -> str:
    pct = 0 if total == 0 else int(100 * done / total)
    return (
        f'<div class="progress-wrap"><div class="progress-bar" style="width:{pct}%"></div></div>'
        f"<p>{html.escape(text)}</p>"
    )


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def features_frame(feats: list[FeatureCandidate], weights: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "feature": [f.index for f in feats],
            "label": [f.label for f in feats],
            "source": [f.source for f in feats],
            "weight": [round(w, 3) for w in (weights or [0.0] * len(feats))],
        }
    )


EMPTY_PLOT = pd.DataFrame({"epoch": pd.Series([], dtype=int), "score": pd.Series([], dtype=float), "series": pd.Series([], dtype=str)})
FEATURE_COLUMNS = ["feature", "label", "source", "weight"]
HELD_COLUMNS = ["condition", "score"]


def plot_update(rows: pd.DataFrame):
    """The score plot, hidden while it has no points (an empty chart draws a '-Infinity' legend)."""
    return gr.update(value=rows, visible=not rows.empty)


def empty_held() -> pd.DataFrame:
    return pd.DataFrame({c: [] for c in HELD_COLUMNS})


# ------------------------------------------------------------------ auto-steer tab


def start_autosteer(behavior, prompts_text, epochs, n_features, judge, optimiser, base_url, model, key, threshold=7.0, learned=None,
                    request: gr.Request = None):
    """Generator: streams (status, log, plot, features, held-out, profile json, profile file, learned).

    `learned` is this browser session's learned profiles (a gr.State): the finished profile is
    added there, and nowhere another visitor could see it."""
    sid = request.session_hash if request else "local"
    log_md = ""
    learned = dict(learned or {})

    def out(status, plot=EMPTY_PLOT, feats=None, held=None, prof=None, file=None):
        return (status, log_md, plot_update(plot), feats if feats is not None else features_frame([]),
                held if held is not None else empty_held(), prof, file, learned)

    prompts = [p.strip() for p in (prompts_text or "").splitlines() if p.strip()]
    try:
        if len(behavior or "") > MAX_TEXT or len(prompts_text or "") > 10 * MAX_TEXT:
            raise ValueError(f"that text is too long; keep the behaviour under {MAX_TEXT} characters")
        cfg = AutoSteerConfig(behavior=behavior or "", prompts=prompts, epochs=int(epochs), features=int(n_features),
                              threshold=float(threshold))
        client = llm_client(base_url, model, key)
        run = make_autosteer(cfg, judge, optimiser, client)
    except (ValueError, LLMError) as exc:
        yield out(f"⚠️ {exc}")
        return
    with _runs_lock:
        _runs[sid] = run
    yield out(progress_html(0, cfg.epochs, "Finding candidate features and trying each one alone (a minute or two on CPU)..."))
    rows = []
    feats_df = None
    try:
        for event in iterate_at(BACKGROUND, run.run()):  # kids' questions decode first
            if isinstance(event, PhaseEvent):
                done = 0 if not rows else rows[-1]["epoch"]
                yield out(progress_html(done, cfg.epochs, f"{event.phase}: {event.message}..."),
                          pd.DataFrame(rows) if rows else EMPTY_PLOT, feats_df)
                continue
            if isinstance(event, ScreenResult):
                kept = event.candidates[: event.kept]
                lines = "\n".join(
                    f"| {c.index} | {md_cell(c.label[:80])} | {c.source} | {s:.2f} | {'kept' if i < event.kept else ''} |"
                    for i, (c, s) in enumerate(zip(event.candidates, event.scores))
                )
                log_md = (f"### Screening: {len(event.candidates)} candidate features, each steered alone\n\n"
                          f"| feature | label | source | score alone | |\n|---|---|---|---|---|\n{lines}\n\n---\n")
                feats_df = features_frame(kept)
                yield out(progress_html(0, cfg.epochs, f"Kept the {len(kept)} best features; tuning their weights..."), feats=feats_df)
                continue
            if isinstance(event, EpochResult):
                rows += [{"epoch": event.epoch, "score": event.score, "series": "epoch score"},
                         {"epoch": event.epoch, "score": event.best_score, "series": "best so far"}]
                feats_df = features_frame(run.features, event.best_weights)
                answers = "\n".join(f"> **{html.escape(p)}**  \n> {html.escape(o) or '(empty)'}\n" for p, o in zip(cfg.prompts, event.outputs))
                free = (f" + a free direction (**not an SAE feature**, {event.free_share:.0%} of the steering norm)"
                        if event.free_share else "")
                log_md = (
                    f"### Epoch {event.epoch}: score {event.score:.2f} (best {event.best_score:.2f})\n"
                    f"weights `{event.weights}`{free} · {event.seconds['generate']:.1f}s generating\n\n{answers}\n"
                    f"*Critique:* {html.escape(event.critique)}\n\n---\n" + log_md
                )
                yield out(progress_html(event.epoch, cfg.epochs, f"Epoch {event.epoch} of {cfg.epochs} done"), pd.DataFrame(rows), feats_df)
                continue
            # Final result: held-out check; the profile goes into this session's list and a
            # private download file.
            path = private_profile_file(event.profile)
            held = None
            if event.heldout:
                held = pd.DataFrame({"condition": list(event.heldout.scores), "score": [round(s, 2) for s in event.heldout.scores.values()]})
            held_score = event.heldout.scores.get(event.profile.mode) if event.heldout else None
            learned, learned_name = remember(learned, event.profile, held_score)
            verdict = {"threshold": "reached the target score", "epochs": "ran every epoch", "cancelled": "stopped"}.get(
                event.stopped, f"stopped early: {event.stopped}")
            mode = "with the behaviour as a system prompt too" if event.profile.mode == "prompted_steered" else "steering only"
            free = (f"; {event.profile.free_share:.0%} of the steering is a learned direction that is not an SAE feature"
                    if event.profile.free_share else "")
            status = progress_html(cfg.epochs, cfg.epochs, f"Done ({verdict}). Answers {mode}{free}. "
                                   f"Saved for this browser session as {learned_name!r} (download it below).")
            yield out(status, pd.DataFrame(rows) if rows else EMPTY_PLOT, feats_df if feats_df is not None else features_frame(run.features), held,
                      event.profile.to_dict(), str(path))
    except (LLMError, RuntimeError, ValueError) as exc:
        yield out(f"⚠️ {exc}", pd.DataFrame(rows) if rows else EMPTY_PLOT, feats_df)
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
    index = feature_index()
    if index is None:
        return pd.DataFrame({"feature": [], "label": []})
    if not (query or "").strip():
        return pd.DataFrame({"feature": [], "label": []})
    hits = index.search(query[:MAX_TEXT], k=15)
    return pd.DataFrame({"feature": [h.index for h in hits], "label": [h.label for h in hits], "score": [round(h.score, 3) for h in hits]})


def compare_manual(prompt, *slots):
    """Steered vs unsteered answer for hand-set feature weights (one batched generate)."""
    prompt = (prompt or "").strip()
    if not prompt:
        return "⚠️ Type a prompt first.", ""
    if len(prompt) > MAX_TEXT:
        return f"⚠️ The prompt is too long ({len(prompt):,} characters; {MAX_TEXT} at most).", ""
    rt = runtime()
    weights = {}
    for idx, w in zip(slots[::2], slots[1::2]):
        if idx is None or idx == "" or not w:
            continue
        i = int(idx)
        if not 0 <= i < rt.engine.basis.d_sae:
            return f"⚠️ Feature {i} does not exist (0 to {rt.engine.basis.d_sae - 1}).", ""
        weights[i] = float(w)
    steered, plain = rt.engine.generate([prompt, prompt], [weights, None], config=GenerationConfig(max_new_tokens=96))
    return steered.text, plain.text


def private_profile_file(profile: SteeringProfile) -> Path:
    """A download copy of a learned profile in a fresh unguessable folder (listed nowhere)."""
    folder = USER_PROFILES / "sessions" / secrets.token_hex(12)
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in profile.name)[:60] or "profile"
    return profile.save(folder / f"{safe}.json")


def use_in_kids(learned):
    """Pick this session's newest learned profile in the kids' tab."""
    if not learned:
        return gr.update(), "⚠️ Run auto-steer first: there is no profile yet."
    name = list(learned)[-1]
    update, _ = kids_profiles(learned, name)
    return update, f"Kids' Q&A now uses your profile {name!r}."


# ------------------------------------------------------------------ kids' tab

_questions = None
_search = None
_store: AnswerStore | None = None


def questions():
    global _questions, _search
    if _questions is None:
        _questions = load_questions()
        _search = QuestionSearch(_questions)
    return _questions, _search


def store() -> AnswerStore:
    global _store
    if _store is None:
        _store = AnswerStore()
    return _store


def safety():
    global _safety
    if _safety is None:
        _safety = default_safety()
    return _safety


def service_for(entry: ProfileEntry) -> AnswerService:
    """The answer service for a profile, shared by every session whose profile has the same
    CONTENT (the key hashes weights, free direction, mode/system prompt and model)."""
    rt = runtime()
    prof = entry.profile if entry.profile is not None else blank_profile(rt, UNSTEERED, KIDS_BEHAVIOUR)
    key = content_key(prof, preset=rt.preset.id)
    with _services_lock:
        svc = _services.get(key)
        if svc is None:
            svc = _services[key] = AnswerService(rt, prof, safety(), store())
            while len(_services) > MAX_SERVICES:
                _services.popitem(last=False)
        _services.move_to_end(key)
        return svc


def profile_download(choice, learned):
    """A download copy of the chosen profile (curated or this session's own); None when unsteered."""
    try:
        entry = catalog().resolve(choice, learned)
    except UnknownProfile:
        return None
    if entry.profile is None:
        return None
    return str(private_profile_file(entry.profile))


def profile_about(choice, learned) -> str:
    try:
        entry = catalog().resolve(choice, learned)
    except UnknownProfile as exc:
        return f"⚠️ {exc}"
    return f"**{html.escape(entry.title)}**: {html.escape(entry.description)}"


def kids_browse(query, category):
    _, search = questions()
    hits = search.search((query or "")[:MAX_TEXT], k=25, category=None if category in (None, "", "All") else category)
    return gr.update(choices=[h.question for h in hits], value=None)


def answer_card(title: str, side, tone: str) -> str:
    notice = ""
    if side.fallback and side.regenerated:
        notice = '<p class="notice">🛡️ The first answers did not pass the safety check, so a safe answer is shown instead.</p>'
    return (
        f'<div class="answer {tone}"><h3>{html.escape(title)}</h3>'
        f'<span class="badge">📖 {html.escape(side.readability.badge)} · grade {side.readability.grade:.1f}</span>'
        f"<p>{html.escape(side.text) or '<i>(no answer)</i>'}</p>{notice}</div>"
    )


def writing_card(title: str, text: str, tone: str) -> str:
    """An answer card while the model is still writing it (not yet safety-checked)."""
    return (f'<div class="answer {tone} writing"><h3>{html.escape(title)}</h3><span class="badge">✍️ writing…</span>'
            f"<p>{html.escape(text)}</p></div>")


def kids_answer(question, profile_choice, learned=None):
    """Generator of (steered html, unsteered html, notice, answer id, recent): both cards fill
    as the model writes them, then show the checked answers (the safety check sees only the
    finished text and may still replace it).

    `profile_choice` is a profile NAME: a curated one or one this session learned (`learned`,
    the session's gr.State). Anything else (a path, '..') is refused without opening a file."""
    try:
        entry = catalog().resolve(profile_choice, learned)
        svc = service_for(entry)
        steered_title = f"Steered answer ({entry.title})" if entry.profile is not None else "Answer (no steering profile chosen)"
        ans, shown = None, 0.0
        for item in iterate_at(INTERACTIVE, svc.stream(question or "")):
            if isinstance(item, Partial):
                if time.monotonic() - shown < STREAM_EVERY_S:
                    continue
                shown = time.monotonic()
                yield (writing_card(steered_title, item.steered, "steered"), writing_card("Plain model answer", item.unsteered, "plain"),
                       "", None, gr.update())
            else:
                ans = item
    except UnknownProfile as exc:
        yield "", "", f"⚠️ {exc}", None, recent_md()
        return
    except QuestionError as exc:
        yield "", "", f"⚠️ {exc}", None, recent_md()
        return
    except ProfileError as exc:
        yield "", "", f"⚠️ That profile cannot be used with this model: {exc}", None, recent_md()
        return
    if ans.refused:
        card = f'<div class="answer refusal"><h3>💛 Let\'s talk to a grown-up</h3><p>{html.escape(ans.steered.text)}</p></div>'
        yield card, "", "🛡️ This question was not answered by the model.", None, recent_md()
        return
    notice = "♻️ Answered before: this is the saved answer." if ans.cached else ""
    yield (answer_card(steered_title, ans.steered, "steered"), answer_card("Plain model answer", ans.unsteered, "plain"),
           notice, ans.answer_id, recent_md())


def vote(answer_id, which):
    if answer_id is None:
        return "Ask a question first."
    try:
        n = store().vote(int(answer_id), which)
    except KeyError:
        return "That answer is gone."
    return f"Thanks! {n} {'person' if n == 1 else 'people'} found the {'kid-friendly' if which == 'steered' else 'plain'} answer helpful."


def recent_md() -> str:
    items = store().recent(8)
    if not items:
        return "*No questions asked yet.*"
    return "\n".join(f"- {html.escape(r.question)} <small>(👍 {r.helpful_steered} / {r.helpful_unsteered})</small>" for r in items)


# ------------------------------------------------------------------ layout

CSS = """
.progress-wrap {background:#eee;border-radius:6px;height:10px;overflow:hidden}
.progress-bar {background:#f97316;height:10px;transition:width .3s}
.answer {border-radius:14px;padding:14px 18px;margin:4px 0}
.answer.steered {background:#fff7ed;border:2px solid #fdba74}
.answer.plain {background:#f1f5f9;border:2px solid #cbd5e1}
.answer.refusal {background:#fefce8;border:2px solid #fde047}
.badge {display:inline-block;background:#e0f2fe;color:#075985;border-radius:999px;padding:2px 10px;font-size:.85em}
.notice {color:#92400e}
"""


def build_app() -> gr.Blocks:
    with gr.Blocks(title="One-prompt SAE steering") as demo:
        gr.Markdown("# One-prompt steering with sparse-autoencoder features")
        # The profiles THIS browser session learned: name -> {profile, title, description}.
        # Session state: no other visitor ever sees them.
        learned = gr.State({})
        with gr.Tab("Auto-steer"):
            gr.Markdown("Describe a behaviour in one line. The app finds SAE features of the model and tunes their weights "
                        "until answers show the behaviour, then checks the result on questions it never saw.")
            with gr.Row():
                with gr.Column(scale=2):
                    behavior = gr.Textbox(label="Behaviour", placeholder=KIDS_BEHAVIOUR, value=KIDS_BEHAVIOUR, elem_id="behavior")
                    prompts = gr.Textbox(label="Training prompts (one per line)", lines=3, value="Why is the sky blue?\nHow do plants grow?", elem_id="prompts")
                    with gr.Row():
                        epochs = gr.Slider(1, 20, value=6, step=1, label="Epochs")
                        n_feats = gr.Slider(1, 10, value=5, step=1, label="Features")
                        threshold = gr.Slider(1, 10, value=7, step=0.5, label="Stop early at score", elem_id="threshold")
                    with gr.Row():
                        judge = gr.Radio(["metric", "llm"], value="metric", label="Judge", info="metric works offline")
                        optim = gr.Radio(["numeric", "gradient", "llm"], value="numeric", label="Optimiser", info="numeric and gradient work offline; llm needs an endpoint")
                    with gr.Accordion("LLM endpoint (optional, OpenAI-compatible)", open=False):
                        base_url = gr.Textbox(label="Base URL", placeholder="http://localhost:8000/v1")
                        model = gr.Textbox(label="Model", placeholder="gpt-4o-mini")
                        key = gr.Textbox(label="API key", type="password")
                    with gr.Row():
                        start = gr.Button("Start", variant="primary", elem_id="start")
                        stop = gr.Button("Stop", variant="stop", elem_id="stop")
                    status = gr.HTML(elem_id="status")
                with gr.Column(scale=3):
                    gr.Markdown("*The score per epoch is drawn here once a run starts.*", elem_id="plot-placeholder")
                    plot = gr.LinePlot(EMPTY_PLOT, x="epoch", y="score", color="series", title="Score per epoch", y_lim=[0, 10], height=260,
                                       visible=False, elem_id="score-plot")
                    feats = gr.Dataframe(features_frame([]), headers=FEATURE_COLUMNS, label="Features and current weights", interactive=False,
                                         elem_id="features-table")
                    held = gr.Dataframe(empty_held(), headers=HELD_COLUMNS, label="Held-out check (mean judge score, 0-10)", interactive=False,
                                        elem_id="held-table")
                    with gr.Row():
                        prof_file = gr.File(label="Profile (download)", interactive=False)
                        use_btn = gr.Button("Use in Kids' Q&A")
                    prof_json = gr.JSON(label="Profile", visible=False)
            epoch_log = gr.Markdown(elem_id="epoch-log")
            with gr.Accordion("Manual mode: pick features and set weights", open=False):
                with gr.Row():
                    fquery = gr.Textbox(label="Search features", placeholder="dogs and puppies")
                    fbtn = gr.Button("Search")
                fresults = gr.Dataframe(pd.DataFrame({"feature": [], "label": [], "score": []}), headers=["feature", "label", "score"],
                                        label="Matching features", interactive=False)
                slots = []
                for i in range(MANUAL_SLOTS):
                    with gr.Row():
                        slots.append(gr.Number(label=f"Feature {i + 1}", precision=0, value=None))
                        slots.append(gr.Slider(-1, 1, value=0, step=0.05, label="Weight"))
                mprompt = gr.Textbox(label="Prompt", value="Tell me about your weekend.")
                mbtn = gr.Button("Compare steered vs unsteered")
                with gr.Row():
                    msteer = gr.Textbox(label="Steered", lines=6)
                    mplain = gr.Textbox(label="Unsteered", lines=6)

        with gr.Tab("Kids' Q&A"):
            gr.Markdown("## 🦉 Ask Owl\nCurious about something? Browse questions other kids asked, or ask your own. "
                        "You'll see a kid-friendly answer next to the plain model's answer.")
            gr.Markdown("**What is this?** The same small AI model answers every question twice. The *steered* answer "
                        "(left) is nudged by the profile you pick, for example towards simple words a child can follow; the "
                        "*plain* answer (right) is the model on its own, so you can compare them. Both are checked for safety "
                        "before they are shown.", elem_id="kids-about")
            with gr.Row():
                with gr.Column(scale=2):
                    with gr.Row():
                        kquery = gr.Textbox(label="Search questions", placeholder="dinosaurs, rain, money...")
                        kcat = gr.Dropdown(["All"], value="All", label="Category")
                    kpick = gr.Radio([], label="Questions", elem_id="kids-questions")
                with gr.Column(scale=3):
                    kprofile = gr.Dropdown(profile_choices(), value=default_profile_choice(), label="Steering profile",
                                           info="Curated profiles, plus the ones you learned on the Auto-steer tab (only you see those)",
                                           allow_custom_value=True, elem_id="kids-profile")
                    with gr.Row():
                        kabout = gr.Markdown(profile_about(default_profile_choice(), None), elem_id="kids-profile-about")
                        kdownload = gr.DownloadButton("Download this profile", size="sm", elem_id="kids-profile-download")
                    klist = gr.JSON(visible=False, label="profiles")
                    kask = gr.Textbox(label="Your question", placeholder="Why do cats purr?", elem_id="kids-question")
                    kbtn = gr.Button("Ask", variant="primary", elem_id="kids-ask")
                    knotice = gr.Markdown(elem_id="kids-notice")
                    with gr.Row():
                        ksteer = gr.HTML(elem_id="kids-steered")
                        kplain = gr.HTML(elem_id="kids-plain")
                    kid = gr.Number(value=None, visible=False, precision=0, label="answer id")
                    with gr.Row():
                        vs = gr.Button("👍 Kid-friendly answer helped")
                        vp = gr.Button("👍 Plain answer helped")
                    kvote = gr.Markdown()
                    gr.Markdown("### Recently asked")
                    krecent = gr.Markdown()

        # -------------------------------------------------------------- events
        start.click(
            start_autosteer, [behavior, prompts, epochs, n_feats, judge, optim, base_url, model, key, threshold, learned],
            [status, epoch_log, plot, feats, held, prof_json, prof_file, learned],
            api_name="autosteer", concurrency_id="autosteer", concurrency_limit=2,
        )
        stop.click(stop_autosteer, None, status, api_name="stop", queue=False)
        use_btn.click(use_in_kids, learned, [kprofile, status], api_name="use_profile")
        # This session's list (curated + its own learned profiles), also readable through the API.
        learned.change(kids_profiles, [learned, kprofile], [kprofile, klist], api_name="kids_profiles_changed")
        kprofile.change(profile_about, [kprofile, learned], kabout, api_name="kids_profile_about")
        fbtn.click(search_features, fquery, fresults, api_name="search_features")
        fquery.submit(search_features, fquery, fresults, api_name="search_features_submit")
        mbtn.click(compare_manual, [mprompt, *slots], [msteer, mplain], api_name="compare", concurrency_id="compare", concurrency_limit=4)

        kquery.submit(kids_browse, [kquery, kcat], kpick, api_name="kids_search")
        kcat.change(kids_browse, [kquery, kcat], kpick, api_name="kids_category")
        kpick.change(lambda q: q or gr.update(), kpick, kask, api_name="kids_pick")
        ask_inputs, ask_outputs = [kask, kprofile, learned], [ksteer, kplain, knotice, kid, krecent]
        kbtn.click(kids_answer, ask_inputs, ask_outputs, api_name="kids_answer", concurrency_id="kids", concurrency_limit=KIDS_CONCURRENCY)
        kask.submit(kids_answer, ask_inputs, ask_outputs, api_name="kids_answer_submit", concurrency_id="kids", concurrency_limit=KIDS_CONCURRENCY)
        kdownload.click(profile_download, [kprofile, learned], kdownload, api_name="kids_profile_download")
        vs.click(lambda i: vote(i, "steered"), kid, kvote, api_name="vote_steered")
        vp.click(lambda i: vote(i, "unsteered"), kid, kvote, api_name="vote_unsteered")

        def on_load():
            ds, _ = questions()
            return gr.update(choices=["All", *categories(ds)]), kids_browse("", "All"), recent_md()

        demo.load(on_load, None, [kcat, kpick, krecent], api_name="kids_load")
        lbtn = gr.Button("List profiles", visible=False)
        lbtn.click(lambda l: kids_profiles(l)[1], learned, klist, api_name="kids_profiles")
    return demo


def main():
    demo = build_app()
    demo.queue(default_concurrency_limit=2)
    port = int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860)
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0")
    runtime()  # load the model before the first visitor waits for it
    demo.launch(server_name=host, server_port=port, css=CSS, show_error=False)


if __name__ == "__main__":
    main()
