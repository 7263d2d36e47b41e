"""Resumable batch answering (local tiny engine) and the remote path over real HTTP."""

import json

import pytest

from quora_kids.batch import (
    batch_answer,
    dataset_for,
    local_generator,
    partial_path,
    remote_generator,
)
from steering.artefacts.bind import make_profile
from steering.llm import LLMError

QUESTIONS = [f"Question number {i}: why is the sky blue?" for i in range(10)]


class Killed(Exception):
    pass


def test_batch_resumes_after_a_kill_and_answers_each_question_once(tiny_runtime, tmp_path):
    prof = make_profile(tiny_runtime, "kids", "b", {5: 0.5})
    gen = local_generator(tiny_runtime, prof, max_new_tokens=4)
    asked = []

    def dying(qs, budget=[2]):
        if budget[0] == 0:
            raise Killed
        budget[0] -= 1
        asked.extend(qs)
        return gen(qs)

    out = tmp_path / "answers.parquet"
    with pytest.raises(Killed):
        batch_answer(dataset_for(QUESTIONS), out, dying, "kids", batch_size=3)
    assert len(partial_path(out).read_text().splitlines()) == 6 and not out.exists()
    # A torn last line (killed mid-write) is ignored and that question redone.
    with partial_path(out).open("a") as fh:
        fh.write('{"id": "q00009", "quest')

    def counting(qs):
        asked.extend(qs)
        return gen(qs)

    result = batch_answer(dataset_for(QUESTIONS), out, counting, "kids", batch_size=3)
    assert sorted(asked) == sorted(QUESTIONS)  # every question generated exactly once overall
    assert result["question"] == QUESTIONS and len(set(result["id"])) == 10
    import pandas as pd

    df = pd.read_parquet(out)
    assert list(df["question"]) == QUESTIONS and set(df.columns) >= {"id", "answer", "grade", "profile", "source"}
    # Running again does nothing new.
    batch_answer(dataset_for(QUESTIONS), out, lambda qs: pytest.fail("re-answered"), "kids")


def test_remote_generation_talks_to_an_openai_compatible_server(fake_openai, llm_client, tmp_path):
    fake_openai.default = None
    fake_openai.script = [lambda body: "Answer to: " + body["messages"][-1]["content"] for _ in QUESTIONS[:4]]
    result = batch_answer(dataset_for(QUESTIONS[:4]), tmp_path / "r.parquet", remote_generator(llm_client, 32, workers=2), "kids", 2, source="remote")
    assert result["answer"] == ["Answer to: " + q for q in QUESTIONS[:4]]
    assert len(fake_openai.requests) == 4
    assert fake_openai.requests[0]["body"]["max_tokens"] == 32


def test_remote_failure_keeps_finished_batches(fake_openai, llm_client, tmp_path):
    fake_openai.script = ["a1", "a2", (500, {"error": "down"})]
    fake_openai.default = "late"
    out = tmp_path / "r.parquet"
    with pytest.raises(LLMError):
        batch_answer(dataset_for(QUESTIONS[:4]), out, remote_generator(llm_client, 16, workers=1), "kids", 2)
    done = [json.loads(l) for l in partial_path(out).read_text().splitlines()]
    assert [d["answer"] for d in done] == ["a1", "a2"]
