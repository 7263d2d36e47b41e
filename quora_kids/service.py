"""The answer service: one question in, the steered and unsteered answers out, checked and graded.

Both answers come from ONE batched generate call (two rows: the profile's weights, and none).
The question is checked before generating; each answer after, and an unsafe answer is
regenerated (sampled at RETRY_TEMPERATURE, new seed) up to `retries` times, then replaced by a safe fallback.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from steering.artefacts.bind import system_for, weights_for
from steering.artefacts.profile import validate
from steering.errors import InputError
from steering.metrics import Readability, readability
from steering.runtime.engine import GenerationConfig

from .care import care_note
from .moderation import LLMSafety
from .profiles import content_key
from .questions import MAX_QUESTION_CHARS
from .refusals import FALLBACK_ANSWER, refusal_for
from .safety import OfflineSafety, SafetyVerdict
from .store import AnswerStore


# Retries of a withheld answer. At temperature 0.8 the steered model rambled (8 kids' questions x 2 seeds: median
# perplexity 31.5, 13/16 passing the check, "Bees bake to create honey by putting nectar into an oven"); here 6.6, 16/16.
RETRY_TEMPERATURE, RETRY_TOP_P = 0.5, 0.9
RETRIES = 2  # regenerations of a withheld answer before the fallback is shown
# The end of a sentence: . ! ? (or an ellipsis), closing quotes or brackets, then a space or the
# end. Not after a digit, so a list's "1." is not one.
_SENTENCE_END = re.compile(r"(?<![0-9])(?:[.!?]|\u2026)[\"')\]\u201d\u2019]*(?=\s|$)")


def whole_sentences(text: str) -> str:
    """An answer cut by the token limit, without its unfinished last sentence ("... So"): what the
    site shows, checks and grades. A text with no finished sentence is kept whole."""
    text = text.rstrip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]] if ends else text


class QuestionError(InputError):
    """The question cannot be answered as typed (empty, too long); the message says why."""


@dataclass
class AnswerSide:
    text: str
    readability: Readability
    safety: SafetyVerdict
    regenerated: int = 0  # how many times an unsafe answer was regenerated
    fallback: bool = False  # True when the shown text is the safe fallback

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "grade": self.readability.grade,
            "ease": self.readability.ease,
            "badge": self.readability.badge,
            "safety": self.safety.to_dict(),
            "regenerated": self.regenerated,
            "fallback": self.fallback,
        }


@dataclass
class Partial:
    """Both answers as written so far (not yet checked)."""

    steered: str
    unsteered: str


@dataclass
class Answer:
    question: str
    profile: str
    steered: AnswerSide
    unsteered: AnswerSide
    question_safety: SafetyVerdict
    answer_id: int | None = None
    cached: bool = False
    care: str = ""  # the note for a big question (quora_kids.care), shown with the answers

    @property
    def refused(self) -> bool:
        return not self.question_safety.ok

    def to_json(self) -> dict:
        """The CLI's `quora_kids answer --json` object (see docs/cli.md)."""
        return {
            "question": self.question,
            "profile": self.profile,
            "care_note": self.care,
            "steered": self.steered.text,
            "unsteered": self.unsteered.text,
            "readability": {
                "steered": {"grade": self.steered.readability.grade, "ease": self.steered.readability.ease, "badge": self.steered.readability.badge},
                "unsteered": {"grade": self.unsteered.readability.grade, "ease": self.unsteered.readability.ease, "badge": self.unsteered.readability.badge},
            },
            "safety": {
                "verdict": "refused" if self.refused else ("ok" if self.steered.safety.ok and self.unsteered.safety.ok else "refused"),
                "reason": self.question_safety.reason or self.steered.safety.reason or self.unsteered.safety.reason,
                "question": self.question_safety.to_dict(),
                "steered": self.steered.safety.to_dict(),
                "unsteered": self.unsteered.safety.to_dict(),
            },
            "answer_id": self.answer_id,
            "cached": self.cached,
        }


BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c")


def clean_question(question: str) -> str:
    """The question as stored and shown: control characters (NUL, ...) and direction overrides
    (which would reverse the rest of a line for every visitor) removed, whitespace collapsed.
    Zero-width joiners stay (Persian words, emoji sequences). Raises QuestionError with a kind
    message when nothing is left, or no letter or digit (emoji or punctuation only: the safety
    check reads words, and would guess)."""
    kept = (c for c in (question or "") if c.isspace() or (unicodedata.category(c) != "Cc" and c not in BIDI_CONTROLS))
    q = " ".join("".join(kept).split())
    if not q:
        raise QuestionError("Please type a question first.")
    if not any(c.isalnum() for c in q):
        raise QuestionError("Please ask your question with words, for example: Why do dogs wag their tails?")
    if len(q) > MAX_QUESTION_CHARS:
        raise QuestionError(f"That question is very long ({len(q):,} characters). Please keep it under {MAX_QUESTION_CHARS} characters.")
    return q


