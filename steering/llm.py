"""A small client for any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Configuration comes from arguments or OPENAI_BASE_URL / OPENAI_API_KEY / STEERING_LLM_MODEL.
Every failure becomes an `LLMError` with a one-line message; the API key is never printed.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import openai


class LLMError(RuntimeError):
    """The endpoint timed out, refused, or answered something unusable. `unreachable`: it did not
    answer at all (timeout, no connection), so calling it again soon is likely to fail the same way."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


@dataclass
class LLMClient:
    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout: float = 60.0
    max_retries: int = 1
    # After a timeout or a failed connection the endpoint is not asked again for COOL_DOWN_S:
    # every caller (retrieval's sub-queries, the judge, the optimiser, the safety check) gets the
    # same unreachable error at once instead of waiting out its own timeout.
    COOL_DOWN_S = 60.0
    _down_until: float = field(default=0.0, repr=False, compare=False)
    # A run's stop event (AutoSteer sets it: a client serves one run, as the app and the command
    # line make one per run): once it is set, a call in flight is abandoned at once (its thread
    # ends with the request's own timeout) and no new call is made.
    cancel: threading.Event | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls, base_url: str | None = None, model: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> LLMClient:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or ""
        if not base_url:
            raise LLMError("no LLM endpoint configured: pass --llm-base-url (and --llm-model) or set OPENAI_BASE_URL "
                           "(and OPENAI_API_KEY, STEERING_LLM_MODEL)")
        return cls(
            base_url=base_url,
            model=model or os.environ.get("STEERING_LLM_MODEL") or "gpt-4o-mini",
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "not-needed",
            timeout=timeout,
        )

    def _client(self):
        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries)

    def chat(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 512) -> str:
        if time.monotonic() < self._down_until:
            raise LLMError(f"the LLM endpoint {self.base_url} did not answer a moment ago (not asked again for {self.COOL_DOWN_S:g} s)",
                           unreachable=True)
        try:
            return self._chat_until_cancelled(messages, temperature, max_tokens)
        except LLMError as exc:
            if exc.unreachable:
                self._down_until = time.monotonic() + self.COOL_DOWN_S
            raise

    def _chat_until_cancelled(self, messages: list[dict], temperature: float, max_tokens: int) -> str:
        cancel = self.cancel
        if cancel is None:
            return self._chat(messages, temperature, max_tokens)
        if cancel.is_set():
            raise LLMError("stopped: the LLM endpoint was not asked")
        out: dict = {}

        def call():
            try:
                out["text"] = self._chat(messages, temperature, max_tokens)
            except BaseException as exc:  # re-raised in the caller
                out["error"] = exc

        worker = threading.Thread(target=call, name="llm-call", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
            if cancel.is_set() and worker.is_alive():
                raise LLMError("stopped while waiting for the LLM endpoint")
        if "error" in out:
            raise out["error"]
        return out["text"]

    def _chat(self, messages: list[dict], temperature: float, max_tokens: int) -> str:
        try:
            resp = self._client().chat.completions.create(
                model=self.model, messages=messages, temperature=temperature, max_tokens=max_tokens
            )
        except openai.APITimeoutError as exc:
            raise LLMError(f"the LLM endpoint {self.base_url} did not answer within {self.timeout:g} s", unreachable=True) from exc
        except openai.APIConnectionError as exc:
            raise LLMError(f"cannot reach the LLM endpoint {self.base_url}", unreachable=True) from exc
        except openai.APIStatusError as exc:
            raise LLMError(f"the LLM endpoint answered HTTP {exc.status_code}") from exc
        except openai.OpenAIError as exc:
            raise LLMError(f"the LLM endpoint failed: {type(exc).__name__}") from exc
        try:
            text = resp.choices[0].message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMError("the LLM endpoint's answer has no message") from exc
        if not text or not text.strip():
            raise LLMError("the LLM endpoint answered with empty text")
        return text.strip()


def explain_feature(client: LLMClient, record) -> str:
    """A one-line explanation of a latent from its top contexts and logit-lens tokens."""
    contexts = "\n".join(f"- {c}" for c in record.contexts[:8])
    prompt = (
        "Here are text snippets where one feature of a language model fires most strongly; the firing token is "
        "marked with \u00ab \u00bb.\n"
        f"{contexts}\n"
        f"Tokens it promotes: {', '.join(record.promoted[:10])}\n"
        "In at most 12 words, what concept does this feature represent? Answer with the description only."
    )
    text = client.chat([{"role": "user", "content": prompt}], max_tokens=40)
    return text.splitlines()[0].strip().strip('"')[:200]
