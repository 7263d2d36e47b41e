"""The OpenAI-compatible client: errors, configuration, the key never shown; feature explanations."""

import pytest

from steering.llm import LLMClient, LLMError, explain_feature
from steering.sae.index import FeatureRecord


def test_unreachable_endpoint_and_missing_configuration(monkeypatch):
    client = LLMClient(base_url="http://127.0.0.1:9/v1", model="m", api_key="k", timeout=1, max_retries=0)
    with pytest.raises(LLMError, match="cannot reach"):
        client.chat([{"role": "user", "content": "hi"}])
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="OPENAI_BASE_URL"):
        LLMClient.from_env()


def test_api_key_is_not_in_the_repr(llm_client):
    assert "sk-test-secret" not in repr(llm_client)


def test_llm_feature_explanation(fake_openai, llm_client):
    fake_openai.script = ['"Dogs and puppies as pets"\nextra line']
    rec = FeatureRecord(3, "", "offline", 1.0, 0.1, ["my \u00abdog\u00bb barks"], ["bark", "puppy"])
    assert explain_feature(llm_client, rec) == "Dogs and puppies as pets"
    assert "\u00abdog\u00bb" in fake_openai.requests[0]["body"]["messages"][0]["content"]

