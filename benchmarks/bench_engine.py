"""Decode speed and agreement: the default decode path beside the fp32 transformers reference,
measured in one run, interleaved (these machines are noisy: compare the ratios).

    python benchmarks/bench_engine.py [--tokens 64] [--repeats 3] [--agree-prompts 20] [--json]

Per path: greedy tokens/s at batch 1 (steered and unsteered), 2 and 8 (steered rows), one batched
steered+unsteered pair vs two sequential calls, a kids' answer pair (2 x 120 tokens) and one
auto-steer epoch's generation (3 prompts x 4 candidates x 64 tokens) and the metric judge's
scoring of those 12 answers (`autosteer_epoch_s` is the two together). Then the agreement of the
default path with the reference: the share of identical greedy tokens over 20 prompts (64 tokens,
steered), and the perplexity of each path's answers under the fp32 model. Last, on the default
(fast) path, one decode step of 8 requests of 2 rows in flight together against one request of
the same 16 rows, and of 2 rows (what continuous batching costs under load; docs/decoding.md).
Every timed call runs on the compute worker, as in the app (one OpenMP team: torch work on a
second thread slows the default path's small steps about 2x).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from steering.autosteer.judges import JudgeContext, MetricJudge  # noqa: E402
from steering.runtime.engine import GenerationConfig, SteeringEngine  # noqa: E402
from steering.runtime.scheduler import on_compute_thread  # noqa: E402
from steering.runtime.shared import get_runtime  # noqa: E402

PROMPTS = ["Why is the sky blue?", "How do bees make honey?", "What is a volcano?", "Why do we need to sleep?"]
AGREE_PROMPTS = PROMPTS + [
    "What is a rainbow?", "How do fish breathe underwater?", "Why do cats purr?", "What makes thunder?",
    "How does a plane fly?", "Why is the sea salty?", "What is a dinosaur?", "How do magnets work?",
    "Why do leaves change colour?", "What is the moon made of?", "How do we hear sounds?",
    "Why do we dream?", "What is electricity?", "How do birds know where to fly?", "Why is grass green?",
    "What is a black hole?",
]
FEATURE = {0: 0.5}
JUDGED_BEHAVIOR = "Talk like a pirate."


def timed_tokens(engine: SteeringEngine, prompts, weights, tokens: int) -> tuple[int, float]:
    """(tokens written, seconds) of one generate call, on the compute worker (see `speed`)."""
    cfg = GenerationConfig(max_new_tokens=tokens, min_new_tokens=tokens)

    def run() -> tuple[int, float]:
        t = time.perf_counter()
        out = engine.generate(prompts, weights, config=cfg)
        return sum(len(g.token_ids) for g in out), time.perf_counter() - t

    return on_compute_thread(run)


def timed_judge(engine: SteeringEngine) -> float:
    """Seconds of the metric judge over one epoch's answers, on the compute worker (see `speed`)."""
    return on_compute_thread(_timed_judge, engine)


