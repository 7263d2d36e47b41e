"""The question set: the project's own kids' questions, or any dataset with a question column.

Loaded with `datasets`. Other layouts (the Quora question-pairs CSV, a hub dataset) map their
columns onto `question`, `category`, `tags`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from steering.errors import InputError
from steering.paths import QUESTIONS_DIR
from steering.runtime.embeddings import embed

DEFAULT_QUESTIONS = QUESTIONS_DIR / "kids_questions.jsonl"
MAX_QUESTION_CHARS = 500


class QuestionSetError(InputError):
    """A question file or dataset that cannot be used; says why."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    category: str
    tags: tuple[str, ...]


def load_questions(source: str | Path | None = None, columns: Mapping[str, str] | None = None, split: str = "train"):
    """A `datasets.Dataset` with columns id, question, category, tags.

    `source`: None (the project's set), a local .jsonl/.json/.csv/.parquet/.txt file, or a hub
    dataset id (needs a network). `columns` maps our names to the source's, e.g.
    {"question": "question1"} for Quora question pairs.
    """
    from datasets import Dataset, load_dataset  # local: importing datasets takes ~1 s

    columns = dict(columns or {})
    path = Path(source) if source is not None else DEFAULT_QUESTIONS
    if source is None or path.exists():
        if not path.is_file():
            raise QuestionSetError(f"{path} is not a file")
        suffix = path.suffix.lower()
        kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "txt"}.get(suffix)
        if kind is None:
            raise QuestionSetError(f"{path}: use a .jsonl, .json, .csv, .parquet or .txt file")
        try:
            if kind == "txt":
                lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                ds = Dataset.from_dict({"question": lines})
            else:
                ds = load_dataset(kind, data_files=str(path), split="train")
        except Exception as exc:  # datasets wraps the reader's error (bad UTF-8, a malformed line) in its own
            raise QuestionSetError(f"{path}: could not read it as {suffix[1:]} ({_root_cause(exc)})") from exc
    else:
        if "/" not in str(source) or str(source).startswith((".", "/")):
            raise QuestionSetError(f"no such file: {source}")
        try:
            ds = load_dataset(str(source), split=split)
        except Exception as exc:
            raise QuestionSetError(f"could not load hub dataset {source!r} (needs a network): {type(exc).__name__}") from exc
    return normalise(ds, columns)


def _root_cause(exc: BaseException) -> str:
    """The innermost error's message, on one line, shortened."""
    seen = {id(exc)}
    while (nxt := exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)) is not None and id(nxt) not in seen:
        exc = nxt
        seen.add(id(exc))
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 200 else text[:199] + "…"


def normalise(ds, columns: Mapping[str, str]):
    """Rename mapped columns, add missing id/category/tags, drop empty and overlong questions."""
    qcol = columns.get("question", "question")
    if qcol not in ds.column_names:
        raise QuestionSetError(f"no question column {qcol!r}; columns are {ds.column_names}; map one with question=COLUMN")
    keep = {qcol: "question"}
    for ours in ("id", "category", "tags"):
        theirs = columns.get(ours, ours)
        if theirs in ds.column_names:
            keep[theirs] = ours
    ds = ds.select_columns(list(keep)).rename_columns({k: v for k, v in keep.items() if k != v})

    def fill(row, i):
        tags = row.get("tags") or []
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.replace(";", ",").split(",") if t.strip()]
        return {
            "id": str(row["id"]) if row.get("id") not in (None, "") else f"row{i}",
            "question": str(row["question"] or "").strip(),
            "category": str(row.get("category") or "other"),
            "tags": [str(t) for t in tags],
        }

    from datasets import Features, List, Value  # local: importing datasets takes ~1 s

    features = Features({"id": Value("string"), "question": Value("string"), "category": Value("string"), "tags": List(Value("string"))})
    ds = ds.map(fill, with_indices=True, remove_columns=ds.column_names, features=features)
    return ds.filter(lambda r: 0 < len(r["question"]) <= MAX_QUESTION_CHARS)


def categories(ds) -> list[str]:
    return sorted(set(ds["category"]))


class QuestionSearch:
    """Find questions by words and meaning (embeddings, computed once per question set)."""

    def __init__(self, ds):
        self.ds = ds
        self.questions = ds["question"]
        self._emb: np.ndarray | None = None

    def _embeddings(self) -> np.ndarray:
        if self._emb is None:
            self._emb = embed(self.questions)
        return self._emb

    def search(self, query: str, k: int = 10, category: str | None = None) -> list[Question]:
        query = query.strip()
        rows = range(len(self.ds)) if not category else [i for i, c in enumerate(self.ds["category"]) if c == category]
        rows = list(rows)
        if not query:
            return [self._question(i) for i in rows[:k]]
        q = embed([query])[0]
        emb = self._embeddings()
        words = query.lower().split()
        scores = {i: float(emb[i] @ q) + 0.2 * sum(w in self.questions[i].lower() for w in words) / len(words) for i in rows}
        return [self._question(i) for i in sorted(scores, key=lambda i: -scores[i])[:k]]

    def _question(self, i: int) -> Question:
        r = self.ds[i]
        return Question(r["id"], r["question"], r["category"], tuple(r["tags"]))


def read_question_file(path: str | Path) -> list[str]:
    """Questions from a text file (one per line) or JSONL with a `question` field."""
    path = Path(path)
    if not path.is_file():
        raise QuestionSetError(f"questions file not found: {path}" if not path.exists() else f"{path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise QuestionSetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    jsonl = path.suffix.lower() == ".jsonl"
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("{") or jsonl:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise QuestionSetError(f"{path}:{n}: not valid JSON") from exc
            q = rec.get("question", "") if isinstance(rec, dict) else None
            if not isinstance(q, str) or not q.strip():
                raise QuestionSetError(f"{path}:{n}: no 'question' field")
            out.append(q.strip())
        else:
            out.append(line)
    if not out:
        raise QuestionSetError(f"{path}: no questions")
    return out
