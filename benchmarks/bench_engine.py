"""Engine speed on the default model, as ratios measured in one run (these machines are noisy).

    python benchmarks/bench_engine.py [--tokens 64] [--repeats 3]

Prints: cold load time, greedy tokens/s unsteered vs steered (target ratio >= 0.95), one batched
steered+unsteered pair vs two sequential calls (target <= 0.65), peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from steering.engine import GenerationConfig  # noqa: E402

PROMPTS = [
    "Why is the sky blue?",
    "How do bees make honey?",
    "What is a volcano?",
    "Why do we need to sleep?",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from steering.session import get_runtime

    t0 = time.perf_counter()
    rt = get_runtime()
    load_s = time.perf_counter() - t0
    engine = rt.engine
    feature = 0
    weights = {feature: 0.5}
    # Every call generates exactly --tokens tokens, so batched and sequential runs do the same work.
    cfg = GenerationConfig(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    engine.generate(["Hello"], config=GenerationConfig(max_new_tokens=4))  # warm-up

    def run(prompts, w):
        t = time.perf_counter()
        out = engine.generate(prompts, w, config=cfg)
        return sum(len(g.token_ids) for g in out), time.perf_counter() - t

    plain_tps, steer_tps, pair_s, seq_s = [], [], [], []
    for _ in range(args.repeats):
        for p in PROMPTS:
            n, s = run([p], [None])
            plain_tps.append(n / s)
            n, s = run([p], [weights])
            steer_tps.append(n / s)
            _, batched = run([p, p], [weights, None])
            _, a = run([p], [weights])
            _, b = run([p], [None])
            pair_s.append(batched)
            seq_s.append(a + b)
    figures = {
        "model": rt.preset.id,
        "sae": rt.sae_ref.id,
        "cold_load_s": round(load_s, 2),
        "tokens_per_s_unsteered": round(statistics.median(plain_tps), 1),
        "tokens_per_s_steered": round(statistics.median(steer_tps), 1),
        "steered_over_unsteered": round(statistics.median(steer_tps) / statistics.median(plain_tps), 3),
        "batched_pair_over_sequential": round(sum(pair_s) / sum(seq_s), 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return
    for k, v in figures.items():
        print(f"{k:32s} {v}")
    print("targets: steered_over_unsteered >= 0.95, batched_pair_over_sequential <= 0.65")


if __name__ == "__main__":
    main()
