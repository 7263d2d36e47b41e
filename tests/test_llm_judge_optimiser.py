"""LLM judge, optimiser, retrieval queries and client errors over real HTTP to a local server."""

import pytest

from fakes import Given
from steering.autosteer.judges import Judge, JudgeContext, JudgeError, LLMJudge, parse_score
from steering.llm import LLMClient, LLMError, explain_feature
from steering.autosteer.optimisers import LLMOptimiser, parse_weights, Trial

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


def test_unreachable_endpoint_and_missing_configuration(monkeypatch):
    client = LLMClient(base_url="http://127.0.0.1:9/v1", model="m", api_key="k", timeout=1, max_retries=0)
    with pytest.raises(LLMError, match="cannot reach"):
        client.chat([{"role": "user", "content": "hi"}])
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="OPENAI_BASE_URL"):
        LLMClient.from_env()


def test_api_key_is_not_in_the_repr(llm_client):
    assert "sk-test-secret" not in repr(llm_client)


@pytest.mark.parametrize(
    "text, score",
    [("Good.\nScore: 6", 6.0), ("score=3/10", 3.0), ("**Score:** 9.5", 9.5), ("Score: 4\nlater Score: 7", 7.0), ("no number", None), ("Score: 12", None)],
)
def test_parse_score(text, score):
    assert parse_score(text) == score


def test_optimiser_first_proposal_is_the_initial_then_asks_the_llm(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "Behave like a dog", ["dogs", "barking", "formal tone"], initial=[0.5, 0.5, -0.5])
    assert opt.ask(1) == [[0.5, 0.5, -0.5]]
    assert fake_openai.requests == []
    opt.tell([Trial([0.5, 0.5, -0.5], 4.0, "not doggy enough", ("Hello.",))])
    fake_openai.script = ["More barking needed.\nWeights: [0.8, 1.7, -0.3]"]
    [w] = opt.ask(1)
    assert w == [0.8, 1.0, -0.3]  # clamped to [-1, 1]
    prompt = fake_openai.requests[0]["body"]["messages"][0]["content"]
    assert "not doggy enough" in prompt and "formal tone" in prompt


def test_optimiser_avoids_repeats_and_reasks_on_unparseable(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "b", ["a", "b"], initial=[0.0, 0.0])
    opt.ask(1)
    opt.tell([Trial([0.2, 0.4], 3.0, "c")])
    fake_openai.script = ["I think so.", "Weights: [0.2, 0.4]"]
    [w] = opt.ask(1)
    assert len(fake_openai.requests) == 2
    assert w != [0.2, 0.4] and all(-1 <= x <= 1 for x in w)


def test_optimiser_fails_clearly_when_the_llm_never_gives_weights(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "b", ["a", "b"], initial=[0.0, 0.0])
    opt.ask(1)
    opt.tell([Trial([0.0, 0.0], 1.0)])
    fake_openai.script = ["no idea", "still none"]
    with pytest.raises(LLMError, match="did not give 2 weights"):
        opt.ask(1)


def test_optimiser_history_is_bounded_but_keeps_the_best(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "b", ["a"], max_history=3)
    opt.tell([Trial([0.9], 9.0, "best one")] + [Trial([i / 20], float(i % 3), f"c{i}") for i in range(10)])
    shown = opt.visible_history()
    assert len(shown) == 3
    assert shown[0].critique == "best one"
    fake_openai.script = ["Weights: [0.1]"]
    opt.ask(1)
    prompt = fake_openai.requests[0]["body"]["messages"][0]["content"]
    assert "best one" in prompt and "c9" in prompt and "c2" not in prompt


def test_optimiser_tries_its_initial_first_even_after_observing_other_trials(fake_openai, llm_client):
    opt = LLMOptimiser(llm_client, "b", ["a", "b"], initial=[0.2, 0.0])
    opt.observe([Trial([0.3, 0.0], 4.0, "a alone"), Trial([0.0, -0.3], 2.0, "b alone")])
    assert opt.ask(1) == [[0.2, 0.0]] and not fake_openai.requests
    fake_openai.script = ["Weights: [0.4, -0.1]"]
    assert opt.ask(1) == [[0.4, -0.1]]
    prompt = fake_openai.requests[0]["body"]["messages"][0]["content"]
    assert "a alone" in prompt and "b alone" in prompt


@pytest.mark.parametrize(
    "text, k, expected",
    [("Weights: [0.1, -0.2]", 2, [0.1, -0.2]), ("[0.3, 0.3] then Weights: [1, -1]", 2, [1.0, -1.0]), ("Weights: [0.1]", 2, None), ("[a, b]", 2, None)],
)
def test_parse_weights(text, k, expected):
    assert parse_weights(text, k) == expected