def _timed_judge(engine: SteeringEngine) -> float:
    """Seconds the metric judge takes over one epoch's answers (4 candidates x 3 prompts, 64
    tokens), its baseline statistics computed beforehand, as the loop does once per run."""
    cfg = GenerationConfig(max_new_tokens=64)
    prompts = PROMPTS[:3]
    ctx = JudgeContext(JUDGED_BEHAVIOR, prompts, [g.text for g in engine.generate(prompts, config=cfg)])
    answers = [g.text for g in engine.generate(prompts * 4, [{0: 0.2 * (i // 3)} for i in range(12)], config=cfg)]
    judge = MetricJudge(engine)
    judge.judge_many(ctx, [ctx.baseline])
    t = time.perf_counter()
    judge.judge_many(ctx, [answers[i : i + 3] for i in range(0, 12, 3)])
    return time.perf_counter() - t


def speed(engines: dict[str, SteeringEngine], tokens: int, repeats: int) -> dict[str, dict[str, float]]:
    """Interleaved timings per path: every figure is a median over repeats x prompts. Both paths
    run on the compute worker, as in the app: torch work on a second thread would give the
    process a second OpenMP team, which halves the default path's batch-1 speed (docs/decoding.md)."""
    runs: dict[str, dict[str, list[float]]] = {name: {} for name in engines}

    def add(name, key, value):
        runs[name].setdefault(key, []).append(value)

    for _ in range(repeats):
        for p in PROMPTS:
            for name, e in engines.items():
                n, s = timed_tokens(e, [p], [None], tokens)
                add(name, "tokens_per_s_unsteered", n / s)
                n, s = timed_tokens(e, [p], [FEATURE], tokens)
                add(name, "tokens_per_s_steered", n / s)
                n, pair = timed_tokens(e, [p, p], [FEATURE, None], tokens)
                add(name, "tokens_per_s_batch2", n / pair)
                add(name, "batched_pair_over_sequential", pair / (tokens / runs[name]["tokens_per_s_steered"][-1] + tokens / runs[name]["tokens_per_s_unsteered"][-1]))
        for name, e in engines.items():
            n, s = timed_tokens(e, PROMPTS * 2, [FEATURE] * 8, tokens)
            add(name, "tokens_per_s_batch8", n / s)
            add(name, "kids_pair_s", timed_tokens(e, [PROMPTS[0]] * 2, [FEATURE, None], 120)[1])
            add(name, "autosteer_epoch_generate_s", timed_tokens(e, PROMPTS[:3] * 4, [FEATURE] * 12, 64)[1])
            add(name, "autosteer_epoch_judge_s", timed_judge(e))
    for name in engines:
        runs[name]["autosteer_epoch_s"] = [g + j for g, j in zip(runs[name]["autosteer_epoch_generate_s"], runs[name]["autosteer_epoch_judge_s"])]
    out = {}
    for name, figs in runs.items():
        out[name] = {k: round(statistics.median(v), 3 if "over" in k else 2) for k, v in figs.items()}
        out[name]["steered_over_unsteered"] = round(out[name]["tokens_per_s_steered"] / out[name]["tokens_per_s_unsteered"], 3)
    return out


def answer_nll(engine: SteeringEngine, prompt: str, ids: list[int]) -> tuple[float, int]:
    """Summed negative log-likelihood of answer tokens `ids` under the fp32 model (no steering)."""
    enc = engine._encode([prompt], None)
    full = torch.cat([enc["input_ids"][0], torch.tensor(ids, dtype=torch.long)])[None]
    with torch.no_grad():
        logits = engine.model(full).logits[0, enc["input_ids"].shape[1] - 1 : -1].float()
    return float(torch.nn.functional.cross_entropy(logits, full[0, enc["input_ids"].shape[1] :], reduction="sum")), len(ids)


def agreement(default: SteeringEngine, reference: SteeringEngine, n_prompts: int, tokens: int) -> dict[str, float]:
    prompts = AGREE_PROMPTS[:n_prompts]
    cfg = GenerationConfig(max_new_tokens=tokens)
    weights = [FEATURE] * len(prompts)
    new = default.generate(prompts, weights, config=cfg)
    ref = reference.generate(prompts, weights, config=cfg)
    same = total = 0
    nll = {"default": [0.0, 0], "reference": [0.0, 0]}
    for p, a, b in zip(prompts, new, ref):
        total += max(len(a.token_ids), len(b.token_ids))
        same += sum(x == y for x, y in zip(a.token_ids, b.token_ids))
        for key, g in (("default", a), ("reference", b)):
            if g.token_ids:
                s, n = answer_nll(reference, p, g.token_ids)
                nll[key][0] += s
                nll[key][1] += n
    ppl = {k: math.exp(s / max(n, 1)) for k, (s, n) in nll.items()}
    return {
        "identical_token_share": round(same / max(total, 1), 3),
        "answer_ppl_default": round(ppl["default"], 2),
        "answer_ppl_reference": round(ppl["reference"], 2),
    }


def flight_steps(engine: SteeringEngine, steps: int = 40) -> dict[str, float]:
    """ms per decode step: 8 flights x 2 rows, 1 flight x 16 rows, 1 flight x 2 rows (long answers,
    so no row ends while timed)."""
    cfg = GenerationConfig(max_new_tokens=steps + 20, min_new_tokens=steps + 20)
    pairs = [[q, q] for q in AGREE_PROMPTS[:8]]

    def per_step(groups) -> float:
        # each pair: one steered row, one plain (as a kids' answer)
        flights = [engine._begin(g, [FEATURE, None] * (len(g) // 2), [None] * len(g), cfg, None, None) for g in groups]
        for _ in range(5):
            engine.fast.step(flights)
        t0 = time.perf_counter()
        for _ in range(steps):
            engine.fast.step(flights)
        return (time.perf_counter() - t0) / steps * 1e3

    # On the compute worker, as the app decodes (a second thread running torch ops would give the
    # process a second OpenMP team and slow every step: docs/decoding.md).
    eight, one, two = (on_compute_thread(per_step, g) for g in (pairs, [sum(pairs, [])], pairs[:1]))
    return {"step_ms_8_flights_of_2": round(eight, 1), "step_ms_1_flight_of_16": round(one, 1), "step_ms_1_flight_of_2": round(two, 1),
            "flights_over_one_flight": round(eight / one, 2), "rows16_over_rows2": round(one / two, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--agree-prompts", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    rt = get_runtime()
    load_s = time.perf_counter() - t0
    default = rt.engine
    steps = flight_steps(default) if default.fast is not None else {}
    reference = SteeringEngine(default.model, default.tokenizer, default.basis, default.sae, decode="reference")
    engines = {"default": default, "reference": reference}
    for e in engines.values():
        on_compute_thread(e.generate, ["Hello"], config=GenerationConfig(max_new_tokens=4))  # warm-up
    figs = speed(engines, args.tokens, args.repeats)
    d, r = figs["default"], figs["reference"]
    figures = {
        "model": rt.preset.id,
        "sae": rt.sae_ref.id,
        "decode": default.decode,
        "cold_load_s": round(load_s, 2),
        **d,
        **{f"{k}_reference": v for k, v in r.items()},
        "speedup_steered_batch1": round(d["tokens_per_s_steered"] / r["tokens_per_s_steered"], 2),
        "speedup_batch8": round(d["tokens_per_s_batch8"] / r["tokens_per_s_batch8"], 2),
        **on_compute_thread(agreement, default, reference, args.agree_prompts, args.tokens),
        **steps,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{'':32s} {'default (' + default.decode + ')':>18s} {'reference (fp32)':>18s}")
    for k, v in d.items():
        print(f"{k:32s} {v:>18} {r[k]:>18}")
    for k in ("cold_load_s", "speedup_steered_batch1", "speedup_batch8", "identical_token_share", "answer_ppl_default", "answer_ppl_reference",
              "step_ms_8_flights_of_2", "step_ms_1_flight_of_16", "step_ms_1_flight_of_2", "flights_over_one_flight", "rows16_over_rows2", "peak_rss_mib"):
        if k in figures:
            print(f"{k:32s} {figures[k]}")
    print("targets: steered batch-1 >= 3x the reference (>= 40 tok/s); kids pair <= 4 s; autosteer_epoch_s <= 5 s; "
          "steered_over_unsteered >= 0.95; batched_pair_over_sequential <= 0.65")


if __name__ == "__main__":
    main()
