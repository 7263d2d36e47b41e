"""The Kids' Q&A tab's handlers, without a server."""

import builtins

import pytest

from quora_kids.profiles import ProfileCatalog
from webapp import common, kids


def test_app_refuses_paths_without_opening_a_file(monkeypatch, tmp_path):
    """The app's handler, not only the catalog: a path never reaches the filesystem."""
    monkeypatch.setattr(common, "_catalog", ProfileCatalog())
    monkeypatch.setattr(kids, "service_for", lambda entry: pytest.fail("built a service for an unknown name"))
    monkeypatch.setattr(kids, "recent_html", lambda: "")
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    for name in ("/etc/passwd", "../../../../etc/hostname", "assets/profiles/kids.json"):
        *_, (steered, plain, notice, answer_id, _) = kids.kids_answer("Why is the sky blue?", name, {})  # a generator
        assert steered == plain == "" and answer_id is None and "no profile with that name" in notice
        assert "passwd" not in notice and "hostname" not in notice
    assert opened == []
    assert kids.profile_download("/etc/passwd", {}) is None and opened == []



def test_partial_answers_thin_out_when_many_are_written_at_once(monkeypatch):
    """Each partial update costs the server CPU that decoding needs: one visitor gets one every
    STREAM_EVERY_S, and the more answers are written at once, the rarer they get for each."""
    import time
    from types import SimpleNamespace

    from quora_kids.service import Partial, QuestionError

    assert kids.stream_interval(1) == kids.STREAM_EVERY_S and kids.stream_interval(8) == pytest.approx(8 / kids.STREAM_UPDATES_PER_S)
    seen = []

    class Writing:
        def stream(self, question):
            for i in range(25):
                time.sleep(0.02)
                seen.append(kids.live_streams.count)
                yield Partial(f"steered {i}", f"plain {i}")
            raise QuestionError("stopped")  # ends the answer early: the count must still go down

    monkeypatch.setattr(kids, "catalog", lambda: SimpleNamespace(resolve=lambda name, learned: SimpleNamespace(profile=None, title="x")))
    monkeypatch.setattr(kids, "service_for", lambda entry: Writing())
    monkeypatch.setattr(kids, "recent_html", lambda: "")
    alone = list(kids.kids_answer("Why?", "x", {}))
    others = [kids.live_streams.__enter__() for _ in range(19)]  # 19 other answers being written
    try:
        crowded = list(kids.kids_answer("Why?", "x", {}))
    finally:
        for s in others:
            s.__exit__(None, None, None)
    assert set(seen[:25]) == {1} and set(seen[25:]) == {20} and kids.live_streams.count == 0
    assert "stopped" in alone[-1][2] and "stopped" in crowded[-1][2]
    assert 2 <= len(alone) - 1 and len(crowded) - 1 == 1  # 0.5 s of writing: a few updates alone, only the first in a crowd of 20


def test_api_calls_with_missing_or_wrong_numbers_get_a_message_not_an_exception(monkeypatch):
    """Only the API can send these (the UI's sliders and fields cannot): each gets a sentence,
    before any model work."""
    from webapp import autosteer

    monkeypatch.setattr(autosteer, "runtime", lambda: pytest.fail("loaded the model for a malformed request"))
    steered, plain = autosteer.compare_manual("Why is the sky blue?", "abc", 0.5)
    assert steered.startswith("⚠️ A feature is a whole number") and plain == ""
    with pytest.raises(ValueError, match="must be numbers"):
        autosteer._new_run("Behave like a dog", "Hi", None, 5, "metric", "gradient", "", "", "", 7)
    monkeypatch.setattr(kids, "store", lambda: pytest.fail("opened the answer store for a malformed id"))
    assert kids.vote("abc", "steered")[0] == "That answer is gone."


def test_the_reading_badge_says_why_there_is_no_grade():
    from steering.metrics import readability

    assert kids.reading_badge(readability("The sun is a star."), "The sun is a star.").endswith("grade " + f"{readability('The sun is a star.').grade:.1f}")
    assert kids.reading_badge(readability("السماء زرقاء"), "السماء زرقاء") == "reading level: English only"
    assert kids.reading_badge(readability(""), "") == "reading level: not measured"


