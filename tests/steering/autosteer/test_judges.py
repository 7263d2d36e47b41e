"""The metric judge on the tiny real engine; the LLM judge and the fallback judge over a fake endpoint."""

import pytest

from fakes import Given
from steering.autosteer.config import AutoSteerConfig
from steering.autosteer.judges import (
    Judge,
    JudgeContext,
    JudgeError,
    Judgement,
    MetricJudge,
    harmonic_mean,
)
from steering.autosteer.llm_judge import FallbackJudge, LLMJudge, parse_overall, parse_score
from steering.autosteer.loop import AutoSteer
from steering.autosteer.optimisers import NumericOptimiser
from steering.autosteer.results import EpochResult, FinalResult
from steering.autosteer.retrieve import FeatureCandidate
from steering.llm import LLMClient, LLMError


def test_harmonic_mean_is_zero_if_any_part_is_zero():
    assert harmonic_mean([1, 1, 0]) == 0
    assert harmonic_mean([1, 1, 1]) == 1
    assert 0 < harmonic_mean([1, 0.5, 0.5]) < 0.75


def test_metric_judge_scores_baseline_zero_and_behaviour_above(tiny_runtime):
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Behave like a dog", ["What do you like to eat?"], ["I like to eat pasta with tomato sauce."])
    same, doggy, garbage, empty = judge.judge_many(
        ctx, [["I like to eat pasta with tomato sauce."], ["Woof! As a dog I like to eat bones and kibble, woof woof!"], ["zx qj vv kk pp"], [""]]
    )
    # No behaviour but fluent and on the question: the rubric's 0-1 band, never more.
    assert same.score <= 1.0 and "concept" in same.critique
    assert doggy.parts["concept_similarity"] > 0.5  # (the likelihood half needs a real model)
    assert garbage.score < doggy.score or doggy.score == 0
    assert empty.score == 0
    assert 0 <= doggy.score <= 10


def test_metric_judge_scores_each_prompt_and_averages_them(tiny_runtime):
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Behave like a dog", ["What do you like to eat?", "Where do you sleep?"],
                       ["I like to eat pasta with tomato sauce.", "I sleep in a bed in my room."])
    (j,) = judge.judge_many(ctx, [["I like to eat pasta with tomato sauce.", "zx qj vv kk pp zx qj vv kk pp zx qj vv kk pp"]])
    assert len(j.per_prompt) == 2 and j.per_prompt[1] == 0  # the looping answer scores 0 on its own prompt
    assert j.score == pytest.approx(sum(j.per_prompt) / 2, abs=1e-3)


def model_reads_question_gain(monkeypatch, gain: float):
    """Fix the judge's model-based readings (a random tiny model has no opinion): every answer is
    exp(gain) times likelier per token after its question than after the neutral question, and
    equally likely with or without the behaviour as a system prompt."""
    import math

    from steering.autosteer import judges
    from steering.metrics import NEUTRAL_QUESTION

    def perplexities(engine, prompts, answers, system=None):
        return [math.inf if not a else 20.0 if p == NEUTRAL_QUESTION else 20.0 * math.exp(-gain) for p, a in zip(prompts, answers)]

    monkeypatch.setattr(judges, "perplexities", perplexities)


def test_metric_judge_relevance_is_zero_off_topic_and_full_near_the_baseline(tiny_runtime, monkeypatch):
    model_reads_question_gain(monkeypatch, 0.0)  # the answer owes nothing to the question
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Explain things in a way that children can understand", ["How do plants grow?"],
                       ["Plants grow from seeds. They take in water through their roots and use sunlight to make food."])
    same, off_topic = judge.judge_many(ctx, [ctx.baseline, ["My favourite football team won the cup yesterday after a penalty shootout."]])
    assert same.parts["relevance"] == 0.5  # on topic by the embeddings; the model's half says nothing
    assert off_topic.parts["relevance"] == 0.0 and off_topic.score == 0.0


def test_metric_judge_relevance_combines_the_embedding_and_model_readings(tiny_runtime, monkeypatch):
    # A new voice lowers embedding similarity to the question (here to 0.5x the unsteered
    # answer's: the embedding half gives 0); the model's reading (the answer follows from this
    # question, 0.4 nats per token over a neutral one) keeps the other half. Below 0.3x the answer
    # is about something else: 0 whatever the model reads.
    from steering.autosteer import judges

    model_reads_question_gain(monkeypatch, 0.4)
    monkeypatch.setattr(judges, "relevance_similarities", lambda answers, questions: [
        {"plain": 0.8, "voice": 0.4, "elsewhere": 0.2}[a] for a in answers])
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Talk like a pirate", ["How do plants grow?"], ["plain"])
    same, voice, elsewhere = judge.judge_many(ctx, [["plain"], ["voice"], ["elsewhere"]])
    assert same.parts["relevance"] == pytest.approx(1.0) and same.parts["question_pmi"] == pytest.approx(0.4)
    assert voice.parts["relevance"] == pytest.approx(0.5)
    assert elsewhere.parts["relevance"] == 0.0 and elsewhere.score == 0.0



