"""Safety checks on questions (before answering) and answers (before showing), for children.

Offline: curated intent patterns plus a classifier on sentence embeddings trained on labelled
unsafe and safe exemplars (assets/safety/exemplars*.jsonl). Hard topics that are fine for children (a pet dying, divorce, where babies
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
from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np

log = logging.getLogger(__name__)

SAFETY_DIR = Path(__file__).resolve().parent.parent / "assets" / "safety"
EXEMPLAR_FILES = (SAFETY_DIR / "exemplars.jsonl", SAFETY_DIR / "exemplars_extra.jsonl")
# The site's own question set: ordinary "how do I..." questions, so the classifier does not learn
# that asking how to do something is unsafe in itself.
SAFE_QUESTIONS = SAFETY_DIR.parent / "questions" / "kids_questions.jsonl"

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
    ("self_harm", r"\b(kill|hurt|cut|harm|starve)\s+(my ?self|myself)\b|\bcommit suicide\b|\bend my life\b|\bwant to die\b|\b(make me|so i) (not|never) wake up\b"),
    ("violence_weapons", r"\b(make|build|buy|get|find)\b[\w\s']{0,30}\b(bomb|gun|explosive|weapon|knife to)\b|\bhow (do i|to|can i) (kill|stab|shoot|poison)\b"),
    ("sexual", r"\bporn\w*|\bnudes?\b|\bsext\w*|\bnaked (pictures?|photos?|pics?)\b|\bsex videos?\b"),
    ("drugs_alcohol", r"\b(get|getting) (drunk|high|stoned)\b|\b(buy|get|smoke|try|take)\b[\w\s]{0,15}\b(weed|cocaine|vodka|beer|vape|pills to get high)\b"),
    ("dangerous_acts", r"\bmix(ing)? bleach\b|\b(blackout|choking|tide pod) challenge\b"),
    ("crime", r"\bhow (do i|to|can i) (steal|shoplift|hack into|break into)\b"),
    ("privacy_grooming", r"\bmeet\b[\w\s]{0,30}\b(online|internet) (friend|stranger)\b[\w\s]{0,30}\b(secret|without (telling|my (mom|dad|parents)))"),
]
_COMPILED = [(topic, re.compile(p, re.I)) for topic, p in PATTERNS]


class OfflineSafety:
    """Intent patterns, then a logistic-regression classifier on all-MiniLM-L6-v2 embeddings trained
    on the labelled exemplars. Its threshold is set by cross-validation on the exemplars alone (to
    refuse `target_recall` of unsafe ones), never on a test set."""

    name = "offline"

    def __init__(self, exemplars: Sequence[str | Path] = EXEMPLAR_FILES, safe_questions: str | Path | None = SAFE_QUESTIONS,
                 target_recall: float = 0.96, seed: int = 0):
        rows = []
        for path in exemplars:
            path = Path(path)
            if path.is_file():
                rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if safe_questions is not None and Path(safe_questions).is_file():
            rows += [
                {"text": json.loads(line)["question"], "label": "safe", "topic": "everyday"}
                for line in Path(safe_questions).read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        self.rows = rows
        self.labels = np.array([r["label"] == "unsafe" for r in rows])
        if self.labels.all() or not self.labels.any():
            raise ValueError("safety exemplars need both unsafe and safe examples")
        self.target_recall, self.seed = target_recall, seed
        self._model = None
        self._lock = threading.Lock()

    def _fit(self):
        with self._lock:
            if self._model is None:
                from sklearn.linear_model import LogisticRegression
                from sklearn.model_selection import StratifiedKFold, cross_val_predict

                from steering.features import embed

                x = embed([r["text"] for r in self.rows])
                clf = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000)
                folds = StratifiedKFold(5, shuffle=True, random_state=self.seed)
                p = cross_val_predict(clf, x, self.labels, cv=folds, method="predict_proba")[:, 1]
                unsafe_p = np.sort(p[self.labels])
                # The highest threshold that still refuses target_recall of held-out unsafe exemplars.
                self.threshold = float(unsafe_p[int((1 - self.target_recall) * len(unsafe_p))])
                self.cv = {"unsafe_refused": float((p[self.labels] >= self.threshold).mean()),
                           "safe_refused": float((p[~self.labels] >= self.threshold).mean())}
                clf.fit(x, self.labels)
                # Answers are prose, unlike the question-shaped exemplars: their threshold is the
                # higher of the question threshold and the 99th percentile over benign chat answers.
                benign = benign_answer_sentences()
                if benign:
                    q99 = float(np.quantile(clf.predict_proba(embed(benign))[:, 1], 0.99))
                    self.answer_threshold = max(self.threshold, q99)
                else:
                    self.answer_threshold = self.threshold
                topics = [r["topic"] for r in self.rows]
                self._model = (clf, x, topics)
            return self._model

    def probabilities(self, texts: list[str]) -> list[tuple[float, str]]:
        """(probability unsafe, nearest unsafe exemplar's topic) per text."""
        from steering.features import embed

        clf, x, topics = self._fit()
        e = embed(texts)
        p = clf.predict_proba(e)[:, 1]
        sims = e @ x[self.labels].T
        unsafe_topics = [t for t, u in zip(topics, self.labels) if u]
        return [(float(p[i]), unsafe_topics[int(sims[i].argmax())]) for i in range(len(texts))]

    def check(self, text: str, kind: Kind = "question") -> SafetyVerdict:
        return self.check_many([text], kind)[0]

    def check_many(self, texts: list[str], kind: Kind = "question") -> list[SafetyVerdict]:
        verdicts: list[SafetyVerdict | None] = []
        for t in texts:
            hit = next((topic for topic, rx in _COMPILED if rx.search(t)), None)
            verdicts.append(SafetyVerdict("refused", f"matches a blocked {hit.replace('_', ' ')} pattern", hit, self.name) if hit else None)
        todo = [i for i, v in enumerate(verdicts) if v is None and texts[i].strip()]
        if todo:
            self._fit()
            # Answers are judged sentence by sentence: one unsafe instruction in a long answer counts.
            units = {i: _sentences(texts[i]) if kind == "answer" else [texts[i]] for i in todo}
            flat = [(i, u) for i in todo for u in units[i]]
            worst: dict[int, tuple[float, str]] = {}
            for (i, _), s in zip(flat, self.probabilities([u for _, u in flat])):
                if i not in worst or s[0] > worst[i][0]:
                    worst[i] = s
            limit = self.answer_threshold if kind == "answer" else self.threshold
            for i in todo:
                p, topic = worst[i]
                if p >= limit:
                    verdicts[i] = SafetyVerdict("refused", f"looks like a request about {topic.replace('_', ' ')} (p={p:.2f})", topic, self.name)
        return [v or SafetyVerdict("ok", "", "", self.name) for v in verdicts]


def benign_answer_sentences(limit: int = 1500, seed: int = 0) -> list[str]:
    """Sentences of ordinary chatbot answers (chatterbot-corpus, shipped by pip) for calibration."""
    import random

    from steering.corpus import chatterbot_pairs

    sents = [s for _, a in chatterbot_pairs() for s in _sentences(a)]
    random.Random(seed).shuffle(sents)
    return sents[:limit]


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
