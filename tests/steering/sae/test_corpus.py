"""The SAE corpus from packaged text: WordNet glosses, fortunes, chat pairs, rendered in the chat
template; on small files in a temporary folder, so nothing depends on what Debian installed."""

import random

import pytest

from steering.sae import corpus
from steering.sae.corpus import (
    as_chat,
    build_texts,
    chat_text,
    fortunes,
    index_texts,
    seed_questions,
    wordnet_glosses,
)

# Two WordNet data lines (the real format: offset, lex file, type, word count in hex, words...).
NOUNS = (
    "  1 This software and database is being provided to you, the LICENSEE\n"
    "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which is perceived or known\n"
    "00002137 03 n 02 abstraction 0 abstract_entity 0 010 | a general concept formed by extracting common features\n"
)


@pytest.fixture()
def packaged(tmp_path, monkeypatch):
    """WordNet (nouns only; the other parts of speech are empty) and one fortunes file."""
    wordnet, fort = tmp_path / "wordnet", tmp_path / "fortunes"
    wordnet.mkdir(), fort.mkdir()
    (wordnet / "data.noun").write_text(NOUNS)
    for pos in ("verb", "adj", "adv"):
        (wordnet / f"data.{pos}").write_text("")
    (fort / "wisdom").write_text("A stitch in time saves nine, or so they say.\n%\nshort\n%\nLook before you leap, my friend, always.\n")
    (fort / "wisdom.dat").write_text("binary index")
    monkeypatch.setattr(corpus, "WORDNET_DIR", wordnet)
    monkeypatch.setattr(corpus, "FORTUNES_DIR", fort)
    monkeypatch.setattr(corpus, "chatterbot_pairs", lambda: iter([("What is AI?", "A field of science."), ("Hi", "Hello there.")]))


def test_wordnet_lines_become_words_and_gloss(packaged):
    assert list(wordnet_glosses()) == [
        "entity: that which is perceived or known",
        "abstraction, abstract entity: a general concept formed by extracting common features",
    ]
    assert list(wordnet_glosses(limit=1)) == ["entity: that which is perceived or known"]


def test_fortunes_skip_index_files_and_too_short_chunks(packaged):
    assert list(fortunes()) == ["A stitch in time saves nine, or so they say.", "Look before you leap, my friend, always."]


def test_chat_text_with_and_without_an_answer_and_a_system_prompt(tiny_tokenizer):
    ask = chat_text(tiny_tokenizer, "Why?")
    assert ask.endswith("<|im_start|>assistant\n") and "system" not in ask
    full = chat_text(tiny_tokenizer, "Why?", "Because.", system="Be kind.")
    assert full.startswith("<|im_start|>system\nBe kind.<|im_end|>") and full.rstrip().endswith("Because.<|im_end|>")


def test_as_chat_wraps_the_asked_fraction(tiny_tokenizer):
    texts = [f"word{i}: meaning {i}" for i in range(40)]
    assert as_chat(tiny_tokenizer, random.Random(0), texts, 0.0, gloss=True) == texts
    wrapped = as_chat(tiny_tokenizer, random.Random(0), texts, 1.0, gloss=True)
    assert all("<|im_start|>user" in t for t in wrapped)
    assert "Word3: meaning 3" in wrapped[3]  # the gloss becomes the answer, the word capitalised
    half = as_chat(tiny_tokenizer, random.Random(1), texts, 0.5, gloss=True)
    assert 5 < sum("<|im_start|>" in t for t in half) < 35


def test_build_texts_counts_every_source_and_shuffles_by_seed(packaged, tiny_tokenizer):
    answers = [{"question": "Why?", "answer": "Because.", "system": None}]
    texts, stats = build_texts(tiny_tokenizer, seed=3, self_answers=answers)
    assert {s.source: s.documents for s in stats} == {"wordnet": 2, "fortunes": 2, "chatterbot": 2, "self_answers": 1}
    assert len(texts) == 7 and sum(s.characters for s in stats) == sum(map(len, texts))
    assert build_texts(tiny_tokenizer, seed=3, self_answers=answers)[0] == texts
    assert sorted(build_texts(tiny_tokenizer, seed=4, self_answers=answers)[0]) == sorted(texts)


def test_index_texts_takes_at_most_per_source_from_each(packaged, tiny_tokenizer):
    texts = index_texts(tiny_tokenizer, seed=0, self_answers=[], per_source=1)
    assert len(texts) == 3  # one gloss, one fortune, one chat pair; no self answers


def test_seed_questions_are_fixed_by_the_seed(packaged):
    a, b = seed_questions(0, n_wordnet=5), seed_questions(0, n_wordnet=5)
    assert a == b and "What is AI?" in a and "Hi" not in a  # only chat questions that end with '?'
    # Each WordNet noun (first word of a gloss line) in one question template.
    assert len(a) == 3 and sum("entity" in q for q in a) == 1 and sum("abstraction" in q for q in a) == 1
    assert seed_questions(0, n_wordnet=1) != a