LOOP = "The sky is made up of lots of things that make it blue. " * 5


def test_metric_judge_gives_zero_to_a_looping_answer(tiny_runtime):
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Explain things in a way that children can understand", ["Why is the sky blue?"],
                       ["The sky looks blue because air scatters blue sunlight more than red light."])
    [loop] = judge.judge_many(ctx, [[LOOP]])
    assert loop.score == 0.0 and loop.parts["coherence"] == 0.0 and loop.parts["degenerate"] == 1.0
    assert "degenerate" in loop.critique


def test_metric_judge_gives_zero_to_an_answer_that_leaves_the_question(tiny_runtime, monkeypatch):
    # The kids' profile's drift, quoted in the issue: brushing teeth -> breathing and "why I'm here".
    model_reads_question_gain(monkeypatch, -0.1)
    judge = MetricJudge(tiny_runtime.engine)
    ctx = JudgeContext("Explain things in a way that children can understand", ["Why do we have to brush our teeth?"],
                       ["We brush our teeth to remove food and plaque, which stops tooth decay and gum disease."])
    drift = ("Breathing is not just about breathing. It's also about the environment. So let me tell you something. "
             "You're right. That's why I'm here today.")
    [j] = judge.judge_many(ctx, [[drift]])
    assert j.parts["relevance"] == 0.0 and j.score == 0.0


def test_metric_judge_score_does_not_drop_when_concept_rises_from_zero():
    # The no-effect band is a floor: a hair of behaviour never scores below none at all.
    none = MetricJudge._parts("Plants grow from seeds.", "Plants grow from seeds.", 0.0, 0.0, 1.0, 0.4, 1.0, 8.0, False)
    hair = MetricJudge._parts("Plants grow from seeds.", "Plants grow from seeds.", 0.0, 1e-4, 1.0, 0.4, 1.0, 8.0, False)
    assert none["score"] == pytest.approx(0.1)
    assert hair["score"] >= none["score"]


CTX = JudgeContext("Behave like a dog", ["What is your favourite food?"], ["I like pizza."])


def test_judge_parses_the_score_and_sends_an_openai_request(fake_openai, llm_client):
    fake_openai.script = ["Woofs a lot, stays on topic. Could mention bones.\nScore: 7.5"]
    j = LLMJudge(llm_client).judge(CTX, ["Woof! Bones are my favourite!"])
    assert j.score == 7.5
    assert "bones" in j.critique.lower() and "Score" not in j.critique
    req = fake_openai.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "judge-model"
    assert "Behave like a dog" in req["body"]["messages"][0]["content"]
    assert req["auth"] == "Bearer sk-test-secret"


def test_llm_judge_gets_the_readers_rubric_and_scores_each_answer(fake_openai, llm_client):
    fake_openai.script = ["Answer 1: behaviour 2, question 2, fluency 2, overall 10. Barks and answers.\n"
                          "Answer 2: behaviour 0, question 2, fluency 2, overall 1. A plain answer.\nScore: 5.5"]
    ctx = JudgeContext("Behave like a dog", ["What is your favourite food?", "Why is the sky blue?"], ["I like pizza.", "Light scatters."])
    j = LLMJudge(llm_client).judge(ctx, ["Woof! Bones!", "Light scatters."])
    assert j.score == 5.5 and j.per_prompt == [10.0, 1.0]
    prompt = fake_openai.requests[0]["body"]["messages"][0]["content"]
    # the rubric the labelled answers were scored with, and each question with its own answer
    assert "a trace" in prompt and "fluent answer to the question without the behaviour scores 1" in prompt
    assert "Question 2: Why is the sky blue?\nAnswer 2: Light scatters." in prompt


@pytest.mark.parametrize("text, n, expected", [
    ("Answer 1: behaviour 1, question 2, fluency 2, overall 7\nAnswer 2: ... overall: 3.5", 2, [7.0, 3.5]),
    ("answer 2: overall 4\nANSWER 1: Overall **6**", 2, [6.0, 4.0]),  # any order, any case
    ("Answer 1: overall 7", 2, []),  # one answer has no score: none are trusted
    ("Answer 1: overall 7\nAnswer 1: overall 2", 1, []),  # two scores for one answer
    ("Answer 1: overall 12", 1, []),  # outside 0-10
    ("Answer 3: overall 5", 2, []),  # no such answer
    ("Answer 1: behaviour 2,\noverall 7", 1, []),  # the score must be on the answer's line
])
def test_parse_overall(text, n, expected):
    assert parse_overall(text, n) == expected


