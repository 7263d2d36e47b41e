"""The hand-scored judge set: loads, covers what the rubric says, and its split is fixed."""

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

from steering.paths import JUDGE_DIR

LABELLED = JUDGE_DIR / "labelled.jsonl"


def rows():
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_labelled_set_loads_with_valid_labels():
    rs = rows()
    assert len(rs) >= 200
    for r in rs:
        assert r["behavior"] and r["question"] and isinstance(r["answer"], str)
        assert 0 <= r["score"] <= 10 and all(r[k] in (0, 1, 2) for k in ("behaviour", "question_answered", "fluency"))
        assert r["split"] in ("train", "test")
    assert len({r["behavior"] for r in rs}) >= 8
    # every kind of answer the rubric lists is present
    assert set(Counter(r["condition"] for r in rs)) >= {"unsteered", "prompted", "steered_mild", "steered_strong", "steered_loop", "prompted_steered"}


def test_split_is_fixed():
    rs = rows()
    test = [(r["behavior"], r["question"], r["condition"]) for r in rs if r["split"] == "test"]
    # The split is part of the file; this digest changes only if someone reshuffles it.
    digest = hashlib.sha256(json.dumps(sorted(test)).encode()).hexdigest()[:16]
    assert len(test) == 96 and digest == SPLIT_DIGEST
    # whole behaviours held out, never seen while tuning
    held = {b for b in {r["behavior"] for r in rs} if all(r["split"] == "test" for r in rs if r["behavior"] == b)}
    assert held == {"Be sad and gloomy", "Talk about space and the stars"}


SPLIT_DIGEST = "e8874ff7f79a9538"


def test_blind_heldout_set_loads_and_agrees_with_the_rubric():
    rs = [json.loads(line) for line in (JUDGE_DIR / "heldout_labelled.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rs) >= 200 and len({r["behavior"] for r in rs}) >= 8
    for r in rs:
        assert r["answer"] is not None and r["baseline"] and r["condition"] in ("unsteered", "prompted", "steered", "prompted_steered")
        parts = [r[k] for k in ("behaviour", "question_answered", "fluency")]
        assert all(p in (0, 1, 2) for p in parts)
        if 0 in parts:  # the rubric: a failed part fails the answer
            assert r["score"] <= 1
        else:
            assert abs(r["score"] - round(10 * (sum(parts) - 3) / 3)) <= 1
    # one label per distinct answer: repeated answers (same text under several runs) agree
    by_answer = {}
    for r in rs:
        assert by_answer.setdefault((r["behavior"], r["question"], r["answer"]), r["score"]) == r["score"]


def test_bench_judge_counts_where_reader_and_judge_find_steering_ahead():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_judge import by_source

    def row(b, cond, score, judge):
        return {"source": "run", "behavior": b, "condition": cond, "score": score, "judge": judge}

    rows = [row("dog", "prompted", 1, 1.0), row("dog", "steered", 0, 2.0), row("dog", "prompted_steered", 0, 0.5),
            row("pirate", "prompted", 0, 1.0), row("pirate", "steered", 6, 0.9), row("pirate", "prompted_steered", 9, 0.8)]
    (v,) = by_source(rows).values()
    assert v["margins"]["dog"] == {"hand": -1.0, "judge": 1.0} and v["margins"]["pirate"] == {"hand": 9.0, "judge": -0.1}
    assert (v["hand_steering_ahead"], v["hand_by_1_point"], v["judge_steering_ahead"], v["verdicts_agree"]) == (1, 1, 1, 0)
    assert "fresh" not in v
    # answers to fresh questions: counted on their own too (here the reader finds steering ahead on both)
    fresh = [{**r, "questions": "fresh", "score": 0 if r["condition"] == "prompted" else 5} for r in rows]
    (v,) = by_source(rows + fresh).values()
    assert v["fresh"] == {"n": 6, "hand_steering_ahead": 2, "judge_steering_ahead": 1} and v["n"] == 12


def test_bench_judge_scores_the_mode_choice_against_the_reader():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from bench_judge import mode_choice

    def row(b, cond, score, judge, concept, fresh=False):
        r = {"source": "run", "behavior": b, "condition": cond, "score": score, "judge": judge, "parts": {"concept": concept}}
        return {**r, "questions": "fresh"} if fresh else r

    rows = [
        # dog: the judge picks steering (2.0 > 1.0) but the reader prefers prompt + steering, on both question sets
        row("dog", "unsteered", 1, 1.0, 0.0), row("dog", "prompted", 1, 1.0, 0.0),
        row("dog", "steered", 0, 2.0, 0.1), row("dog", "prompted_steered", 6, 1.0, 0.5),
        row("dog", "steered", 0, 9.0, 0.9, fresh=True), row("dog", "prompted_steered", 3, 0.0, 0.0, fresh=True),
        # pirate: the judge picks prompt + steering, the reader agrees on held-out questions and ties on fresh ones
        row("pirate", "unsteered", 1, 1.0, 0.0), row("pirate", "prompted", 2, 1.0, 0.0),
        row("pirate", "steered", 1, 1.0, 0.6), row("pirate", "prompted_steered", 7, 3.0, 0.2),
        row("pirate", "steered", 4, 1.0, 0.0, fresh=True), row("pirate", "prompted_steered", 4, 1.0, 0.0, fresh=True),
        # no prompt + steering answers: not counted
        row("ocean", "unsteered", 1, 1.0, 0.0), row("ocean", "prompted", 1, 1.0, 0.0), row("ocean", "steered", 5, 5.0, 0.5),
    ]
    by_score = mode_choice(rows)
    assert by_score == {"same": [1, 2], "fresh": [0, 1], "beats_prompting": 1, "beats_unsteered": 1,
                        "reader_choice_beats_prompting": 2, "behaviours": 2}
    by_concept = mode_choice(rows, "concept")  # the dog's concept picks prompt + steering, the pirate's steering
    assert by_concept["same"] == [1, 2] and by_concept["fresh"] == [1, 1] and by_concept["beats_prompting"] == 2
