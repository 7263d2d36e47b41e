"""Auto-steering on the default model with the metric judge: held-out scores per condition.

    python benchmarks/bench_autosteer.py [--epochs 6] [--behaviors kids dog ...] [--optimizer gradient|numeric]
        [--mode auto|steered|prompted_steered] [--out F] [--json]
    python benchmarks/bench_autosteer.py --rejudge F [--out G]  # judge the answers saved by --out F again (after a judge
                                                              # change); --out G saves the new scores
    ... [--judge llm] [--llm-base-url URL] [--llm-model NAME]  # an LLM judge (in the loop, or for --rejudge)

With `--judge llm` the runs (or `--rejudge`) use an LLM judge behind any OpenAI-compatible
endpoint (default: $OPENAI_BASE_URL, $STEERING_LLM_MODEL), given the reader's rubric, falling back
to the metric judge for any answer it cannot score: the table with a stronger judge than the
offline one. Check that judge against the blind labels first (`bench_judge.py --judge llm`).

For each behaviour: held-out score (0-10, metric judge) of unsteered, prompted (behaviour as a
system prompt), steered and prompted+steered answers, on the run's 4 held-out questions and on 4
fresh ones answered after the run with its profile (the table averages all 8), seconds per epoch and seconds before the
first epoch (baseline answers, retrieval, screening). Then K=4 candidate
weight vectors generated in one batch vs one at a time (target: >= 2x candidates per second).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quora_kids.profiles import KIDS_BEHAVIOUR  # noqa: E402
from steering.artefacts.bind import weights_for  # noqa: E402
from steering.artefacts.profile import has_heads_up  # noqa: E402
from steering.autosteer.config import MODES, AutoSteerConfig  # noqa: E402
from steering.autosteer.factory import make_autosteer, make_judge  # noqa: E402
from steering.autosteer.judges import JudgeContext  # noqa: E402
from steering.autosteer.results import EpochResult, PhaseEvent, beats_ties_trails  # noqa: E402
from steering.llm import LLMClient  # noqa: E402
from steering.metrics import degeneration  # noqa: E402
from steering.runtime.engine import GenerationConfig  # noqa: E402
from steering.runtime.shared import get_runtime  # noqa: E402

from bench_judge import add_judge_args, judge_client  # noqa: E402  (the same --judge options)

BEHAVIORS = {
    "kids": KIDS_BEHAVIOUR,
    "dog": "Behave like a dog",
    "pirate": "Talk like a pirate",
    "coach": "Be cheerful and encouraging, like a sports coach",
    "polite": "Be extremely polite and formal",
    "ocean": "Always talk about the ocean",
    "grumpy": "Act like a grumpy old man",
    "food": "Talk about food and cooking",
}
# The same behaviour and targets moved by 0.2-0.6 between runs (sessions 8-10: float rounding of the
# chunked passes, batch composition), so a smaller win says little.
CLEAR_MARGIN = 0.3
PROMPTS = ["What is your favourite food?", "How do I stay healthy?", "Tell me about your job."]
HELDOUT = ["How do airplanes stay in the air?", "What should I do this weekend?", "Why is the ocean salty?", "How does the heart work?"]
# Four more questions the run never sees at all (the held-out check above also chooses the
# profile's mode): the same four conditions, answered after the run with the saved profile.
FRESH = ["Why is the sky blue?", "How do I make a new friend?", "What is a good book to read?", "How does a car engine work?"]


def batched_vs_sequential(engine, k: int = 4, tokens: int = 48) -> dict:
    cfg = GenerationConfig(max_new_tokens=tokens)
    weights = [{i: 0.3} for i in range(k)]
    engine.generate(["Hi"], config=GenerationConfig(max_new_tokens=2))
    t0 = time.perf_counter()
    engine.generate([PROMPTS[0]] * k, weights, config=cfg)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for w in weights:
        engine.generate([PROMPTS[0]], [w], config=cfg)
    seq = time.perf_counter() - t0
    return {"k": k, "batched_s": round(batched, 2), "sequential_s": round(seq, 2),
            "candidates_per_s_batched": round(k / batched, 3), "candidates_per_s_sequential": round(k / seq, 3),
            "speedup": round(seq / batched, 2)}


def run_behaviour(name: str, epochs: int, optimiser: str, mode: str = "auto", judge: str = "metric", client: LLMClient | None = None) -> dict:
    """One auto-steer run on the shared runtime: held-out scores, timings, features, answers."""
    cfg = AutoSteerConfig(behavior=BEHAVIORS[name], prompts=PROMPTS, epochs=epochs, heldout=list(HELDOUT), mode=mode)
    run = make_autosteer(cfg, judge=judge, optimiser=optimiser, client=client)
    epoch_s = []
    final = None
    before_s = None
    t0 = time.perf_counter()
    for ev in run.run():
        if isinstance(ev, PhaseEvent):
            continue
        if isinstance(ev, EpochResult):
            if before_s is None:  # baseline answers, retrieval and screening
                before_s = time.perf_counter() - t0 - sum(ev.seconds.values())
            epoch_s.append(sum(ev.seconds.values()))
        else:
            final = ev
    fresh = run.heldout_check(weights_for(final.profile, run.rt.engine), FRESH) if final.heldout else None
    return {
        "behavior": cfg.behavior,
        "best_train_score": final.profile.scores["best"],
        "held_out": {k: round(v, 2) for k, v in final.heldout.scores.items()},
        "seconds_per_epoch": round(statistics.fmean(epoch_s), 1),
        "before_first_epoch_s": round(before_s or 0.0, 1),
        "features": [(f.index, f.source) for f in final.features],
        "total_s": round(time.perf_counter() - t0, 1),
        "mode": final.profile.mode,
        "trained_on": final.profile.provenance.get("trained_on", "steered"),
        "free_share": final.profile.free_share,
        "notes": final.profile.provenance.get("notes", []),
        "degenerate_held_out": degenerate_counts(final.heldout.outputs),
        "held_out_prompts": final.heldout.prompts,
        "held_out_outputs": final.heldout.outputs,
        "held_out_per_prompt": final.heldout.per_prompt,
        "fresh": {k: round(v, 2) for k, v in fresh.scores.items()} if fresh else None,
        "fresh_prompts": FRESH,
        "fresh_outputs": fresh.outputs if fresh else None,
        "fresh_per_prompt": fresh.per_prompt if fresh else None,
        "degenerate_fresh": degenerate_counts(fresh.outputs) if fresh else None,
    }


def degenerate_counts(outputs: dict[str, list[str]]) -> dict[str, int]:
    """Per condition, how many answers loop, stutter or are empty."""
    return {c: sum(degeneration(o).degenerate for o in outs) for c, outs in outputs.items()}


def rejudge(path: str, judge: str = "metric", client: LLMClient | None = None, engine=None) -> dict:
    """The results saved by `--out`, their held-out (and fresh) scores recomputed by the current
    metric judge, or by an LLM judge (`judge="llm"` and its `client`)."""
    results = json.loads(Path(path).read_text(encoding="utf-8"))
    judge = make_judge(judge, engine or get_runtime().engine, client)
    for r in results.values():
        for key, prompts_key, outputs_key in (("held_out", "held_out_prompts", "held_out_outputs"), ("fresh", "fresh_prompts", "fresh_outputs")):
            outs = r.get(outputs_key)
            if not outs:
                continue
            conditions = list(outs)
            prompts = r.get(prompts_key, HELDOUT)  # files from before the key existed used HELDOUT
            js = judge.judge_many(JudgeContext(r["behavior"], prompts, outs["unsteered"]), [outs[c] for c in conditions])
            r[key] = {c: round(j.score, 2) for c, j in zip(conditions, js)}
            r[f"{key}_per_prompt"] = {c: j.per_prompt for c, j in zip(conditions, js)}
    return results


def combined(r: dict) -> dict[str, float]:
    """Held-out and fresh scores together: the mean over all 8 questions (4 when a run has no
    fresh answers)."""
    if not r.get("fresh"):
        return r["held_out"]
    return {c: round((v + r["fresh"][c]) / 2, 2) for c, v in r["held_out"].items()}


def per_question(r: dict) -> tuple[int, int, int] | None:
    """Over all 8 questions: on how many the profile's answers (its mode) scored higher than, the
    same as, lower than the prompted ones; None for files without per-prompt scores."""
    scores = [r.get(k) for k in ("held_out_per_prompt", "fresh_per_prompt") if r.get(k)]
    if not scores or any(r["mode"] not in s or "prompted" not in s for s in scores):
        return None
    return beats_ties_trails([x for s in scores for x in s[r["mode"]]], [x for s in scores for x in s["prompted"]])


def print_table(results: dict, speed: dict | None) -> None:
    print()
    print(f"{'behaviour':10s} {'unsteered':>9s} {'prompted':>9s} {'steered':>9s} {'both':>9s} {'s/epoch':>8s} {'start s':>8s} {'total s':>8s} {'free':>5s}"
          "   (all 8 questions: 4 held-out + 4 fresh)")
    wins = clear = plain = mine = 0
    counts = {name: per_question(r) for name, r in results.items()}
    for name, r in results.items():
        h, count = combined(r), counts[name]
        wins += max(h["steered"], h["prompted_steered"]) > h["prompted"]
        clear += max(h["steered"], h["prompted_steered"]) >= h["prompted"] + CLEAR_MARGIN
        plain += max(h["steered"], h["prompted_steered"]) > h["unsteered"]
        mine += h[r["mode"]] > h["unsteered"]
        print(f"{name:10s} {h['unsteered']:9.2f} {h['prompted']:9.2f} {h['steered']:9.2f} {h['prompted_steered']:9.2f} "
              f"{r['seconds_per_epoch']:8.1f} {r['before_first_epoch_s']:8.1f} {r['total_s']:8.1f} {r['free_share']:5.0%}"
              + (f"   {r['mode']}: better/same/worse than prompted on {count[0]}/{count[1]}/{count[2]} questions" if count else ""))
    degenerate = sum(r[k][c] for r in results.values() for k in ("degenerate_held_out", "degenerate_fresh") if r.get(k)
                     for c in ("steered", "prompted_steered"))
    print(f"steered or prompted+steered beats prompting on {wins} of {len(results)} ({clear} by at least {CLEAR_MARGIN}, the run-to-run "
          f"spread); degenerate answers (steered, both): {degenerate}")
    print(f"steered or prompted+steered beats the unsteered answers on {plain} of {len(results)}; the profile's own mode on {mine}")
    if any(counts.values()):
        by_count = sum(c[0] > c[2] for c in counts.values() if c)
        print(f"the profile's answers beat the prompted ones on more questions than they lose for {by_count} of {len(results)}")
    fresh = [r for r in results.values() if r.get("fresh")]
    if fresh:
        only = sum(max(r["fresh"]["steered"], r["fresh"]["prompted_steered"]) > r["fresh"]["prompted"] for r in fresh)
        print(f"on the 4 fresh questions alone (never seen, not even by the mode choice): {only} of {len(fresh)}")
    warned = [name for name, r in results.items() if has_heads_up(r.get("notes"))]
    print(f"heads-up (the model barely shows the behaviour even when told it): {', '.join(warned) or 'none'}")
    if speed is None:
        return
    print(f"\nK=4 candidates: batched {speed['batched_s']}s vs sequential {speed['sequential_s']}s -> {speed['speedup']}x candidates/s (target >= 2x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--behaviors", nargs="*", default=list(BEHAVIORS))
    ap.add_argument("--optimizer", default="gradient", choices=["gradient", "numeric"])
    ap.add_argument("--mode", default="auto", choices=list(MODES), help="what the epochs optimise")
    ap.add_argument("--out", default=None, help="also write every held-out answer here (JSON), for reading")
    ap.add_argument("--rejudge", default=None, metavar="F", help="only judge again the held-out answers a --out run saved in F")
    ap.add_argument("--json", action="store_true")
    add_judge_args(ap)
    args = ap.parse_args()
    client = judge_client(args)
    if args.rejudge:
        results = rejudge(args.rejudge, args.judge, client)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False))
        if args.json:
            print(json.dumps({"behaviors": results}))
        else:
            print_table(results, None)
        return

    rt = get_runtime()
    results = {}
    for name in args.behaviors:
        results[name] = run_behaviour(name, args.epochs, args.optimizer, args.mode, args.judge, client)
        if not args.json:
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "held_out_outputs"}), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False))
    speed = batched_vs_sequential(rt.engine)
    if args.json:
        print(json.dumps({"behaviors": results, "batched_candidates": speed}))
        return
    print_table(results, speed)


if __name__ == "__main__":
    main()
