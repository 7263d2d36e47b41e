"""How well the offline metric judge agrees with a person: Spearman correlation with the
hand-scored answers of assets/judge/labelled.jsonl (rubric: docs/judge-rubric.md).

    .venv/bin/python benchmarks/bench_judge.py [--split test|train|all|heldout] [--json]
        [--judge metric|llm] [--llm-base-url URL] [--llm-model NAME]

`--split heldout` uses assets/judge/heldout_labelled.jsonl instead: 1888 held-out answers of
eleven auto-steer benchmark runs (sessions 4, 6, 10, 12, 20, 21, 22 and 23; 8 behaviours, 4 conditions; the
runs since session 12 also on 4 fresh questions, `"questions": "fresh"`, answered after the run), scored
blind by a reader who saw neither the condition nor any judge score, each judged against the
unsteered answer of its run. It also prints the Spearman per run, and per run what the reader's
scores say about steering vs prompting: for how many behaviours the better steered condition
(steered, or prompted + steered) has a higher mean hand score than prompting, how many by the
judge's scores, and on how many behaviours the two verdicts agree; and how well the judge's
score (and its concept part alone) chooses a profile's mode, steering or prompt + steering,
against the reader's better mode (`mode_choice`).

`--judge llm` measures an LLM judge behind any OpenAI-compatible endpoint (default:
$OPENAI_BASE_URL, $STEERING_LLM_MODEL, $OPENAI_API_KEY) the same way: it gets the reader's rubric
(`steering/autosteer/llm_judge.py`), one answer at a time; an answer it cannot score is scored by
the metric judge, and the output says how many (`fallbacks`). That is how to check a stronger
judge against the blind labels before trusting it in the loop.

Each answer is judged against the unsteered answer to the same question (the judge's baseline,
as in the loop). Prints the overall Spearman (target >= 0.6 on the test split, which nothing is
tuned on) and each part's correlation with its hand-scored counterpart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from steering.autosteer.factory import make_judge  # noqa: E402
from steering.autosteer.judges import JudgeContext  # noqa: E402
from steering.llm import LLMClient, LLMError  # noqa: E402
from steering.paths import JUDGE_DIR  # noqa: E402
from steering.runtime.shared import get_runtime  # noqa: E402

LABELLED = JUDGE_DIR / "labelled.jsonl"
HELDOUT = JUDGE_DIR / "heldout_labelled.jsonl"
# judge part -> hand-scored part it should track
PART_LABELS = {"concept": "behaviour", "relevance": "question_answered", "fluency": "fluency", "coherence": "fluency"}


def load(split: str = "all") -> list[dict]:
    path = HELDOUT if split == "heldout" else LABELLED
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split in ("all", "heldout") or r["split"] == split]


def judge_rows(engine, rows: list[dict], judge=None) -> list[dict]:
    """Judge every row (the metric judge unless `judge` is given) against the unsteered answer
    to its (behaviour, question)."""
    judge = judge or make_judge("metric", engine)
    baseline = {(r["behavior"], r["question"]): r["answer"] for r in load("all") if r["condition"] == "unsteered"}
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["behavior"]].append(r)
    out = []
    for behavior, rs in groups.items():
        for r in rs:
            ctx = JudgeContext(behavior, [r["question"]], [r.get("baseline") or baseline[(behavior, r["question"])]])
            j = judge.judge_many(ctx, [[r["answer"]]])[0]
            out.append({**r, "judge": j.score, "parts": j.parts})
    return out


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr  # local: importing scipy.stats takes ~1 s

    rho = spearmanr(a, b).statistic
    return round(float(rho), 3) if rho == rho else 0.0


def steering_margins(rows: list[dict], key: str) -> dict[str, float]:
    """Per behaviour: the better steered condition's mean `key` (steered, or prompted + steered)
    minus prompting's."""
    means: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        means[r["behavior"]][r["condition"]].append(r[key])
    mean = {b: {c: sum(v) / len(v) for c, v in m.items()} for b, m in means.items()}
    return {b: max(m.get("steered", -1), m.get("prompted_steered", -1)) - m["prompted"] for b, m in mean.items() if "prompted" in m}


