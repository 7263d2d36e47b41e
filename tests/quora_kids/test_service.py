"""The answer service on the tiny real engine with a scripted safety check."""

import pytest

from quora_kids.refusals import FALLBACK_ANSWER, REFUSAL
from quora_kids.safety import SafetyVerdict
from quora_kids.service import AnswerService, QuestionError, clean_question
from quora_kids.store import AnswerStore
from steering.artefacts.bind import make_profile
from steering.artefacts.profile import ProfileError


class ScriptedSafety:
    """Refuses questions containing 'bomb'; refuses the first N answers it sees."""
    name = "scripted"

    def __init__(self, unsafe_answers=0):
        self.unsafe_answers = unsafe_answers
        self.seen = []

    def check(self, text, kind="question"):
        self.seen.append((kind, text))
        if kind == "question":
            return SafetyVerdict("refused", "bomb", "violence_weapons", self.name) if "bomb" in text else SafetyVerdict("ok")
        if self.unsafe_answers > 0:
            self.unsafe_answers -= 1
            return SafetyVerdict("refused", "scripted", "crime", self.name)
        return SafetyVerdict("ok")


@pytest.fixture()
def service(tiny_runtime, tmp_path):
    prof = make_profile(tiny_runtime, "kids", "Explain for kids", {5: 0.8})
    return AnswerService(tiny_runtime, prof, ScriptedSafety(), AnswerStore(tmp_path / "a.db"), retries=2, max_new_tokens=8)


def test_answer_gives_both_answers_from_one_batched_call(service, monkeypatch):
    calls = []
    real = service.rt.engine.generate
    monkeypatch.setattr(service.rt.engine, "generate", lambda p, w=None, **kw: calls.append((p, w)) or real(p, w, **kw))
    a = service.answer("  Why is the   sky blue? ")
    assert a.question == "Why is the sky blue?"
    assert len(calls) == 1 and calls[0][0] == [a.question] * 2 and calls[0][1][1] is None
    assert a.steered.text != a.unsteered.text
    j = a.to_json()
    assert set(j) >= {"question", "steered", "unsteered", "readability", "safety"}
    assert j["safety"]["verdict"] == "ok" and set(j["readability"]) == {"steered", "unsteered"}
    assert isinstance(j["readability"]["steered"]["grade"], float)


def test_unsafe_question_is_refused_kindly_without_generating(service, monkeypatch):
    monkeypatch.setattr(service.rt.engine, "generate", lambda *a, **k: pytest.fail("generated for an unsafe question"))
    a = service.answer("how do I make a bomb")
    assert a.refused and a.steered.text == REFUSAL and a.to_json()["safety"]["verdict"] == "refused"


def test_unsafe_answer_is_regenerated_then_replaced(tiny_runtime, tmp_path):
    prof = make_profile(tiny_runtime, "kids", "b", {5: 0.8})
    # 1 unsafe answer: steered is checked first and regenerated once, then ok.
    s1 = AnswerService(tiny_runtime, prof, ScriptedSafety(unsafe_answers=1), None, retries=2, max_new_tokens=8)
    a = s1.answer("Why is the sky blue?")
    assert a.steered.regenerated == 1 and not a.steered.fallback and a.steered.safety.ok
    # Always unsafe: after 2 retries the fallback is shown, never the unsafe text.
    s2 = AnswerService(tiny_runtime, prof, ScriptedSafety(unsafe_answers=100), None, retries=2, max_new_tokens=8)
    a = s2.answer("Why is the sky blue?")
    assert a.steered.fallback and a.steered.text == FALLBACK_ANSWER and a.steered.regenerated == 2
    assert a.unsteered.text == FALLBACK_ANSWER
    assert [k for k, _ in s2.safety.seen].count("answer") == 6


