"""Answer service, store and question loading (tiny real engine, scripted safety checker)."""

import json
import threading

import pytest

from quora_kids.questions import QuestionSearch, QuestionSetError, categories, load_questions, read_question_file
from quora_kids.safety import FALLBACK_ANSWER, REFUSAL, SafetyVerdict
from quora_kids.service import AnswerService, QuestionError
from quora_kids.store import AnswerStore
from steering.artefacts.bind import make_profile


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


@pytest.mark.parametrize("q, msg", [("", "type a question"), ("   ", "type a question"), ("x" * 50_000, "very long")])
def test_bad_questions_get_clear_errors(service, q, msg):
    with pytest.raises(QuestionError, match=msg):
        service.answer(q)


def test_profile_for_another_sae_is_refused(tiny_runtime):
    from dataclasses import replace

    from steering.artefacts.profile import ProfileError

    prof = make_profile(tiny_runtime, "x", "b", {})
    prof.sae = replace(prof.sae, d_sae=999)
    with pytest.raises(ProfileError):
        AnswerService(tiny_runtime, prof, ScriptedSafety())


def test_store_round_trip_votes_and_recent(tmp_path):
    store = AnswerStore(tmp_path / "s.db")
    i = store.save("Why is the sky blue?", "kids", "Because!", "Rayleigh scattering.", {"x": 1})
    store.save("What is a dog?", "kids", "A pet.", "A canine.")
    store.save("why is the sky blue", "kids", "Because light!", "Scattering.")
    got = store.get(i)
    assert (got.question, got.steered, got.unsteered, got.details) == ("Why is the sky blue?", "Because!", "Rayleigh scattering.", {"x": 1})
    assert store.lookup("WHY is the sky blue?!", "kids").steered == "Because light!"
    assert store.lookup("Why is the sky blue?", "other") is None
    assert [r.question for r in store.recent(5)] == ["why is the sky blue", "What is a dog?"]
    assert store.vote(i, "steered") == 1 and store.vote(i, "steered") == 2 and store.vote(i, "unsteered") == 1
    with pytest.raises(KeyError):
        store.vote(9999, "steered")
    with pytest.raises(ValueError):
        store.vote(i, "both")


def test_concurrent_writes_from_two_threads_lose_nothing(tmp_path):
    store = AnswerStore(tmp_path / "c.db")
    ids = {"a": [], "b": []}
    target = store.save("seed", "p", "s", "u")

    def work(name):
        for n in range(100):
            ids[name].append(store.save(f"{name} question {n}", "p", "s", "u"))
            store.vote(target, "steered")

    threads = [threading.Thread(target=work, args=(k,)) for k in ids]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert store.count() == 201
    assert len(set(ids["a"]) | set(ids["b"])) == 200
    assert store.get(target).helpful_steered == 200


def test_default_question_set_loads_with_datasets():
    ds = load_questions()
    assert len(ds) >= 300
    assert len(categories(ds)) >= 10
    assert set(ds.column_names) >= {"id", "question", "category", "tags"}
    assert all(ds["tags"][i] for i in range(0, len(ds), 37))


def test_quora_pairs_layout_with_a_column_mapping(tmp_path):
    csv = tmp_path / "quora.csv"
    csv.write_text('id,qid1,qid2,question1,question2,is_duplicate\n0,1,2,"How do magnets work?","What makes magnets stick?",1\n1,3,4,"",x,0\n')
    ds = load_questions(csv, {"question": "question1"})
    assert ds["question"] == ["How do magnets work?"]
    assert ds["category"] == ["other"] and ds["id"] == ["0"]
    with pytest.raises(QuestionSetError, match="no question column"):
        load_questions(csv)


def test_parquet_jsonl_and_text_sources(tmp_path):
    import pandas as pd

    pd.DataFrame({"text": ["Why do cats purr?"], "topic": ["animals"], "tags": ["cats;sounds"]}).to_parquet(tmp_path / "q.parquet")
    ds = load_questions(tmp_path / "q.parquet", {"question": "text", "category": "topic"})
    assert ds[0]["category"] == "animals" and ds[0]["tags"] == ["cats", "sounds"]
    (tmp_path / "q.txt").write_text("Why is snow white?\n\nHow do fish breathe?\n")
    assert load_questions(tmp_path / "q.txt")["question"] == ["Why is snow white?", "How do fish breathe?"]
    with pytest.raises(QuestionSetError):
        load_questions(tmp_path / "q.doc")


def test_hub_dataset_needs_a_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(QuestionSetError, match="needs a network"):
        load_questions("quora-competitions/quora", {"question": "question1"})


def test_read_question_file_text_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("One?\n\nTwo?\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"question": "Three?"}) + "\n")
    assert read_question_file(tmp_path / "a.txt") == ["One?", "Two?"]
    assert read_question_file(tmp_path / "b.jsonl") == ["Three?"]
    (tmp_path / "c.jsonl").write_text('{"q": 1}\n')
    with pytest.raises(QuestionSetError, match="no 'question'"):
        read_question_file(tmp_path / "c.jsonl")


def test_question_search_finds_by_meaning_and_category():
    ds = load_questions()
    search = QuestionSearch(ds)
    hits = search.search("puppies and dogs", k=5)
    assert any("dog" in h.question.lower() or "pupp" in h.question.lower() for h in hits)
    assert all(h.category == "space" for h in search.search("", k=5, category="space"))