def by_source(rows: list[dict]) -> dict:
    """Per run: the Spearman, and whether the reader and the judge find steering ahead of
    prompting for each behaviour (mean over its held-out answers)."""
    out = {}
    for source in dict.fromkeys(r["source"] for r in rows):
        rs = [r for r in rows if r["source"] == source]
        hand, judge = steering_margins(rs, "score"), steering_margins(rs, "judge")
        out[source] = {"n": len(rs), "spearman": spearman([r["judge"] for r in rs], [r["score"] for r in rs]),
                       "behaviours": len(hand), "hand_steering_ahead": sum(v > 0 for v in hand.values()),
                       "hand_by_1_point": sum(v >= 1 for v in hand.values()),
                       "judge_steering_ahead": sum(v > 0 for v in judge.values()),
                       "verdicts_agree": sum((hand[b] > 0) == (judge[b] > 0) for b in hand),
                       "margins": {b: {"hand": round(hand[b], 2), "judge": round(judge[b], 2)} for b in hand}}
        fresh = [r for r in rs if r.get("questions") == "fresh"]
        if fresh:  # the questions answered after the run, which not even the mode choice saw
            fh, fj = steering_margins(fresh, "score"), steering_margins(fresh, "judge")
            out[source]["fresh"] = {"n": len(fresh), "hand_steering_ahead": sum(v > 0 for v in fh.values()),
                                    "judge_steering_ahead": sum(v > 0 for v in fj.values())}
    return out


def mode_choice(rows: list[dict], key: str = "judge") -> dict:
    """How well `key` (the judge's score, or one of its parts) chooses a profile's answering mode.
    Per (run, behaviour) with both steered and prompted + steered answers: the mode with the higher
    mean `key` over the held-out questions (what a run chooses on), against the reader's better
    mode on the same questions and on the fresh ones (answered after the run); a reader's tie is
    not counted. Also: for how many behaviours that choice beats prompting and the unsteered
    answers by the reader's mean over all the run's questions, and how many a reader's own choice
    beats prompting."""
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["source"], r["behavior"])][r["condition"]].append(r)

    def mean(rs, k, fresh=None):
        vs = [(r["parts"][k] if k in r.get("parts", {}) else r[k]) for r in rs if fresh is None or (r.get("questions") == "fresh") == fresh]
        return sum(vs) / len(vs) if vs else None

    out = {"same": [0, 0], "fresh": [0, 0], "beats_prompting": 0, "beats_unsteered": 0, "reader_choice_beats_prompting": 0, "behaviours": 0}
    modes = ("steered", "prompted_steered")
    for g in groups.values():
        judged = {m: mean(g[m], key, False) if g.get(m) else None for m in modes}  # what a run chooses on
        if None in judged.values() or not (g.get("prompted") and g.get("unsteered")):
            continue
        chosen = max(modes, key=judged.get)
        other = modes[1 - modes.index(chosen)]
        for name, fresh in (("same", False), ("fresh", True)):
            a, b = mean(g[chosen], "score", fresh), mean(g[other], "score", fresh)
            if a is not None and b is not None and a != b:
                out[name][0] += a > b
                out[name][1] += 1
        prompted = mean(g["prompted"], "score")
        out["behaviours"] += 1
        out["beats_prompting"] += mean(g[chosen], "score") > prompted
        out["beats_unsteered"] += mean(g[chosen], "score") > mean(g["unsteered"], "score")
        out["reader_choice_beats_prompting"] += max(mean(g[m], "score") for m in modes) > prompted
    return out


def add_judge_args(ap: argparse.ArgumentParser) -> None:
    """`--judge metric|llm` and the LLM endpoint's options (this benchmark's and bench_autosteer's)."""
    ap.add_argument("--judge", default="metric", choices=["metric", "llm"], help="llm: an OpenAI-compatible endpoint, given the reader's rubric")
    ap.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    ap.add_argument("--llm-model", default=None, help="model name at the endpoint (default: $STEERING_LLM_MODEL)")


