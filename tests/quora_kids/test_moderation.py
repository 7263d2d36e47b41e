"""The LLM safety check over a fake OpenAI-compatible endpoint, and its fallback."""

from quora_kids.moderation import LLMSafety
from quora_kids.safety import SafetyVerdict


class Offline:
    """Stands in for the offline check: says which checker answered."""

    name = "offline"

    def check(self, text, kind="question"):
        return SafetyVerdict("ok", "", "", "offline")


def test_llm_safety_over_http_with_offline_fallback(fake_openai, llm_client):
    fake_openai.script = ["UNSAFE: weapons: asks how to build a weapon", "SAFE", (500, {"error": "x"}), "maybe?"]
    llm = LLMSafety(llm_client, Offline())
    v = llm.check("how to build a gun")
    assert not v.ok and v.topic == "weapons" and v.reason == "asks how to build a weapon" and v.checker == "llm"
    assert llm.check("Why is the sky blue?").ok
    assert llm.check("Why is the sky blue?").checker == "offline"  # HTTP 500 -> offline check
    assert llm.check("Why is the sky blue?").checker == "offline"  # no clear verdict -> offline check
    assert "children aged 6-12" in fake_openai.requests[0]["body"]["messages"][0]["content"]


def test_llm_safety_without_fallback_refuses_when_unclear(fake_openai, llm_client):
    fake_openai.script = ["I think it is fine"]
    assert LLMSafety(llm_client).check("hello").verdict == "refused"


def test_check_many_checks_each_text(fake_openai, llm_client):
    fake_openai.script = ["SAFE", "UNSAFE: crime: steals"]
    assert [v.ok for v in LLMSafety(llm_client).check_many(["a", "b"], "answer")] == [True, False]
    assert "Text type: answer." in fake_openai.requests[1]["body"]["messages"][0]["content"]
