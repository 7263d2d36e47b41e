"""Gradio app: "Auto-steer" (learn a steering profile from one line) and "Kids' Q&A".

UI wiring only: the handlers live in `webapp/` and call into `quora_kids` / `steering`.
Run `python app.py` (or `make run`); it serves on 0.0.0.0:7860 (PORT / GRADIO_SERVER_PORT).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from quora_kids.profiles import KIDS_BEHAVIOUR
from quora_kids.questions import categories
from webapp import autosteer, kids
from webapp.common import default_profile_choice, kids_profiles, profile_choices, runtime

MANUAL_SLOTS = 5
# Kids' questions wait in the generation scheduler, not in Gradio's queue: the scheduler merges
# the ones that arrive together into one batch, so Gradio may run many at once.
KIDS_CONCURRENCY = 16

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


def _run_settings(c: SimpleNamespace) -> None:
    """The Auto-steer tab's left column: behaviour, prompts, settings, endpoint, Start/Stop."""
    c.behavior = gr.Textbox(label="Behaviour", placeholder=KIDS_BEHAVIOUR, value=KIDS_BEHAVIOUR, elem_id="behavior")
    c.prompts = gr.Textbox(label="Training prompts (one per line)", lines=3, value="Why is the sky blue?\nHow do plants grow?", elem_id="prompts")
    with gr.Row():
        c.epochs = gr.Slider(1, 20, value=6, step=1, label="Epochs")
        c.n_feats = gr.Slider(1, 10, value=5, step=1, label="Features", elem_id="n-features")
        c.threshold = gr.Slider(1, 10, value=7, step=0.5, label="Stop early at score", elem_id="threshold")
    with gr.Row():
        c.judge = gr.Radio(["metric", "llm"], value="metric", label="Judge", info="metric works offline")
        c.optim = gr.Radio(["gradient", "numeric", "llm"], value="gradient", label="Optimiser", info="gradient and numeric work offline; llm needs an endpoint")
    with gr.Accordion("LLM endpoint (optional, OpenAI-compatible)", open=False):
        c.base_url = gr.Textbox(label="Base URL", placeholder="http://localhost:8000/v1")
        c.model = gr.Textbox(label="Model", placeholder="gpt-4o-mini")
        c.key = gr.Textbox(label="API key", type="password")
    with gr.Row():
        c.start = gr.Button("Start", variant="primary", elem_id="start")
        c.stop = gr.Button("Stop", variant="stop", elem_id="stop")
    c.status = gr.HTML(elem_id="status")


def _run_results(c: SimpleNamespace) -> None:
    """The Auto-steer tab's right column: score plot, features, held-out check, the profile."""
    gr.Markdown("*The score per epoch is plotted here as a run goes.*", elem_id="plot-placeholder")
    c.plot = gr.LinePlot(autosteer.EMPTY_PLOT, x="epoch", y="score", color="series", title="Score per epoch", y_lim=[0, 10], height=260, x_axis_format="~g",
                         visible=False, elem_id="score-plot")
    c.feats = gr.Dataframe(autosteer.features_frame([]), headers=autosteer.FEATURE_COLUMNS, label="Features and current weights",
                           interactive=False, elem_id="features-table", wrap=True, column_widths=["12%", "58%", "16%", "14%"])
    c.held = gr.Dataframe(autosteer.empty_held(), headers=autosteer.HELD_COLUMNS, label="Held-out check (mean judge score, 0-10)",
                          interactive=False, elem_id="held-table", wrap=True, column_widths=["38%", "12%", "50%"])
    with gr.Row():
        c.prof_file = gr.File(label="Profile (download)", interactive=False)
        c.use_btn = gr.Button("Use in Kids' Q&A")
    c.prof_json = gr.JSON(label="Profile", visible=False)