def judge_client(args) -> LLMClient | None:
    """The endpoint's client for `--judge llm` (None for the metric judge); no endpoint configured
    is a one-line error and exit code 2."""
    try:
        return LLMClient.from_env(args.llm_base_url, args.llm_model) if args.judge == "llm" else None
    except LLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="test", choices=["test", "train", "all", "heldout"])
    ap.add_argument("--json", action="store_true")
    add_judge_args(ap)
    args = ap.parse_args()
    client = judge_client(args)
    result = measure(get_runtime().engine, args.split, args.judge, client)
    if args.json:
        print(json.dumps(result))
        return 0
    report(result)
    return 0


def measure(engine, split: str, judge: str = "metric", client: LLMClient | None = None) -> dict:
    """The judge's agreement with the reader on `split`: Spearman overall and per part (the parts
    the judge reports), mean per condition, and on the blind set per run and the mode choice."""
    judging = make_judge(judge, engine, client)
    rows = judge_rows(engine, load(split), judging)
    labels = [r["score"] for r in rows]
    parts = {p: lab for p, lab in PART_LABELS.items() if all(p in r["parts"] for r in rows)}  # an LLM judge has none
    result = {"split": split, "judge": judging.name, "n": len(rows), "spearman": spearman([r["judge"] for r in rows], labels),
              "parts": {p: spearman([r["parts"][p] for r in rows], [r[lab] for r in rows]) for p, lab in parts.items()},
              "fallbacks": getattr(judging, "fallbacks", 0)}
    by_cond: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        by_cond[r["condition"]].append((r["judge"], r["score"]))
    result["mean_by_condition"] = {c: {"judge": round(sum(j for j, _ in v) / len(v), 2), "label": round(sum(s for _, s in v) / len(v), 2)}
                                   for c, v in by_cond.items()}
    if split == "heldout":
        result["by_source"] = by_source(rows)
        result["mode_choice"] = {k: mode_choice(rows, k) for k in ("judge", "concept") if k == "judge" or k in parts}
    return result


def report(result: dict) -> None:
    print(f"{result['split']} split, {result['n']} answers, {result['judge']} judge: Spearman(judge, hand score) = {result['spearman']}"
          "  (target >= 0.6)")
    if result["fallbacks"]:
        print(f"  {result['fallbacks']} of {result['n']} answers were scored by the metric judge: the LLM judge could not score them")
    for p, lab in PART_LABELS.items():
        if p not in result["parts"]:
            continue
        print(f"  part {p:10s} vs hand {lab:18s} {result['parts'][p]}")
    print("mean per condition (judge / hand):")
    for c, m in result["mean_by_condition"].items():
        print(f"  {c:18s} {m['judge']:5.2f} / {m['label']:5.2f}")
    for source, v in result.get("by_source", {}).items():
        print(f"{source}: {v['n']} answers, Spearman {v['spearman']}; steering ahead of prompting for {v['hand_steering_ahead']} "
              f"of {v['behaviours']} behaviours by the reader ({v['hand_by_1_point']} by 1 point or more), {v['judge_steering_ahead']} "
              f"by the judge; verdicts agree on {v['verdicts_agree']}")
        if "fresh" in v:
            f = v["fresh"]
            print(f"  of which {f['n']} answers to fresh questions (answered after the run): steering ahead for {f['hand_steering_ahead']} "
                  f"by the reader, {f['judge_steering_ahead']} by the judge")
    for k, m in result.get("mode_choice", {}).items():
        print(f"choosing the mode by the {'score' if k == 'judge' else k + ' part'}: the reader's better mode on the same questions "
              f"{m['same'][0]} of {m['same'][1]}, on fresh questions {m['fresh'][0]} of {m['fresh'][1]}; the profile beats prompting "
              f"for {m['beats_prompting']} of {m['behaviours']} behaviours (a reader's choice: {m['reader_choice_beats_prompting']}), "
              f"the unsteered answers for {m['beats_unsteered']}")


if __name__ == "__main__":
    sys.exit(main())
