"""Text metrics: degeneration, coherence, readability, sentence chunks, embedding similarity,
and perplexity under the tiny model."""

import math

import pytest

from steering import metrics
from steering.metrics import (
    Readability,
    coherence,
    degeneration,
    readability,
    relevance_similarities,
    sentence_chunks,
    similarities,
    syllables,
)

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
    prompts = ["Why is the sky blue?", "Dogs?", "Plants?"]
    answers = ["The sky is blue because of the light.", "", "Plants need water and sunlight to grow and dogs like bones."]
    batched = metrics.perplexities(tiny_engine, prompts, answers, system="Be brief.")
    monkeypatch.setattr(metrics, "PPL_BATCH", 1)
    single = metrics.perplexities(tiny_engine, prompts, answers, system="Be brief.")
    assert math.isinf(batched[1]) and math.isinf(single[1])
    for b, s in zip(batched, single):
        if not math.isinf(s):
            assert abs(b - s) / s < 1e-4


def test_readability_is_the_flesch_kincaid_formula():
    r = readability("The cat sat on the mat.")  # 6 words, 6 syllables, 1 sentence
    assert (r.words, r.sentences) == (6, 1)
    assert r.grade == round(0.39 * 6 + 11.8 * 1 - 15.59, 2)
    assert r.ease == round(206.835 - 1.015 * 6 - 84.6 * 1, 2)
    two = readability("The cat sat. The dog ran off!")
    assert two.sentences == 2 and two.words == 7


@pytest.mark.parametrize("grade, words, badge", [(2.9, 5, "easy (ages 6-8)"), (3.0, 5, "easy (ages 6-8)"), (5.5, 5, "ages 9-11"),
                                                 (9.0, 5, "ages 12-14"), (9.1, 5, "teen / adult"), (1.0, 0, "not measured")])
def test_badges_follow_the_grade(grade, words, badge):
    assert Readability(grade, 50.0, words, 1).badge == badge


def test_syllables_from_the_dictionary_and_a_fallback_for_unknown_words():
    assert syllables("banana") == 3 and syllables("cat") == 1 and syllables("Photosynthesis") == 5
    assert syllables("zzqx") >= 1  # not in the dictionary: hyphenation, never zero


def test_degeneration_counts_bigrams_and_compression():
    d = degeneration("one two one two one two one two one two one two one two one two one two one two one two")
    assert d.distinct2 == pytest.approx(2 / 21) and d.words == 22 and d.degenerate
    empty = degeneration("")
    assert (empty.compression, empty.distinct2, empty.rep4, empty.words) == (1.0, 1.0, 0.0, 0)


def test_similarities_are_cosines_and_empty_text_scores_zero():
    same, empty, other = similarities(["Dogs like bones.", "", "Dogs like bones."], ["Dogs like bones.", "Dogs like bones.", "Tax law in 1850."])
    assert same == pytest.approx(1.0, abs=1e-4) and empty == 0.0 and other < 0.5


def test_relevance_counts_an_answer_that_drifts_off_the_question():
    q = "How do plants grow?"
    on = "Plants grow from seeds. They need water and sunlight. Their roots take water from the soil. Leaves make food from light."
    drift = "Plants grow from seeds. They need water and sunlight. My uncle drives a red truck. He sells cars in the city."
    on_score, drift_score = relevance_similarities([on, drift], [q, q])
    assert drift_score < on_score


def test_perplexity_of_an_empty_answer_is_infinite_and_others_finite(tiny_engine):
    empty, text = metrics.perplexities(tiny_engine, ["Hi?", "Hi?"], ["", "Dogs like bones."])
    assert math.isinf(empty) and 1.0 < text < math.inf


@pytest.mark.parametrize("precision,tolerance", [("float32", 1e-4), ("bfloat16", 0.05)])
def test_fast_decoder_perplexities_match_the_reference_model(tiny_model, tiny_tokenizer, tiny_sae, precision, tolerance):
    # The judge scores with the fast decoder's weights when the engine has one (the default).
    import math

    from steering import metrics
    from steering.runtime.basis import SteeringBasis
    from steering.runtime.engine import SteeringEngine

    basis = SteeringBasis.from_sae(tiny_sae, layer=2, scale=8.0)
    ref = SteeringEngine(tiny_model, tiny_tokenizer, basis, decode="reference")
    fast = SteeringEngine(tiny_model, tiny_tokenizer, basis, decode=precision)
    assert fast.fast is not None and ref.fast is None
    # Three answers to one prompt share one run of it on the fast decoder (the judge's candidates).
    prompts = ["Why is the sky blue?", "Dogs?", "Plants?", "Why is the sky blue?", "Why is the sky blue?"]
    answers = ["The sky is blue because of the light.", "", "Plants need water and sunlight to grow and dogs like bones.",
               "Light.", "Blue light scatters more than red light in the air."]
    want = metrics.perplexities(ref, prompts, answers, system="Be brief.")
    got = metrics.perplexities(fast, prompts, answers, system="Be brief.")
    assert math.isinf(got[1])
    for g, w in zip(got, want):
        if not math.isinf(w):
            assert abs(g - w) / w < tolerance
    assert len({round(x, 3) for x in got if not math.isinf(x)}) == 4  # the rows are really scored apart