def test_a_question_in_another_language_gets_asked_for_english_not_sent_to_a_grown_up(monkeypatch):
    """The real offline check and refusal; the card's title and text say what to do."""
    from types import SimpleNamespace

    from quora_kids.safety import OfflineSafety
    from quora_kids.service import refused_answer

    checker = OfflineSafety()
    monkeypatch.setattr(kids, "catalog", lambda: SimpleNamespace(resolve=lambda name, learned: SimpleNamespace(profile=None, title="x")))
    monkeypatch.setattr(kids, "service_for", lambda entry: SimpleNamespace(stream=lambda q: iter([refused_answer(q, "x", checker.check(q))])))
    monkeypatch.setattr(kids, "recent_html", lambda: "")
    cards = {}
    for q in ("¿Por qué el cielo es azul?", "asdfgh", "how do i kill myself"):
        *_, (card, plain, notice, answer_id, _) = kids.kids_answer(q, "x", {})
        cards[q] = card
        assert plain == "" and answer_id is None and "not answered" in notice
    assert "English only" in cards["¿Por qué el cielo es azul?"] and "ask it in English" in cards["¿Por qué el cielo es azul?"]
    assert "<br>Por ahora solo sé leer preguntas en inglés" in cards["¿Por qué el cielo es azul?"]  # and in the child's language
    assert "couldn" in cards["asdfgh"] and "grown-up" not in cards["asdfgh"]
    assert "talk to a grown-up" in cards["how do i kill myself"]


def test_the_recent_list_shows_questions_as_typed_never_as_markdown_or_html(monkeypatch):
    from types import SimpleNamespace

    row = SimpleNamespace(question="**Why** do [cats](http://evil.example) <b>meow</b>?", helpful_steered=2, helpful_unsteered=0)
    monkeypatch.setattr(kids, "store", lambda: SimpleNamespace(recent=lambda n: [row]))
    html_out = kids.recent_html()
    assert "<a" not in html_out and "<b>" not in html_out and "&lt;b&gt;" in html_out
    assert "**Why** do [cats](http://evil.example)" in html_out  # shown as typed, in an HTML component (no Markdown)


def test_one_vote_per_answer_per_session(monkeypatch, tmp_path):
    from quora_kids.store import AnswerStore

    store = AnswerStore(tmp_path / "kids.db")
    answer_id = store.save("Why?", "kids", "Because.", "Because!", {}, profile_key="k")
    monkeypatch.setattr(kids, "store", lambda: store)
    msg, voted, recent = kids.vote(answer_id, "steered", [])
    assert msg == "Thanks! 1 person found the steered answer helpful." and voted == [answer_id] and "👍 1 / 0" in recent
    msg, voted, _ = kids.vote(answer_id, "unsteered", voted)
    assert msg.startswith("You already voted") and voted == [answer_id]
    msg, other_session, _ = kids.vote(answer_id, "unsteered", [])  # another browser session may vote too
    assert msg == "Thanks! 1 person found the plain answer helpful."
    assert kids.vote(None, "steered", [])[0] == "There is no model answer to vote on yet."


def test_the_download_button_already_holds_the_profile_file(monkeypatch, tmp_path):
    """One click downloads: the button's value is the file before any click; no file for the
    unsteered model, and the button hides."""
    monkeypatch.setattr(common, "_catalog", ProfileCatalog())
    monkeypatch.setattr(common, "USER_PROFILES", tmp_path)
    update = kids.download_button("kids", {})
    assert update["visible"] is True and update["value"].endswith("kids.json")
    assert update["value"].startswith(str(tmp_path)) and '"behavior"' in open(update["value"]).read()
    assert kids.download_button("(unsteered)", {}) == {"__type__": "update", "value": None, "visible": False}


def test_a_big_questions_note_shows_above_the_answers(monkeypatch):
    from types import SimpleNamespace

    from quora_kids.care import TELL_NOTE
    from quora_kids.safety import SafetyVerdict
    from quora_kids.service import Answer, AnswerSide
    from steering.metrics import readability

    side = AnswerSide("Tell a grown-up.", readability("Tell a grown-up."), SafetyVerdict("ok"))
    answer = Answer("someone online asked me for pictures", "kids", side, side, SafetyVerdict("ok"), 7, care=TELL_NOTE)
    monkeypatch.setattr(kids, "catalog", lambda: SimpleNamespace(resolve=lambda name, learned: SimpleNamespace(profile=None, title="x")))
    monkeypatch.setattr(kids, "service_for", lambda entry: SimpleNamespace(stream=lambda q: iter([answer])))
    monkeypatch.setattr(kids, "recent_html", lambda: "")
    *_, (steered, plain, notice, answer_id, _) = kids.kids_answer("someone online asked me for pictures", "x", {})
    assert notice == TELL_NOTE and answer_id == 7 and "Tell a grown-up." in steered


def test_an_answer_shows_its_bold_words_and_line_breaks_and_nothing_else_as_html():
    shown = kids.answer_html("Tips:\n1. **Be kind** to <b>others</b> ** not bold**")
    assert shown == "Tips:<br>1. <b>Be kind</b> to &lt;b&gt;others&lt;/b&gt; ** not bold**"