def test_llm_feature_explanation(fake_openai, llm_client):
    from steering.sae.index import FeatureRecord

    fake_openai.script = ['"Dogs and puppies as pets"\nextra line']
    rec = FeatureRecord(3, "", "offline", 1.0, 0.1, ["my \u00abdog\u00bb barks"], ["bark", "puppy"])
    assert explain_feature(llm_client, rec) == "Dogs and puppies as pets"
    assert "\u00abdog\u00bb" in fake_openai.requests[0]["body"]["messages"][0]["content"]


def test_llm_retrieval_queries_add_opposite_features(fake_openai, llm_client, tiny_runtime):
    import numpy as np

    from steering.runtime.embeddings import embed
    from steering.sae.index import FeatureIndex, FeatureRecord
    from steering.autosteer.retrieve import retrieve

    labels = ["dogs and puppies", "barking and howling", "formal business letters", "cats", "the weather"]
    idx = FeatureIndex([FeatureRecord(i, l, "offline", 1.0, 0.1) for i, l in enumerate(labels)], embed(labels), {})
    fake_openai.script = ['{"add": ["barking"], "suppress": ["formal business writing"]}']
    cands = retrieve(None, idx, "Behave like a dog", [], k=4, client=llm_client)
    by_index = {c.index: c for c in cands}
    assert by_index[2].source == "llm-opposite" and by_index[2].sign == -1.0
    assert by_index[1].source in ("llm", "semantic")
    assert cands[0].source == "semantic" and cands[0].index in (0, 1)


def test_llm_retrieval_failure_falls_back_to_offline_sources(fake_openai, llm_client):
    import numpy as np

    from steering.runtime.embeddings import embed
    from steering.sae.index import FeatureIndex, FeatureRecord
    from steering.autosteer.retrieve import retrieve

    labels = ["dogs and puppies", "cats"]
    idx = FeatureIndex([FeatureRecord(i, l, "offline", 1.0, 0.1) for i, l in enumerate(labels)], embed(labels), {})
    fake_openai.script = [(500, {"error": "x"})]
    cands = retrieve(None, idx, "Behave like a dog", [], k=2, client=llm_client)
    assert [c.source for c in cands] == ["semantic", "semantic"]


class OneScoreJudge(Judge):
    """Offline stand-in for the metric judge: a fixed score (unit test of the fallback only)."""

    name = "metric"

    def judge_many(self, ctx, candidates):
        from steering.autosteer.judges import Judgement

        return [Judgement(4.0, "metric critique", {"concept": 0.4}) for _ in candidates]


def test_fallback_judge_uses_the_metric_judge_when_the_llm_answers_off_format(fake_openai, llm_client):
    from steering.autosteer.judges import FallbackJudge

    # candidate 1: off-format twice (no score); candidate 2: a proper verdict
    fake_openai.script = ["Looks fine.", "Really fine.", "Very doggy. Score: 8"]
    judge = FallbackJudge(LLMJudge(llm_client), OneScoreJudge())
    a, b = judge.judge_many(CTX, [["Hello"], ["Woof"]])
    assert a.score == 4.0 and "llm judge failed" in a.critique and "metric judge" in a.critique and a.parts["fallback"] == 1.0
    assert b.score == 8.0 and "failed" not in b.critique
    assert judge.fallbacks == 1


def test_fallback_judge_survives_a_timeout(fake_openai):
    from steering.autosteer.judges import FallbackJudge

    client = LLMClient(base_url=fake_openai.base_url, model="m", api_key="k", timeout=0.5, max_retries=0)
    fake_openai.script = [("sleep", 2.0, "Score: 9")]
    [j] = FallbackJudge(LLMJudge(client), OneScoreJudge()).judge_many(CTX, [["Woof"]])
    assert j.score == 4.0 and "did not answer" in j.critique


def test_a_run_with_a_broken_llm_judge_still_ends_with_a_profile(fake_openai, llm_client, tiny_runtime):
    """Every verdict off-format: screening and epochs fall back to the metric judge, the run
    completes and saves weights (it used to end at epoch 1 with nothing saved)."""
    from steering.autosteer.config import AutoSteerConfig
    from steering.autosteer.loop import AutoSteer
    from steering.autosteer.results import EpochResult, FinalResult
    from steering.autosteer.judges import FallbackJudge, MetricJudge
    from steering.autosteer.optimisers import NumericOptimiser
    from steering.autosteer.retrieve import FeatureCandidate

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