def test_judge_retries_when_no_score_then_succeeds(fake_openai, llm_client):
    fake_openai.script = ["Nice answer, very doggy.", "Score: 8"]
    assert LLMJudge(llm_client).judge(CTX, ["Woof"]).score == 8
    assert len(fake_openai.requests) == 2
    assert "Score: N" in fake_openai.requests[1]["body"]["messages"][-1]["content"]


def test_judge_without_a_score_fails_clearly_never_a_silent_zero(fake_openai, llm_client):
    fake_openai.script = ["I cannot decide.", "Still undecided. Score: eleven"]
    with pytest.raises(JudgeError, match="no 'Score: N'"):
        LLMJudge(llm_client).judge(CTX, ["Woof"])


def test_judge_http_500_is_a_clear_error(fake_openai, llm_client):
    fake_openai.script = [(500, {"error": {"message": "boom"}})]
    with pytest.raises(LLMError, match="HTTP 500"):
        LLMJudge(llm_client).judge(CTX, ["Woof"])


def test_judge_timeout_is_a_clear_error(fake_openai):
    client = LLMClient(base_url=fake_openai.base_url, model="m", api_key="k", timeout=0.5, max_retries=0)
    fake_openai.script = [("sleep", 2.0, "Score: 9")]
    with pytest.raises(LLMError, match="did not answer within 0.5 s"):
        LLMJudge(client).judge(CTX, ["Woof"])


