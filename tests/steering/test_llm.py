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


def test_an_endpoint_that_did_not_answer_is_not_asked_again_for_a_while(fake_openai):
    client = LLMClient(base_url=fake_openai.base_url, model="m", api_key="k", timeout=0.5, max_retries=0)
    fake_openai.script = [("sleep", 2.0, "late"), "on time"]
    with pytest.raises(LLMError, match="did not answer within") as first:
        client.chat([{"role": "user", "content": "hi"}])
    with pytest.raises(LLMError, match="did not answer a moment ago") as second:
        client.chat([{"role": "user", "content": "hi"}])
    assert first.value.unreachable and second.value.unreachable and len(fake_openai.requests) == 1
    client._down_until = 0.0  # the cool-down over: asked again
    assert client.chat([{"role": "user", "content": "hi"}]) == "on time"


def test_stop_abandons_a_call_in_flight_and_asks_no_more(fake_openai):
    """A real HTTP exchange with an endpoint that answers after 5 s (timeout 30 s): the stop event,
    set 0.3 s in, ends the wait at once; a set event makes no request at all."""
    import threading
    import time

    stop = threading.Event()
    client = LLMClient(base_url=fake_openai.base_url, model="m", api_key="k", timeout=30, max_retries=0, cancel=stop)
    fake_openai.script = [("sleep", 5.0, "late"), "never asked"]
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="stopped while waiting") as info:
        client.chat([{"role": "user", "content": "hi"}])
    assert time.monotonic() - t0 < 2.0 and not info.value.unreachable
    with pytest.raises(LLMError, match="not asked"):
        client.chat([{"role": "user", "content": "hi"}])
    assert len(fake_openai.requests) == 1
    stop.clear()
    fake_openai.script = ["now"]
    assert client.chat([{"role": "user", "content": "hi"}]) == "now"  # errors and answers still come back through the thread


def test_api_key_is_not_in_the_repr(llm_client):
    assert "sk-test-secret" not in repr(llm_client)


def test_llm_feature_explanation(fake_openai, llm_client):
    fake_openai.script = ['"Dogs and puppies as pets"\nextra line']
    rec = FeatureRecord(3, "", "offline", 1.0, 0.1, ["my \u00abdog\u00bb barks"], ["bark", "puppy"])
    assert explain_feature(llm_client, rec) == "Dogs and puppies as pets"
    assert "\u00abdog\u00bb" in fake_openai.requests[0]["body"]["messages"][0]["content"]