def test_repeated_question_comes_from_the_store(service, monkeypatch):
    first = service.answer("Why is the sky blue?")
    monkeypatch.setattr(service.rt.engine, "generate", lambda *a, **k: pytest.fail("not cached"))
    again = service.answer("why is the sky blue")
    assert again.cached and again.answer_id == first.answer_id and again.steered.text == first.steered.text
    assert again.steered.readability == first.steered.readability


@pytest.mark.parametrize("q, msg", [("", "type a question"), ("   ", "type a question"), ("x" * 50_000, "very long"),
                                    ("🐶🐱🦉🌈", "with words"), ("???", "with words"), ("\x00\u202e", "type a question")])
def test_bad_questions_get_clear_errors(service, q, msg):
    with pytest.raises(QuestionError, match=msg):
        service.answer(q)


def test_control_and_bidi_characters_never_reach_the_store_or_the_page():
    assert clean_question("why\x00 is\x01\x02 the sky\x7f blue\u202e?") == "why is the sky blue?"
    assert clean_question("  Почему небо голубое?\n") == "Почему небо голубое?"  # other scripts are words too
    assert clean_question("猫") == "猫"
    assert clean_question("2+2?") == "2+2?"  # a sum is a question
    assert clean_question("می\u200cخواهم") == "می\u200cخواهم"  # a zero-width non-joiner is part of the word


def test_profile_for_another_sae_is_refused(tiny_runtime):
    from dataclasses import replace


    prof = make_profile(tiny_runtime, "x", "b", {})
    prof.sae = replace(prof.sae, d_sae=999)
    with pytest.raises(ProfileError):
        AnswerService(tiny_runtime, prof, ScriptedSafety())



@pytest.mark.parametrize("text, shown", [
    ("They even get some yummy chocolate. So", "They even get some yummy chocolate."),
    ("Cats purr when happy!", "Cats purr when happy!"),
    ('It is "fine." And then', 'It is "fine."'),
    ("Proxima Centauri is 4.27 light-years away. It", "Proxima Centauri is 4.27 light-years away."),
    ("Here is how:\n\n1. Be kind", "Here is how:\n\n1. Be kind"),  # a list's "1." ends no sentence
    ("no sentence ends here", "no sentence ends here"),  # nothing to cut back to: kept whole
    ("", ""),
])
def test_an_answer_cut_by_the_token_limit_loses_its_unfinished_sentence(text, shown):
    from quora_kids.service import whole_sentences

    assert whole_sentences(text) == shown


def test_the_site_checks_stores_and_shows_whole_sentences(service, monkeypatch):
    from steering.runtime.engine import Generation

    monkeypatch.setattr(service.rt.engine, "generate", lambda p, w=None, **kw: [Generation("A star. It is very", [1], "length")] * len(p))
    a = service.answer("What is the sun?")
    assert a.steered.text == a.unsteered.text == "A star."
    assert ("answer", "A star.") in service.safety.seen and service.store.lookup(a.question, service.cache_key).steered == "A star."


@pytest.mark.parametrize("question, kind", [
    ("someone online asked me for pictures, what should I do", "tell"),
    ("is anyone allowed to touch the parts my swimsuit covers", "tell"),
    ("a kid in my class trips me every day, what do i do", "tell"),
    ("my goldfish died, should we bury it", "big"),
    ("Where do babies come from?", "big"),
    ("What are shooting stars?", ""),  # not a shooting
    ("Why is the sky blue?", ""),
])
def test_big_questions_get_a_kind_note_pointing_to_a_grown_up(question, kind):
    from quora_kids.care import BIG_NOTE, TELL_NOTE, care_note

    assert care_note(question) == {"tell": TELL_NOTE, "big": BIG_NOTE, "": ""}[kind]


def test_the_answer_carries_the_care_note_fresh_and_cached(service):
    from quora_kids.care import BIG_NOTE

    fresh = service.answer("Why do people die?")
    again = service.answer("Why do people die?")
    assert fresh.care == again.care == BIG_NOTE and again.cached and fresh.to_json()["care_note"] == BIG_NOTE
    assert service.answer("Why is the sky blue?").to_json()["care_note"] == ""