@pytest.mark.parametrize(
    "text, score",
    [("Good.\nScore: 6", 6.0), ("score=3/10", 3.0), ("**Score:** 9.5", 9.5), ("Score: 4\nlater Score: 7", 7.0), ("no number", None), ("Score: 12", None)],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


class OneScoreJudge(Judge):
    """Offline stand-in for the metric judge: a fixed score (unit test of the fallback only)."""
    name = "metric"

    def judge_many(self, ctx, candidates):
        return [Judgement(4.0, "metric critique", {"concept": 0.4}) for _ in candidates]


def test_fallback_judge_uses_the_metric_judge_when_the_llm_answers_off_format(fake_openai, llm_client):
    # candidate 1: off-format twice (no score); candidate 2: a proper verdict
    fake_openai.script = ["Looks fine.", "Really fine.", "Very doggy. Score: 8"]
    judge = FallbackJudge(LLMJudge(llm_client), OneScoreJudge())
    a, b = judge.judge_many(CTX, [["Hello"], ["Woof"]])
    assert a.score == 4.0 and "llm judge failed" in a.critique and "metric judge" in a.critique and a.parts["fallback"] == 1.0
    assert b.score == 8.0 and "failed" not in b.critique
    assert judge.fallbacks == 1


def test_fallback_judge_survives_a_timeout(fake_openai):
    client = LLMClient(base_url=fake_openai.base_url, model="m", api_key="k", timeout=0.5, max_retries=0)
    fake_openai.script = [("sleep", 2.0, "Score: 9")]
    [j] = FallbackJudge(LLMJudge(client), OneScoreJudge()).judge_many(CTX, [["Woof"]])
    assert j.score == 4.0 and "did not answer" in j.critique


def test_a_hanging_endpoint_costs_one_timeout_not_one_per_answer(fake_openai):
    """An endpoint that never answers in time is asked once; the rest of the run is judged
    offline at once, and every critique says why (it used to cost a timeout per candidate:
    minutes of a frozen run)."""
    client = LLMClient(base_url=fake_openai.base_url, model="m", api_key="k", timeout=0.5, max_retries=0)
    client.COOL_DOWN_S = 0.0  # the client alone would ask again at once: the judge must not
    fake_openai.default = ("sleep", 2.0, "Score: 9")
    judge = FallbackJudge(LLMJudge(client), OneScoreJudge())
    verdicts = judge.judge_many(CTX, [["Woof"], ["Arf"], ["Hi"]]) + judge.judge_many(CTX, [["Bark"]])
    assert len(fake_openai.requests) == 1
    assert [j.score for j in verdicts] == [4.0] * 4 and judge.fallbacks == 4
    assert "did not answer within" in verdicts[0].critique
    assert all("not asked: it did not answer earlier in this run" in j.critique for j in verdicts[1:])
    assert judge.summary().startswith("the llm judge scored 0 of 4 answers, the metric judge the rest; not asked after")


def test_an_endpoint_answering_nonsense_is_not_asked_for_every_answer(fake_openai, llm_client):
    """An endpoint that answers, but never with a score ("banana"), is given up after
    OFF_FORMAT_LIMIT answers in a row (each asked twice): not two requests per answer all run."""
    fake_openai.default = "banana"
    judge = FallbackJudge(LLMJudge(llm_client), OneScoreJudge())
    verdicts = judge.judge_many(CTX, [["Woof"]] * 10)
    assert len(fake_openai.requests) == 2 * FallbackJudge.OFF_FORMAT_LIMIT and judge.fallbacks == 10
    assert "could not score 3 answers in a row" in verdicts[-1].critique and "banana" in verdicts[-1].critique


def test_an_off_format_verdict_does_not_stop_the_llm_judge(fake_openai, llm_client):
    fake_openai.script = ["No number.", "Still none.", "Good. Score: 7"]
    judge = FallbackJudge(LLMJudge(llm_client), OneScoreJudge())
    a, b = judge.judge_many(CTX, [["Woof"], ["Arf"]])
    assert a.score == 4.0 and b.score == 7.0 and not judge.down


def test_a_run_with_a_broken_llm_judge_still_ends_with_a_profile(fake_openai, llm_client, tiny_runtime):
    """Every verdict off-format: screening and epochs fall back to the metric judge, the run
    completes and saves weights (it used to end at epoch 1 with nothing saved)."""

    fake_openai.default = "I would rather not give a number."
    judge = FallbackJudge(LLMJudge(llm_client, retries=0), MetricJudge(tiny_runtime.engine))
    cfg = AutoSteerConfig(behavior="Behave like a dog", prompts=["Hi"], max_new_tokens=4, epochs=2, candidates=2, heldout=["Why?"])
    feats = [FeatureCandidate(5, "five", "manual", 1.0, 1.0), FeatureCandidate(9, "nine", "manual", -1.0, 1.0)]
    events = list(AutoSteer(tiny_runtime, cfg, judge, Given(lambda c, answers=None: NumericOptimiser(2, seed=0)), features=feats).run())
    epochs = [e for e in events if isinstance(e, EpochResult)]
    final = events[-1]
    assert len(epochs) == 2 and all("llm judge failed" in e.critique for e in epochs)
    assert isinstance(final, FinalResult) and final.stopped == "epochs" and final.heldout is not None
    assert judge.fallbacks >= 2 * 2 + 4  # every candidate of both epochs and the four held-out conditions
    assert any(n.startswith("the llm judge scored 0 of") for n in final.profile.provenance["notes"])  # the profile says so



def test_the_concept_reads_the_behaviour_against_a_neutral_system_prompt_not_none(tiny_runtime, monkeypatch):
    """An answer written under ANY system prompt is likelier after any system prompt: only what
    the behaviour's own system prompt adds over the neutral one counts as behaviour."""
    import math

    from steering.autosteer import judges

    # The plain answer: perplexity 20 with no system prompt, 10 after any. The "styled" answer, as
    # written under some system prompt, is much less likely without one (40) but no likelier
    # after the behaviour than after the neutral prompt (10); the dog answer is (5). Read against
    # no system prompt (the old judge), both gain log 2 over the plain answer and tie.
    def perplexities(engine, prompts, answers, system=None):
        if system is None:
            return [40.0 if a.startswith("Well") else 20.0 for a in answers]
        if system == judges.NEUTRAL_SYSTEM:
            return [10.0] * len(answers)
        return [5.0 if "woof" in a else 10.0 for a in answers]

    monkeypatch.setattr(judges, "perplexities", perplexities)
    j = judges.MetricJudge(tiny_runtime.engine)
    ctx = judges.JudgeContext("Behave like a dog", ["Why?"], ["Because the sky scatters blue light."])
    styled, dog = j.judge_many(ctx, [["Well, because the sky scatters blue light."], ["woof, because the sky scatters blue light."]])
    assert styled.parts["concept_pmi"] == pytest.approx(0.0)
    assert dog.parts["concept_pmi"] == pytest.approx(min(1.0, math.log(2) / judges.PMI_GAIN))
    monkeypatch.setattr(judges, "NEUTRAL_SYSTEM", None)  # the old reading cannot tell them apart
    old_styled, old_dog = judges.MetricJudge(tiny_runtime.engine).judge_many(ctx, [[styled_text] for styled_text in
                                                                                   ("Well, because the sky scatters blue light.", "woof, because the sky scatters blue light.")])
    assert old_styled.parts["concept_pmi"] == pytest.approx(old_dog.parts["concept_pmi"]) == pytest.approx(min(1.0, math.log(2) / judges.PMI_GAIN))
