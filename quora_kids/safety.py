"""Safety checks on questions (before answering) and answers (before showing), for children.

Offline: curated intent patterns plus embedding similarity to labelled unsafe and safe exemplars
(assets/safety/exemplars.jsonl): a text is unsafe when it is closer to unsafe exemplars than to
safe ones by a margin. Hard topics that are fine for children (a pet dying, divorce, where babies
come from, bullying) have safe exemplars, so they are answered. With an OpenAI-compatible
endpoint, an LLM applies a moderation rubric instead (falling back to the offline check).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)

EXEMPLARS = Path(__file__).resolve().parent.parent / "assets" / "safety" / "exemplars.jsonl"

Kind = Literal["question", "answer"]


@dataclass(frozen=True)
class SafetyVerdict:
    verdict: Literal["ok", "refused"]
    reason: str = ""
    topic: str = ""
    checker: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "reason": self.reason, "topic": self.topic, "checker": self.checker}


class SafetyChecker(Protocol):
    name: str

    def check(self, text: str, kind: Kind = "question") -> SafetyVerdict: ...


REFUSAL = (
    "That's a question to talk about with a grown-up you trust, like a parent, a teacher or a school "
    "counsellor. They can help you with it properly. Is there something else you'd like to know?"
)
REFUSAL_SELF_HARM = (
    "I'm really glad you asked someone. If you are thinking about hurting yourself, please tell a grown-up "
    "you trust right now, like a parent, a teacher or a school counsellor. You can also call a children's "
    "helpline. You matter, and people want to help you."
)
FALLBACK_ANSWER = (
    "Hmm, I couldn't find a good way to answer that one. A grown-up you trust, like a parent or a teacher, "
    "can help you find out!"
)


def refusal_for(verdict: SafetyVerdict) -> str:
    return REFUSAL_SELF_HARM if verdict.topic == "self_harm" else REFUSAL


# Intent patterns that are unsafe whatever the wording around them. Topic words alone ("drugs",
# "death", "war") are not here: children may ask about them and deserve an answer.
PATTERNS: list[tuple[str, str]] = [
    ("self_harm", r"\b(kill|hurt|cut|harm|starve)\s+(my ?self|myself)\b|\bsuicid\w*|\bend my life\b|\bwant to die\b|\b(make me|so i) (not|never) wake up\b"),
    ("violence_weapons", r"\b(make|build|buy|get|find)\b[\w\s']{0,30}\b(bomb|gun|explosive|weapon|knife to)\b|\bhow (do i|to|can i) (kill|stab|shoot|poison)\b"),
    ("sexual", r"\bporn\w*|\bnudes?\b|\bsext\w*|\bnaked (pictures?|photos?|pics?)\b|\bsex videos?\b"),
    ("drugs_alcohol", r"\b(get|getting) (drunk|high|stoned)\b|\b(buy|get|smoke|try|take)\b[\w\s]{0,15}\b(weed|cocaine|vodka|beer|vape|pills to get high)\b"),
    ("dangerous_acts", r"\bmix(ing)? bleach\b|\b(blackout|choking|tide pod) challenge\b"),
    ("crime", r"\bhow (do i|to|can i) (steal|shoplift|hack into|break into)\b"),
    ("privacy_grooming", r"\bmeet\b[\w\s]{0,30}\b(online|internet) (friend|stranger)\b[\w\s]{0,30}\b(secret|without (telling|my (mom|dad|parents)))"),
]
_COMPILED = [(topic, re.compile(p, re.I)) for topic, p in PATTERNS]


class OfflineSafety:
    """Patterns + nearest-exemplar margin on all-MiniLM-L6-v2 embeddings."""

    name = "offline"

    def __init__(self, exemplars: str | Path = EXEMPLARS, threshold: float = 0.45, margin: float = 0.04, k: int = 3):
        rows = [json.loads(line) for line in Path(exemplars).read_text(encoding="utf-8").splitlines() if line.strip()]
        self.unsafe = [r for r in rows if r["label"] == "unsafe"]
        self.safe = [r for r in rows if r["label"] != "unsafe"]
        if not self.unsafe or not self.safe:
            raise ValueError(f"{exemplars}: needs both unsafe and safe exemplars")
        self.threshold, self.margin, self.k = threshold, margin, k
        self._emb: tuple[np.ndarray, np.ndarray] | None = None
        self._lock = threading.Lock()

    def _embeddings(self):
        with self._lock:
            if self._emb is None:
                from steering.features import embed

                self._emb = (embed([r["text"] for r in self.unsafe]), embed([r["text"] for r in self.safe]))
            return self._emb

    def scores(self, texts: list[str]) -> list[tuple[float, float, str]]:
        """(mean top-k similarity to unsafe, to safe, nearest unsafe topic) per text."""
        from steering.features import embed

        unsafe, safe = self._embeddings()
        e = embed(texts)
        su, ss = e @ unsafe.T, e @ safe.T
        out = []
        for i in range(len(texts)):
            top_u = np.sort(su[i])[-self.k :].mean()
            top_s = np.sort(ss[i])[-self.k :].mean()
            out.append((float(top_u), float(top_s), self.unsafe[int(su[i].argmax())]["topic"]))
        return out

    def check(self, text: str, kind: Kind = "question") -> SafetyVerdict:
        return self.check_many([text], kind)[0]

    def check_many(self, texts: list[str], kind: Kind = "question") -> list[SafetyVerdict]:
        verdicts: list[SafetyVerdict | None] = []
        for t in texts:
            hit = next((topic for topic, rx in _COMPILED if rx.search(t)), None)
            verdicts.append(SafetyVerdict("refused", f"matches a blocked {hit.replace('_', ' ')} pattern", hit, self.name) if hit else None)
        todo = [i for i, v in enumerate(verdicts) if v is None and texts[i].strip()]
        if todo:
            # Answers are judged sentence by sentence: one unsafe instruction in a long answer counts.
            units = {i: _sentences(texts[i]) if kind == "answer" else [texts[i]] for i in todo}
            flat = [(i, u) for i in todo for u in units[i]]
            scored = self.scores([u for _, u in flat])
            worst: dict[int, tuple[float, float, str]] = {}
            for (i, _), s in zip(flat, scored):
                if i not in worst or (s[0] - s[1]) > (worst[i][0] - worst[i][1]):
                    worst[i] = s
            for i in todo:
                u, s, topic = worst[i]
                if u >= self.threshold and u - s >= self.margin:
                    verdicts[i] = SafetyVerdict("refused", f"close to unsafe examples about {topic.replace('_', ' ')} ({u:.2f} vs {s:.2f})", topic, self.name)
        return [v or SafetyVerdict("ok", "", "", self.name) for v in verdicts]


def _sentences(text: str) -> list[str]:
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text) if len(p.strip()) > 3]
    return parts or [text]


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
        from steering.llm import LLMError

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
            return self.fallback.check(text, kind)
        return SafetyVerdict("refused", "the moderation model gave no clear verdict", "", self.name)

    def check_many(self, texts: list[str], kind: Kind = "question") -> list[SafetyVerdict]:
        return [self.check(t, kind) for t in texts]
