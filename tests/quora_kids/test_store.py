"""The SQLite answer store: votes, recent questions, concurrent writes, old databases."""

import threading

import pytest

from quora_kids.store import AnswerStore


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






def test_old_database_gains_the_key_column_and_old_rows_are_not_served(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE answers (id INTEGER PRIMARY KEY AUTOINCREMENT, question TEXT NOT NULL, question_key TEXT NOT NULL, "
            "profile TEXT NOT NULL, steered TEXT NOT NULL, unsteered TEXT NOT NULL, details TEXT NOT NULL DEFAULT '{}', "
            "created_at REAL NOT NULL, helpful_steered INTEGER NOT NULL DEFAULT 0, helpful_unsteered INTEGER NOT NULL DEFAULT 0);"
            "INSERT INTO answers (question, question_key, profile, steered, unsteered, created_at) VALUES ('Hi?', 'hi', 'kids', 's', 'u', 0);"
        )
    store = AnswerStore(path)
    assert store.lookup("Hi?", "kids") is None and store.count() == 1
    i = store.save("Hi?", "kids", "s2", "u2", profile_key="abc")
    assert store.lookup("hi", "abc").id == i

