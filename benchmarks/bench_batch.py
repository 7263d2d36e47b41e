"""Questions per minute: batched local answering vs one question at a time (default model).

    python benchmarks/bench_batch.py [--n 16] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quora_kids.batch import local_generator  # noqa: E402
from quora_kids.questions import read_question_file  # noqa: E402
from steering.artefacts.bind import blank_profile  # noqa: E402
from steering.artefacts.profile import load_profile  # noqa: E402
from steering.runtime.shared import get_runtime  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()

    rt = get_runtime()
    kids = ROOT / "assets/profiles/kids.json"
    prof = load_profile(kids) if kids.is_file() else blank_profile(rt)
    gen = local_generator(rt, prof, args.tokens)
    qs = read_question_file(ROOT / "assets/questions/eval_questions.txt")[: args.n]
    gen(qs[:1])
    t0 = time.perf_counter()
    for i in range(0, len(qs), args.batch_size):
        gen(qs[i : i + args.batch_size])
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for q in qs:
        gen([q])
    single = time.perf_counter() - t0
    fig = {"questions": len(qs), "max_new_tokens": args.tokens, "batch_size": args.batch_size,
           "per_minute_batched": round(60 * len(qs) / batched, 1), "per_minute_single": round(60 * len(qs) / single, 1),
           "speedup": round(single / batched, 2)}
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
