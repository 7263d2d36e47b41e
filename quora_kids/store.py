"""The answer store: asked questions, both answers, the profile used, votes (SQLite).

Doubles as a cache: asking the same question with the same profile CONTENT again returns the
stored answer. Rows are keyed by `profile_key` (quora_kids.profiles.content_key: a hash of the
weights, free direction, system prompt/mode and model), never by the profile's name; rows from
older databases without a key are never served from the cache. Every call opens its own connection, so threads never share one; WAL mode and a busy
timeout let concurrent writers queue instead of failing.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    question TEXT NOT NULL,
    question_key TEXT NOT NULL,
    profile TEXT NOT NULL,
    steered TEXT NOT NULL,
    unsteered TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    helpful_steered INTEGER NOT NULL DEFAULT 0,
    helpful_unsteered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS answers_created ON answers (created_at);
"""
# Added after the first release: older databases get the column on open.
MIGRATIONS = (
    ("profile_key", "ALTER TABLE answers ADD COLUMN profile_key TEXT NOT NULL DEFAULT ''"),
)
INDEXES = "CREATE INDEX IF NOT EXISTS answers_pkey ON answers (question_key, profile_key);"


def default_path() -> Path:
    return Path(os.environ.get("QUORA_KIDS_DB") or Path.home() / ".cache" / "sae-steering" / "quora_kids.sqlite3")


def question_key(question: str) -> str:
    """Case, spacing and trailing punctuation do not make a new question."""
    return re.sub(r"\s+", " ", question.strip().lower()).rstrip(" ?!.")


@dataclass
class StoredAnswer:
    id: int
    question: str
    profile: str
    steered: str
    unsteered: str
    created_at: float
    details: dict = field(default_factory=dict)
    helpful_steered: int = 0
    helpful_unsteered: int = 0


class AnswerStore:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)
            have = {r["name"] for r in db.execute("PRAGMA table_info(answers)")}
            for column, sql in MIGRATIONS:
                if column not in have:
                    db.execute(sql)
            db.executescript(INDEXES)

    @contextmanager
    def _connect(self):
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.row_factory = sqlite3.Row
            with db:  # one transaction per call: commit, or roll back on error
                yield db

    def save(self, question: str, profile: str, steered: str, unsteered: str, details: dict | None = None,
             profile_key: str | None = None) -> int:
        """Store an answer pair; `profile` is the display name, `profile_key` the cache key
        (the profile's content hash; the name when not given)."""
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO answers (question, question_key, profile, profile_key, steered, unsteered, details, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (question, question_key(question), profile, profile_key if profile_key is not None else profile, steered, unsteered,
                 json.dumps(details or {}), time.time()),
            )
            return int(cur.lastrowid)

    def lookup(self, question: str, profile_key: str) -> StoredAnswer | None:
        """The latest stored answer to this question under this cache key, if any."""
        if not profile_key:
            return None
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM answers WHERE question_key=? AND profile_key=? ORDER BY id DESC LIMIT 1",
                (question_key(question), profile_key),
            ).fetchone()
        return _row(row) if row else None

    def get(self, answer_id: int) -> StoredAnswer | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM answers WHERE id=?", (answer_id,)).fetchone()
        return _row(row) if row else None

    def recent(self, n: int = 10) -> list[StoredAnswer]:
        """Most recently asked distinct questions, newest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM answers WHERE id IN (SELECT MAX(id) FROM answers GROUP BY question_key) ORDER BY id DESC LIMIT ?",
                (n,),
            ).fetchall()
        return [_row(r) for r in rows]

    def vote(self, answer_id: int, which: str) -> int:
        """Count a 'helpful' vote for the steered or unsteered answer; returns the new count."""
        if which not in ("steered", "unsteered"):
            raise ValueError("vote for 'steered' or 'unsteered'")
        col = f"helpful_{which}"
        with self._connect() as db:
            cur = db.execute(f"UPDATE answers SET {col} = {col} + 1 WHERE id=?", (answer_id,))
            if cur.rowcount == 0:
                raise KeyError(f"no answer with id {answer_id}")
            return int(db.execute(f"SELECT {col} FROM answers WHERE id=?", (answer_id,)).fetchone()[0])

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])


def _row(row: sqlite3.Row) -> StoredAnswer:
    return StoredAnswer(
        id=row["id"], question=row["question"], profile=row["profile"], steered=row["steered"], unsteered=row["unsteered"],
        created_at=row["created_at"], details=json.loads(row["details"] or "{}"),
        helpful_steered=row["helpful_steered"], helpful_unsteered=row["helpful_unsteered"],
    )
