"""Offline text for SAE training and feature labelling, built only from what packages ship.

Sources: WordNet glosses (Debian `wordnet-base`), fortunes (Debian `fortunes`), the
`chatterbot-corpus` Q/A pairs wrapped in the chat template, and the model's own batched answers
to questions under a few system prompts (so behaviour-like text such as child-friendly or
dog-like answers is represented in the activations the SAE sees).
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")

# System prompts for the model's own answers: a spread of styles, so that directions for
# "simple", "childlike", "animal", "formal"... exist in the residual stream the SAE is trained on.
STYLE_PROMPTS = [
    None,
    "Explain things in a way that a five-year-old child can understand. Use short words and short sentences.",
    "You are a dog. Bark, wag your tail and talk about sniffing, bones, walks and treats.",
    "You are a pirate. Talk like a pirate about ships, treasure and the sea.",
    "Answer in a very formal, academic and technical style.",
    "Answer like a cheerful teacher talking to a classroom of young kids.",
    "You are a cat. Purr, meow and talk about naps, fish and mice.",
    "Answer with great enthusiasm and lots of exclamation marks!",
    "Answer sadly, as if everything is a little gloomy.",
    "Answer as a chef who relates everything to cooking and food.",
    "Answer as a poet, in short rhyming lines.",
]


@dataclass(frozen=True)
class CorpusStats:
    source: str
    documents: int
    characters: int


def wordnet_glosses(limit: int | None = None) -> Iterator[str]:
    """`lemma: gloss; "example"` lines from WordNet's data files."""
    n = 0
    for pos in ("noun", "verb", "adj", "adv"):
        path = WORDNET_DIR / f"data.{pos}"
        if not path.is_file():
            log.warning("WordNet not found at %s (apt-get install wordnet-base)", path)
            return
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                head, gloss = line.split("|", 1)
                fields = head.split()
                words = [fields[4 + 2 * i].replace("_", " ") for i in range(int(fields[3], 16))]
                yield f"{', '.join(words)}: {gloss.strip()}"
                n += 1
                if limit and n >= limit:
                    return


def fortunes(limit: int | None = None) -> Iterator[str]:
    """Fortune cookies (offensive ones are not installed by Debian's `fortunes` package)."""
    n = 0
    for path in sorted(glob.glob(str(FORTUNES_DIR / "*"))):
        p = Path(path)
        if p.suffix in {".dat", ".u8"} or p.is_dir() or p.is_symlink():
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        for chunk in text.split("\n%\n"):
            chunk = re.sub(r"[ \t]+", " ", chunk).strip()
            if 20 <= len(chunk) <= 2000:
                yield chunk
                n += 1
                if limit and n >= limit:
                    return


def chatterbot_pairs() -> Iterator[tuple[str, str]]:
    """(question, answer) pairs from the English chatterbot corpus."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        log.warning("chatterbot-corpus not installed")
        return
    root = Path(list(spec.submodule_search_locations)[0]) / "data" / "english"
    for path in sorted(root.glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for conv in data.get("conversations", []):
            if isinstance(conv, list) and len(conv) >= 2 and all(isinstance(c, str) for c in conv[:2]):
                yield conv[0].strip(), conv[1].strip()


def chat_text(tokenizer, user: str, answer: str | None = None, system: str | None = None) -> str:
    """Render a chat turn with the model's template (answer appended when given)."""
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    if answer is None:
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    msgs.append({"role": "assistant", "content": answer})
    return tokenizer.apply_chat_template(msgs, tokenize=False)


def seed_questions(seed: int = 0, n_wordnet: int = 2000) -> list[str]:
    """Questions for the model to answer: chatterbot's, plus 'What is X?' over WordNet nouns."""
    qs = [q for q, _ in chatterbot_pairs() if q.endswith("?")]
    rng = random.Random(seed)
    nouns = [g.split(":")[0].split(",")[0] for g in wordnet_glosses() if ":" in g]
    nouns = [w for w in nouns if w.isalpha() and w.islower() and 3 <= len(w) <= 12]
    rng.shuffle(nouns)
    templates = ["What is a {}?", "Can you tell me about {}?", "How does a {} work?", "Why do people like {}?"]
    qs += [rng.choice(templates).format(w) for w in nouns[:n_wordnet]]
    rng.shuffle(qs)
    return qs


# User turns for WordNet glosses and fortunes rendered as chat (see `as_chat`).
GLOSS_ASKS = ["What does {} mean?", "Define {}.", "What is {}?", "Can you explain {}?", "Tell me what {} means."]
FORTUNE_ASKS = ["Tell me something.", "Say something wise.", "Tell me a joke.", "Give me a quote.", "Share a thought."]


def as_chat(tokenizer, rng: random.Random, texts: list[str], fraction: float, gloss: bool) -> list[str]:
    """Render `fraction` of `texts` as an assistant answer in the chat template.

    The model the SAE serves answers in chat, so the residual stream it must reconstruct is the
    one inside the template (default system prompt, user turn, assistant turn); plain text alone
    leaves those positions out of the training distribution.
    """
    out = []
    for text in texts:
        if rng.random() >= fraction:
            out.append(text)
            continue
        if gloss and ": " in text:
            head, body = text.split(": ", 1)
            word = head.split(", ")[0]
            user = rng.choice(GLOSS_ASKS).format(word)
            answer = f"{word.capitalize()}: {body}"
        else:
            user, answer = rng.choice(FORTUNE_ASKS), text
        out.append(chat_text(tokenizer, user, answer))
    return out


def build_texts(
    tokenizer,
    seed: int = 0,
    self_answers: list[dict] | None = None,
    chat_fraction: float = 0.0,
    wordnet_docs: int | None = None,
) -> tuple[list[str], list[CorpusStats]]:
    """All corpus documents as strings, shuffled with `seed`, plus per-source statistics.

    `chat_fraction` of the WordNet glosses and fortunes are wrapped in the chat template;
    `wordnet_docs` (if set) is a random sample size for the glosses, the largest source.
    """
    rng = random.Random(seed)
    glosses = list(wordnet_glosses())
    if wordnet_docs is not None and wordnet_docs < len(glosses):
        glosses = rng.sample(glosses, wordnet_docs)
    sources: dict[str, list[str]] = {
        "wordnet": as_chat(tokenizer, rng, glosses, chat_fraction, gloss=True),
        "fortunes": as_chat(tokenizer, rng, list(fortunes()), chat_fraction, gloss=False),
        "chatterbot": [chat_text(tokenizer, q, a) for q, a in chatterbot_pairs()],
        "self_answers": [
            chat_text(tokenizer, r["question"], r["answer"], r.get("system")) for r in (self_answers or [])
        ],
    }
    stats = [CorpusStats(k, len(v), sum(map(len, v))) for k, v in sources.items()]
    texts = [t for v in sources.values() for t in v]
    random.Random(seed).shuffle(texts)
    return texts, stats


def index_texts(tokenizer, seed: int = 0, self_answers: list[dict] | None = None, per_source: int = 1500) -> list[str]:
    """A balanced sample of documents for finding each latent's top-activating contexts."""
    rng = random.Random(seed)

    def sample(items: list[str]) -> list[str]:
        return rng.sample(items, min(per_source, len(items)))

    return (
        sample(list(wordnet_glosses()))
        + sample(list(fortunes()))
        + sample([chat_text(tokenizer, q, a) for q, a in chatterbot_pairs()])
        + sample([chat_text(tokenizer, r["question"], r["answer"], r.get("system")) for r in (self_answers or [])])
    )
