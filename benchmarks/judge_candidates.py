"""Generate the unlabelled answers behind assets/judge/labelled.jsonl (for reading and scoring by hand).

10 behaviours x 4 questions x 6 conditions chosen to cover every kind of answer a judge meets:
no effect (unsteered), prompting, mild steering (one label-searched feature at 0.3), strong
steering (0.7: drift, garble), very strong steering without repetition penalty (loops), and
prompted + mild steering. The split is fixed here: question 4 of every behaviour, and every row
of the last two behaviours (never seen while tuning), are the test split.

    .venv/bin/python benchmarks/judge_candidates.py --out runs/judge/candidates.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quora_kids.profiles import KIDS_BEHAVIOUR  # noqa: E402
from steering.runtime.engine import GenerationConfig  # noqa: E402
from steering.runtime.models import index_dir  # noqa: E402
from steering.runtime.shared import get_runtime  # noqa: E402
from steering.sae.index import FeatureIndex  # noqa: E402

BEHAVIOURS = [
    (KIDS_BEHAVIOUR, ["Why is the sky blue?", "How does the internet work?", "What is gravity?", "Why do we need to sleep?"]),
    ("Behave like a dog", ["What is your favourite food?", "How was your day?", "What do you think of cats?", "What should I do this weekend?"]),
    ("Talk like a pirate", ["How do I bake bread?", "What is the capital of France?", "Tell me about your job.", "How do I stay healthy?"]),
    ("Be extremely polite and formal", ["Can you help me fix my bike?", "What time is it?", "Write a note to my neighbour about the noise.", "What is a good book to read?"]),
    ("Always talk about the ocean", ["What did you have for breakfast?", "How do computers work?", "What is your favourite colour?", "How do I learn to draw?"]),
    ("Be cheerful and encouraging, like a sports coach", ["I failed my maths test.", "How do I start running?", "I feel tired today.", "Should I learn the guitar?"]),
    ("Act like a grumpy old man", ["What do you think of smartphones?", "How was your weekend?", "Can you recommend a film?", "What is the best way to travel?"]),
    ("Talk about food and cooking", ["How do airplanes fly?", "What is your favourite season?", "Tell me about the moon.", "How do I make friends?"]),
    ("Be sad and gloomy", ["How are you today?", "What is your favourite holiday?", "Tell me about the weather.", "What do you think about the future?"]),
    ("Talk about space and the stars", ["What is your favourite animal?", "How do I cook rice?", "What should I wear today?", "Why do people sing?"]),
]
TEST_BEHAVIOURS = {8, 9}  # every row of these is test
TEST_QUESTION = 3  # and this question of every other behaviour


def conditions(a: int, b: int):
    """(name, system prompt?, weights, repetition penalty)"""
    return [
        ("unsteered", False, None, 1.1),
        ("prompted", True, None, 1.1),
        ("steered_mild", False, {a: 0.3}, 1.1),
        ("steered_strong", False, {a: 0.7}, 1.1),
        ("steered_loop", False, {a: 1.0, b: 0.6}, 1.0),
        ("prompted_steered", True, {a: 0.3}, 1.1),
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/judge/candidates.jsonl")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    rt = get_runtime()
    index = FeatureIndex.load(index_dir(rt.preset))
    rows = []
    for bi, (behavior, questions) in enumerate(BEHAVIOURS):
        hits = index.search(behavior, k=2)
        a, b = hits[0].index, hits[1].index
        for name, prompted, weights, rep in conditions(a, b):
            cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, repetition_penalty=rep)
            gens = rt.engine.generate(questions, [weights] * len(questions), system=behavior if prompted else None, config=cfg)
            for qi, (q, g) in enumerate(zip(questions, gens)):
                split = "test" if bi in TEST_BEHAVIOURS or qi == TEST_QUESTION else "train"
                rows.append({"behavior": behavior, "question": q, "condition": name, "weights": weights, "answer": g.text, "split": split})
        print(f"{behavior}: features {a} {hits[0].label[:40]!r}, {b} {hits[1].label[:40]!r}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(rows)} rows -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