def _manual_mode(c: SimpleNamespace) -> None:
    with gr.Accordion("Manual mode: pick features and set weights", open=False):
        with gr.Row():
            c.fquery = gr.Textbox(label="Search features", placeholder="dogs and puppies")
            c.fbtn = gr.Button("Search")
        c.fresults = gr.Dataframe(pd.DataFrame({"feature": [], "label": [], "score": [], "mentions": []}),
                                  headers=["feature", "label", "score", "mentions"], interactive=False,
                                  label="Matching features (mentions: your words in the label; without any, the nearest by meaning)")
        c.slots = []
        for i in range(MANUAL_SLOTS):
            with gr.Row():
                c.slots.append(gr.Number(label=f"Feature {i + 1}", precision=0, value=None))
                c.slots.append(gr.Slider(-1, 1, value=0, step=0.05, label="Weight", info="0.2-0.5 is usually plenty; near ±1 the text garbles"))
        c.mprompt = gr.Textbox(label="Prompt", value="Tell me about your weekend.")
        c.mbtn = gr.Button("Compare steered vs unsteered")
        with gr.Row():
            c.msteer = gr.Textbox(label="Steered", lines=6)
            c.mplain = gr.Textbox(label="Unsteered", lines=6)


def autosteer_tab() -> SimpleNamespace:
    c = SimpleNamespace()
    with gr.Tab("Auto-steer"):
        gr.Markdown("Describe a behaviour in one line. The app finds SAE features of the model and tunes their weights "
                    "until answers show the behaviour, then checks the result on questions it never saw.")
        with gr.Row():
            with gr.Column(scale=2):
                _run_settings(c)
            with gr.Column(scale=3):
                _run_results(c)
        c.epoch_log = gr.Markdown(elem_id="epoch-log")
        _manual_mode(c)
    return c


def _kids_answers(k: SimpleNamespace) -> None:
    """The Kids' Q&A tab's right column: profile picker, question box, the two answers, votes."""
    k.profile = gr.Dropdown(profile_choices(), value=default_profile_choice(), label="Steering profile",
                            info="Curated profiles, plus the ones you learned on the Auto-steer tab (only you see those)",
                            allow_custom_value=True, elem_id="kids-profile")
    with gr.Row():
        k.about = gr.Markdown(kids.profile_about(default_profile_choice(), None), elem_id="kids-profile-about")
        k.download = gr.DownloadButton("Download this profile", value=kids.profile_download(default_profile_choice(), None),
                                       size="sm", elem_id="kids-profile-download")
    k.list = gr.JSON(visible=False, label="profiles")
    k.ask = gr.Textbox(label="Your question", placeholder="Why do cats purr?", elem_id="kids-question")
    k.btn = gr.Button("Ask", variant="primary", elem_id="kids-ask")
    k.notice = gr.Markdown(elem_id="kids-notice")
    with gr.Row():
        k.steer = gr.HTML(elem_id="kids-steered")
        k.plain = gr.HTML(elem_id="kids-plain")
    k.id = gr.Number(value=None, visible=False, precision=0, label="answer id")
    with gr.Row():
        k.vs = gr.Button("👍 Steered answer helped")
        k.vp = gr.Button("👍 Plain answer helped")
    k.vote = gr.Markdown(elem_id="kids-vote")
    k.voted = gr.State([])  # the answers this browser session voted on: one vote each
    gr.Markdown("### Recently asked")
    k.recent = gr.HTML(elem_id="kids-recent")


def kids_tab() -> SimpleNamespace:
    k = SimpleNamespace()
    with gr.Tab("Kids' Q&A"):
        gr.Markdown("## 🦉 Ask Owl\nCurious about something? Browse questions other kids asked, or ask your own. "
                    "You'll see the answer of the profile you pick (kid-friendly unless you choose another) next to the plain model's answer.")
        gr.Markdown("**What is this?** The same small AI model answers every question twice. The *steered* answer "
                    "(left) is nudged by the profile you pick, for example towards simple words a child can follow; the "
                    "*plain* answer (right) is the model on its own, so you can compare them. Both are checked for unsafe "
                    "content before they are shown, but not for truth: the model is very small and often gets facts wrong, "
                    "so check anything important with a grown-up.", elem_id="kids-about")
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Row():
                    k.query = gr.Textbox(label="Search questions", placeholder="dinosaurs, rain, money...", scale=3)
                    k.cat = gr.Dropdown(["All"], value="All", label="Category", scale=2)
                k.search = gr.Button("Search", size="sm")
                k.pick = gr.Radio([], label="Questions", elem_id="kids-questions")
            with gr.Column(scale=3):
                _kids_answers(k)
    return k


