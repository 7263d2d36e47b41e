"""Degeneration measures, readability and sentence chunks (no model)."""

import pytest

from steering.metrics import coherence, degeneration, readability, sentence_chunks

PLAIN = "Plants grow from seeds. They drink water through their roots and use sunlight to make food."


def test_a_looping_answer_is_degenerate_and_a_plain_one_is_not():
    loop = "The sky is made up of lots of things that make it blue. " * 4
    d = degeneration(loop)
    assert d.degenerate and d.rep4 > 0.5 and d.repeated_sentences > 0.5 and d.compression > 2.5
    assert not degeneration(PLAIN).degenerate and degeneration(PLAIN).rep4 == 0.0


@pytest.mark.parametrize("text", ["", "m m m m m m m m m m m m m m m m m m m m m m m m m", "child child child child child child child child child child child child"])
def test_empty_and_stutter_are_degenerate(text):
    assert degeneration(text).degenerate
    assert coherence(text, PLAIN) == 0.0


def test_coherence_is_relative_to_the_unsteered_answer():
    assert coherence(PLAIN, PLAIN) == 1.0
    somewhat = PLAIN + " They drink water through their roots, they drink water and grow."
    assert 0.0 < coherence(somewhat, PLAIN) < 1.0


def test_sentence_chunks_pair_sentences():
    text = "One. Two! Three? Four. Five."
    assert sentence_chunks(text) == ["One. Two!", "Three? Four.", "Five."]
    assert sentence_chunks("no end mark") == ["no end mark"]


def test_readability_offline_grades_simple_text_lower():
    hard = "Photosynthesis constitutes the biochemical transformation of electromagnetic radiation into chemical energy."
    assert readability("The cat sat on the mat. It was warm.").grade < readability(hard).grade
    assert readability("").words == 0


def test_batched_perplexities_equal_one_at_a_time(tiny_engine, monkeypatch):
    import math

    from steering import metrics

    prompts = ["Why is the sky blue?", "Dogs?", "Plants?"]
    answers = ["The sky is blue because of the light.", "", "Plants need water and sunlight to grow and dogs like bones."]
    batched = metrics.perplexities(tiny_engine, prompts, answers, system="Be brief.")
    monkeypatch.setattr(metrics, "PPL_BATCH", 1)
    single = metrics.perplexities(tiny_engine, prompts, answers, system="Be brief.")
    assert math.isinf(batched[1]) and math.isinf(single[1])
    for b, s in zip(batched, single):
        if not math.isinf(s):
            assert abs(b - s) / s < 1e-4
