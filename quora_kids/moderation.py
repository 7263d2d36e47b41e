"""The LLM safety check: a moderation-style rubric over an OpenAI-compatible endpoint, with the
offline check (`safety.OfflineSafety`) as its fallback."""

from __future__ import annotations

import logging

from steering.llm import LLMError

from .safety import Kind, OfflineSafety, SafetyVerdict

log = logging.getLogger(__name__)


MODERATION_PROMPT = """You check text on a question-and-answer website for children aged 6-12.
Text type: {kind}.
Text: \"\"\"{text}\"\"\"

Refuse ("UNSAFE") if the text seeks or gives: violence or weapon instructions, self-harm, sexual content,
getting or using drugs or alcohol, dangerous stunts, hate or harassment, crime instructions, or contact
with strangers kept secret from parents. Hard topics that are fine for children to ask about (a pet or
grandparent dying, divorce, where babies come from, bullying, puberty basics, history of wars, what drugs
are and why they are harmful) are SAFE and should be answered kindly.
Reply with exactly one line: "SAFE" or "UNSAFE: <topic>: <short reason>"."""


class LLMSafety:
    """Moderation-style rubric over an OpenAI-compatible endpoint; offline check if it fails."""

    name = "llm"

    def __init__(self, client, fallback: OfflineSafety | None = None):
        self.client = client
        self.fallback = fallback

    def check(self, text: str, kind: Kind = "question") -> SafetyVerdict:
        try:
            reply = self.client.chat([{"role": "user", "content": MODERATION_PROMPT.format(kind=kind, text=text[:4000])}], max_tokens=60)
        except LLMError as exc:
            if self.fallback is None:
                raise
            log.warning("LLM safety check failed (%s); using the offline check", exc)
            return self.fallback.check(text, kind)
        first = reply.strip().splitlines()[0].strip()
        if first.upper().startswith("UNSAFE"):
            parts = [p.strip() for p in first.split(":", 2)]
            topic = parts[1] if len(parts) > 1 else ""
            return SafetyVerdict("refused", parts[2] if len(parts) > 2 else "flagged by the moderation model", topic, self.name)
        if first.upper().startswith("SAFE"):
            return SafetyVerdict("ok", "", "", self.name)
        if self.fallback is not None:
            log.warning("the moderation model gave no SAFE/UNSAFE verdict (%r); using the offline check", first[:60])
            return self.fallback.check(text, kind)
        return SafetyVerdict("refused", "the moderation model gave no clear verdict", "", self.name)

    def check_many(self, texts: list[str], kind: Kind = "question") -> list[SafetyVerdict]:
        return [self.check(t, kind) for t in texts]
