"""The Kids' Q&A tab's handlers: browse and ask questions, both answers streamed then checked,
votes, the recent list, and the profile picker's text and download."""

from __future__ import annotations

import html
import re
import threading
import time
from collections import OrderedDict

import gradio as gr

from quora_kids.profiles import KIDS_BEHAVIOUR, UNSTEERED, ProfileEntry, UnknownProfile, content_key
from quora_kids.questions import QuestionSearch, load_questions
from quora_kids.safety import SafetyChecker
from quora_kids.service import AnswerService, Partial, QuestionError, default_safety
from quora_kids.store import AnswerStore
from steering.artefacts.bind import blank_profile
from steering.artefacts.profile import ProfileError
from steering.runtime.scheduler import INTERACTIVE, iterate_at

from .common import MAX_TEXT, catalog, private_profile_file, runtime

_services: OrderedDict[str, AnswerService] = OrderedDict()  # profile content key -> service
_services_lock = threading.Lock()
MAX_SERVICES = 32
# Partial answers go to one visitor at most every STREAM_EVERY_S, and to all visitors together at
# most STREAM_UPDATES_PER_S times a second: each update costs the server CPU that decoding needs
# (bench_load, 8 visitors, no auto-steer: 0.2 s each, 40 updates a second in all, gave 23-25
# answers a minute; 10 a second in all 27; 4 a second 30).
STREAM_EVERY_S = 0.2
STREAM_UPDATES_PER_S = 5.0


class _LiveStreams:
    """How many visitors' answers are being written now."""

    def __init__(self):
        self.count, self._lock = 0, threading.Lock()

    def __enter__(self):
        with self._lock:
            self.count += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self.count -= 1


live_streams = _LiveStreams()


def stream_interval(live: int) -> float:
    """Seconds between two partial updates to one visitor while `live` answers are written."""
    return max(STREAM_EVERY_S, live / STREAM_UPDATES_PER_S)


_questions = None
_search = None
_store: AnswerStore | None = None
_safety: SafetyChecker | None = None


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


def safety() -> SafetyChecker:
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


def download_button(choice, learned):
    """The Download button, holding the chosen profile's file already, so one click downloads it;
    hidden for the unsteered model (nothing to download)."""
    path = profile_download(choice, learned)
    return gr.update(value=path, visible=path is not None)


def profile_about(choice, learned) -> str:
    try:
        entry = catalog().resolve(choice, learned)
    except UnknownProfile as exc:
        return f"⚠️ {exc}"
    return f"**{html.escape(entry.title)}**: {html.escape(entry.description)}"


def kids_browse(query, category):
    _, search = questions()
    query = (query or "")[:MAX_TEXT].strip()
    hits = search.search(query, k=25, category=None if category in (None, "", "All") else category)
    # The search ranks by meaning, so it always lists something: the label says these are the
    # closest questions, not matches.
    label = f"Questions closest to “{query[:60]}”" if query else "Questions"
    return gr.update(choices=[h.question for h in hits], value=None, label=label)


def reading_badge(r, text: str) -> str:
    """The card's reading-level badge; the grade is measured on English words only."""
    if r.words:
        return f"{r.badge} · grade {r.grade:.1f}"
    return "reading level: English only" if any(c.isalpha() for c in text) else "reading level: not measured"


def answer_html(text: str) -> str:
    """An answer as the card shows it: escaped, its **bold** words bold and its line breaks kept
    (the model writes Markdown-ish lists); nothing else of it is ever HTML."""
    escaped = html.escape(text)
    return re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"<b>\1</b>", escaped).replace("\n", "<br>")


def answer_card(title: str, side, tone: str) -> str:
    notice = ""
    if side.fallback and side.regenerated:
        notice = '<p class="notice">🛡️ The first answers did not pass the safety check, so a safe answer is shown instead.</p>'
    return (
        f'<div class="answer {tone}"><h3>{html.escape(title)}</h3>'
        f'<span class="badge">📖 {html.escape(reading_badge(side.readability, side.text))}</span>'
        f"<p>{answer_html(side.text) or '<i>(no answer)</i>'}</p>{notice}</div>"
    )


def writing_card(title: str, text: str, tone: str) -> str:
    """An answer card while the model is still writing it (not yet safety-checked)."""
    return (f'<div class="answer {tone} writing"><h3>{html.escape(title)}</h3><span class="badge">✍️ writing…</span>'
            f"<p>{answer_html(text)}</p></div>")


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
        with live_streams:
            for item in iterate_at(INTERACTIVE, svc.stream(question or "")):
                if isinstance(item, Partial):
                    if time.monotonic() - shown < stream_interval(live_streams.count):
                        continue
                    shown = time.monotonic()
                    yield (writing_card(steered_title, item.steered, "steered"), writing_card("Plain model answer", item.unsteered, "plain"),
                           "", None, gr.update())
                else:
                    ans = item
    except (UnknownProfile, QuestionError) as exc:
        yield "", "", f"⚠️ {exc}", None, recent_html()
        return
    except ProfileError as exc:
        yield "", "", f"⚠️ That profile cannot be used with this model: {exc}", None, recent_html()
        return
    if ans.refused:
        title = REFUSAL_TITLES.get(ans.question_safety.topic, "💛 Let's talk to a grown-up")
        card = f'<div class="answer refusal"><h3>{title}</h3><p>{answer_html(ans.steered.text)}</p></div>'
        yield card, "", "🛡️ This question was not answered by the model.", None, recent_html()
        return
    saved = "♻️ Someone asked this before: here are the answers saved then." if ans.cached else ""
    notice = "\n\n".join(n for n in (ans.care, saved) if n)  # a big question's note first
    yield (answer_card(steered_title, ans.steered, "steered"), answer_card("Plain model answer", ans.unsteered, "plain"),
           notice, ans.answer_id, recent_html())


# Questions the offline check cannot read are not a matter for a grown-up (quora_kids/language.py).
REFUSAL_TITLES = {"not_english": "🌍 English only, for now", "unreadable": "🤔 I couldn't read that"}


def vote(answer_id, which, voted=None):
    """(message, this session's voted answer ids, the recent list): one vote per answer per
    browser session (`voted` is the session's gr.State)."""
    voted = list(voted or [])
    if answer_id is None:
        return "There is no model answer to vote on yet.", voted, gr.update()
    try:
        answer_id = int(answer_id)
    except (TypeError, ValueError):
        return "That answer is gone.", voted, gr.update()
    if answer_id in voted:
        return "You already voted on this answer. Thank you!", voted, gr.update()
    try:
        n = store().vote(answer_id, which)
    except KeyError:
        return "That answer is gone.", voted, gr.update()
    side = "steered" if which == "steered" else "plain"
    return f"Thanks! {n} {'person' if n == 1 else 'people'} found the {side} answer helpful.", [*voted, answer_id], recent_html()


def recent_html() -> str:
    """The questions asked last, as plain text: HTML, not Markdown, so that what a visitor typed
    ("[cats](http://...)", "**why**") shows as typed and never becomes a link for the others."""
    items = store().recent(8)
    if not items:
        return "<p><i>No questions asked yet.</i></p>"
    rows = "".join(f"<li>{html.escape(r.question)} <small>(👍 {r.helpful_steered} / {r.helpful_unsteered})</small></li>" for r in items)
    return f'<ul class="recent">{rows}</ul>'