def _wire_autosteer(c: SimpleNamespace, k: SimpleNamespace, learned: gr.State) -> None:
    c.start.click(
        autosteer.start_autosteer,
        [c.behavior, c.prompts, c.epochs, c.n_feats, c.judge, c.optim, c.base_url, c.model, c.key, c.threshold, learned],
        [c.status, c.epoch_log, c.plot, c.feats, c.held, c.prof_json, c.prof_file, learned],
        api_name="autosteer", concurrency_id="autosteer", concurrency_limit=2,
    )
    c.stop.click(autosteer.stop_autosteer, None, c.status, api_name="stop", queue=False)
    c.use_btn.click(autosteer.use_in_kids, learned, [k.profile, c.status], api_name="use_profile")
    # This session's list (curated + its own learned profiles), also readable through the API.
    learned.change(kids_profiles, [learned, k.profile], [k.profile, k.list], api_name="kids_profiles_changed")
    k.profile.change(kids.profile_about, [k.profile, learned], k.about, api_name="kids_profile_about")
    k.profile.change(kids.download_button, [k.profile, learned], k.download, api_visibility="private")
    c.fbtn.click(autosteer.search_features, c.fquery, c.fresults, api_name="search_features")
    c.fquery.submit(autosteer.search_features, c.fquery, c.fresults, api_name="search_features_submit")
    c.mbtn.click(autosteer.compare_manual, [c.mprompt, *c.slots], [c.msteer, c.mplain], api_name="compare", concurrency_id="compare",
                 concurrency_limit=4)


def _wire_kids(k: SimpleNamespace, learned: gr.State) -> None:
    k.query.submit(kids.kids_browse, [k.query, k.cat], k.pick, api_name="kids_search")
    k.search.click(kids.kids_browse, [k.query, k.cat], k.pick, api_visibility="private")
    k.cat.change(kids.kids_browse, [k.query, k.cat], k.pick, api_name="kids_category")
    # On a phone the list sits above the question box: picking a question scrolls to it (in the browser).
    k.pick.change(lambda q: q or gr.update(), k.pick, k.ask, api_name="kids_pick", js=SCROLL_TO_QUESTION)
    ask_inputs, ask_outputs = [k.ask, k.profile, learned], [k.steer, k.plain, k.notice, k.id, k.recent]
    k.btn.click(kids.kids_answer, ask_inputs, ask_outputs, api_name="kids_answer", concurrency_id="kids", concurrency_limit=KIDS_CONCURRENCY)
    k.ask.submit(kids.kids_answer, ask_inputs, ask_outputs, api_name="kids_answer_submit", concurrency_id="kids",
                 concurrency_limit=KIDS_CONCURRENCY)
    for event in (k.btn.click, k.ask.submit):  # a new question clears the last vote's thanks
        event(lambda: "", None, k.vote, queue=False, api_visibility="private")
    # The button already holds the file (set when the profile changes): one click downloads it. The
    # API endpoint hands out a fresh copy.
    k.download.click(kids.profile_download, [k.profile, learned], k.download, api_name="kids_profile_download")
    k.vs.click(lambda i, v: kids.vote(i, "steered", v), [k.id, k.voted], [k.vote, k.voted, k.recent], api_name="vote_steered")
    k.vp.click(lambda i, v: kids.vote(i, "unsteered", v), [k.id, k.voted], [k.vote, k.voted, k.recent], api_name="vote_unsteered")


SCROLL_TO_QUESTION = """(q) => {
    if (q) document.getElementById("kids-question")?.scrollIntoView({behavior: "smooth", block: "center"});
    return q;
}"""


def _on_load():
    ds, _ = kids.questions()
    return gr.update(choices=["All", *categories(ds)]), kids.kids_browse("", "All"), kids.recent_html()


def build_app() -> gr.Blocks:
    with gr.Blocks(title="One-prompt SAE steering") as demo:
        gr.Markdown("# One-prompt steering with sparse-autoencoder features")
        # The profiles THIS browser session learned: name -> {profile, title, description}.
        # Session state: no other visitor ever sees them.
        learned = gr.State({})
        c = autosteer_tab()
        k = kids_tab()
        _wire_autosteer(c, k, learned)
        _wire_kids(k, learned)
        demo.load(_on_load, None, [k.cat, k.pick, k.recent], api_name="kids_load")
        lbtn = gr.Button("List profiles", visible=False)
        lbtn.click(lambda l: kids_profiles(l)[1], learned, k.list, api_name="kids_profiles")
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
