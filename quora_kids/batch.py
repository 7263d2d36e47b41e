"""Answer a whole question set, resumably: `datasets.map(batched=True)` over what is not done yet.

Each finished batch is appended to `OUT.partial.jsonl` before the next starts, so a killed run
continues where it stopped and answers nothing twice; the Parquet file is written at the end.
Generation is local (the steering hook, batched) or remote: any OpenAI-compatible server, such
as vLLM serving a checkpoint made by `python -m steering export`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from steering.artefacts.bind import system_for, weights_for
from steering.metrics import readability
from steering.runtime.engine import GenerationConfig

from .refusals import FALLBACK_ANSWER
from .service import whole_sentences


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.jsonl")


def read_done(path: Path) -> dict[str, dict]:
    """Records already answered; a line torn by a kill is ignored (that question is redone)."""
    done: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            done.setdefault(str(rec["id"]), rec)
    return done


def local_generator(runtime, profile, max_new_tokens: int = 96) -> Callable[[list[str]], list[str]]:
    weights = weights_for(profile, runtime.engine)
    system = system_for(profile)  # the profile's answering mode
    cfg = GenerationConfig(max_new_tokens=max_new_tokens)
    return lambda qs: [whole_sentences(g.text) for g in runtime.engine.generate(qs, [weights] * len(qs), system=system, config=cfg)]


def remote_generator(client, max_new_tokens: int = 96, workers: int = 4) -> Callable[[list[str]], list[str]]:
    """Questions sent concurrently to an OpenAI-compatible server (the steering is in its weights)."""

    def one(q: str) -> str:
        return whole_sentences(client.chat([{"role": "user", "content": q}], max_tokens=max_new_tokens))

    def run(qs: list[str]) -> list[str]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, qs))

    return run


def batch_answer(
    ds,
    out: str | Path,
    generate: Callable[[list[str]], list[str]],
    profile_name: str,
    batch_size: int = 8,
    safety=None,
    source: str = "local",
):
    """Answer every row of `ds` (columns id, question) into `out` (Parquet). Returns the Dataset."""
    from datasets import Dataset  # local: importing datasets takes ~1 s

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(out)
    done = read_done(part)
    if part.is_file() and not part.read_bytes().endswith(b"\n") and part.stat().st_size:
        with part.open("a") as fh:  # close a line torn by a kill, so new records start clean
            fh.write("\n")
    # Fixed fingerprints: by default `datasets` hashes each function with dill, and answer_batch's
    # closure reaches the model (~4 s of hashing tensors). Nothing here is read from its cache.
    todo = ds.filter(lambda r: str(r["id"]) not in done, desc="skipping answered", load_from_cache_file=False,
                     new_fingerprint=hashlib.sha1(json.dumps(sorted(done)).encode()).hexdigest())

    def answer_batch(batch: dict) -> dict:
        answers = generate(list(batch["question"]))
        verdicts = safety.check_many(answers, "answer") if safety else [None] * len(answers)
        recs = []
        for i, q, a, v in zip(batch["id"], batch["question"], answers, verdicts):
            shown = a if v is None or v.ok else FALLBACK_ANSWER
            r = readability(shown)
            recs.append({"id": str(i), "question": q, "answer": shown, "grade": r.grade, "ease": r.ease,
                         "safety": "ok" if v is None or v.ok else "replaced", "profile": profile_name, "source": source})
        with part.open("a", encoding="utf-8") as fh:  # one write per batch: the resume point
            fh.write("".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in recs))
            fh.flush()
            os.fsync(fh.fileno())
        return {k: [rec[k] for rec in recs] for k in ("answer", "grade")}

    if len(todo):
        todo.map(answer_batch, batched=True, batch_size=batch_size, desc="answering", load_from_cache_file=False,
                 new_fingerprint="answered")
    done = read_done(part)
    order = [str(i) for i in ds["id"]]
    result = Dataset.from_list([done[i] for i in order if i in done])
    result.to_parquet(str(out))
    return result


def dataset_for(questions: Sequence[str]):
    from datasets import Dataset  # local: importing datasets takes ~1 s

    return Dataset.from_dict({"id": [f"q{i:05d}" for i in range(len(questions))], "question": list(questions)})
