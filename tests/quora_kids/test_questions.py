"""Question sets (datasets, files, the hub) and question search."""

import json

import pytest

from quora_kids.questions import (
    QuestionSearch,
    QuestionSetError,
    categories,
    load_questions,
    read_question_file,
)


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
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    # Both libraries read the setting when first imported (another test may have imported them):
    # offline at once, instead of ~20 s of connection retries.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
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


def test_a_questions_file_that_is_not_text_or_not_jsonl_objects_is_refused(tmp_path):
    (tmp_path / "bin.txt").write_bytes(bytes(range(128, 256)))
    with pytest.raises(QuestionSetError, match="not UTF-8 text"):
        read_question_file(tmp_path / "bin.txt")
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    with pytest.raises(QuestionSetError, match=":1: no 'question'"):
        read_question_file(tmp_path / "list.jsonl")
    (tmp_path / "brackets.txt").write_text("[1, 2]\n")  # a plain text line may start with anything
    assert read_question_file(tmp_path / "brackets.txt") == ["[1, 2]"]
    with pytest.raises(QuestionSetError, match="is not a file"):
        read_question_file(tmp_path)


def test_question_search_finds_by_meaning_and_category():
    ds = load_questions()
    search = QuestionSearch(ds)
    hits = search.search("puppies and dogs", k=5)
    assert any("dog" in h.question.lower() or "pupp" in h.question.lower() for h in hits)
    assert all(h.category == "space" for h in search.search("", k=5, category="space"))



@pytest.mark.parametrize("name, data, says", [
    ("bad.jsonl", b"\xff\xfe not utf-8\n", "UnicodeDecodeError"),
    ("bad.csv", b"question\n\xff\xfeWhy\n", "UTF8"),
    ("torn.jsonl", b'{"question": "Why?"}\n{not json\n', "could not read it as jsonl"),
    ("bad.txt", b"\xff\xfeWhy\n", "UnicodeDecodeError"),
])
def test_a_question_set_that_cannot_be_read_is_one_clear_error(tmp_path, name, data, says):
    """Before: `datasets`' own DatasetGenerationError and a traceback from `quora_kids batch`."""
    (tmp_path / name).write_bytes(data)
    with pytest.raises(QuestionSetError, match=says) as info:
        load_questions(tmp_path / name)
    assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(QuestionSetError, match="is not a file"):
        load_questions(tmp_path)