class AnswerService:
    """Answers kids' questions with a profile; thread-safe (the engine steers per call)."""

    def __init__(self, runtime, profile, safety, store: AnswerStore | None = None, retries: int = RETRIES, max_new_tokens: int = 120):
        validate(profile, runtime.model_ref, runtime.sae_ref)
        self.rt = runtime
        self.profile = profile
        self.safety = safety
        self.store = store
        self.retries = retries
        self.max_new_tokens = max_new_tokens
        self._weights = None

    @property
    def weights(self) -> dict[int, float]:
        if self._weights is None:
            self._weights = weights_for(self.profile, self.rt.engine)
        return self._weights

    @property
    def cache_key(self) -> str:
        """Answers are cached by what decides them (the profile's content, the model preset and
        the answer length), never by the profile's name."""
        return content_key(self.profile, preset=self.rt.preset.id,
                           max_new_tokens=self.max_new_tokens)

    @property
    def system(self) -> str | None:
        return system_for(self.profile)

    def _check(self, text: str, kind: str) -> SafetyVerdict:
        return self.safety.check(text, kind)

    def answer(self, question: str, use_cache: bool = True, cancel: threading.Event | None = None) -> Answer:
        """The finished answer pair (the last item of `stream`)."""
        for item in self.stream(question, use_cache, cancel, live=False):
            pass
        return item

    def stream(self, question: str, use_cache: bool = True, cancel: threading.Event | None = None, live: bool = True) -> Iterator[Partial | Answer]:
        """`Partial` texts of both answers as they are written (when `live`), then the `Answer`,
        checked: the safety check sees only finished answers and may still replace them."""
        q = clean_question(question)
        verdict = self._check(q, "question")
        if not verdict.ok:
            yield refused_answer(q, self.profile.name, verdict)
            return
        care = care_note(q)
        if use_cache and self.store is not None and (hit := self.store.lookup(q, self.cache_key)) is not None:
            d = hit.details
            yield Answer(q, self.profile.name, _side_from(hit.steered, d.get("steered", {})), _side_from(hit.unsteered, d.get("unsteered", {})),
                         verdict, hit.id, cached=True, care=care)
            return
        cfg = GenerationConfig(max_new_tokens=self.max_new_tokens)
        # One batched generate, two rows: the steered side answers in the profile's mode (with its
        # system prompt if it says so), the plain side with neither.
        args = ([q, q], [self.weights, None])
        kwargs = dict(system=[self.system, None], config=cfg, cancel=cancel)
        if live:
            texts = ["", ""]
            for texts in self.rt.engine.stream(*args, **kwargs):
                yield Partial(texts[0], texts[1])
        else:
            texts = [g.text for g in self.rt.engine.generate(*args, **kwargs)]
        texts = [whole_sentences(t) for t in texts]
        sides = [self._checked_side(q, t, w, cancel) for t, w in ((texts[0], self.weights), (texts[1], None))]
        ans = Answer(q, self.profile.name, sides[0], sides[1], verdict, care=care)
        if self.store is not None and not (cancel is not None and cancel.is_set()):
            ans.answer_id = self.store.save(
                q, self.profile.name, sides[0].text, sides[1].text,
                {"steered": sides[0].to_dict(), "unsteered": sides[1].to_dict(), "question_safety": verdict.to_dict()},
                profile_key=self.cache_key,
            )
        yield ans

    def _checked_side(self, q: str, text: str, weights, cancel) -> AnswerSide:
        system = self.system if weights is not None else None
        text, verdict, tries = regenerate_until_safe(self.rt.engine, self.safety, q, weights, system,
                                                     (text, self._check(text, "answer")), self.max_new_tokens, self.retries, cancel)
        if not verdict.ok:
            return AnswerSide(FALLBACK_ANSWER, readability(FALLBACK_ANSWER), verdict, tries, fallback=True)
        return AnswerSide(text, readability(text), verdict, tries)


def regenerate_until_safe(engine, safety, question: str, weights, system: str | None, first: tuple[str, SafetyVerdict],
                          max_new_tokens: int, retries: int, cancel: threading.Event | None = None) -> tuple[str, SafetyVerdict, int]:
    """What the site does with a withheld answer (`first`: its text and verdict): write it again
    (sampled at RETRY_TEMPERATURE, seeds 1001, 1002, ...) until the answer check passes or
    `retries` runs out. Returns the last text, its verdict and the number of tries (also used by
    `quora_kids evaluate`, so its figures count what a visitor is shown)."""
    (text, verdict), tries = first, 0
    while not verdict.ok and tries < retries:
        tries += 1
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=RETRY_TEMPERATURE, top_p=RETRY_TOP_P, seed=1000 + tries)
        [g] = engine.generate([question], [weights], system=system, config=cfg, cancel=cancel)
        text = whole_sentences(g.text)
        verdict = safety.check(text, "answer")
    return text, verdict, tries


def refused_answer(question: str, profile_name: str, verdict: SafetyVerdict) -> Answer:
    """The kind refusal of a question the safety check refused (no model needed)."""
    text = refusal_for(verdict)
    side = AnswerSide(text, readability(text), SafetyVerdict("ok", checker="refusal"), fallback=True)
    return Answer(question, profile_name, side, side, verdict)


def _side_from(text: str, d: dict) -> AnswerSide:
    s = d.get("safety", {})
    return AnswerSide(
        text, readability(text),
        SafetyVerdict(s.get("verdict", "ok"), s.get("reason", ""), s.get("topic", ""), s.get("checker", ""), s.get("language", "")),
        d.get("regenerated", 0), d.get("fallback", False),
    )


def default_safety(client=None):
    """The LLM check when an endpoint is given, with the offline check as its fallback."""
    offline = OfflineSafety()
    return LLMSafety(client, offline) if client is not None else offline
