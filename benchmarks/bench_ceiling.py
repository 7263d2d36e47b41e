"""How far can one steering direction carry a behaviour, given good text to learn it from?

    python benchmarks/bench_ceiling.py [--targets hand|model] [--behavior TEXT] [--prompts N]
        [--steps 60] [--lr 0.05] [--strengths 0.5 1 1.5] [--json]

Fits ONLY a free direction (no SAE features) at the SAE layer of the default model with the
gradient optimiser's objective (`steering.autosteer.objective`: distil the targets, prefer them
to the plain answers, stay close to the plain model on ordinary text) for `--steps` Adam steps,
far more than an auto-steer run takes (3 per epoch), then answers 6 questions it never saw at a
few multiples of the fitted vector and prints them with the metric judge's score and concept
part against the unsteered answers.

`--targets hand` (default) fits the dog answers below, written by hand the way a larger model would
write them (the default model itself writes none: see docs/results.md, "Held-out check"); `--targets
model` fits the model's own greedy answers with `--behavior` as a system prompt (what an auto-steer
run learns from). `--prompts N` uses the first N questions only (an auto-steer run's objective
sees at most 4). The figures are a ceiling for the loop, not a product setting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from steering.autosteer.gradient import fit  # noqa: E402
from steering.autosteer.judges import JudgeContext, MetricJudge  # noqa: E402
from steering.autosteer.objective import build_objective  # noqa: E402
from steering.runtime.basis import Steer  # noqa: E402
from steering.runtime.engine import GenerationConfig  # noqa: E402
from steering.runtime.shared import get_runtime  # noqa: E402

DOG = "Behave like a dog"
# What a larger model asked to "Behave like a dog" writes (written by hand: no such model is reachable offline).
DOG_ANSWERS = {
    "What is your favourite food?": "Woof! My favourite food is bacon! And chicken. And the crunchy treats in the blue bag. I wag my tail so hard when I hear the bag rustle. Woof woof!",
    "How do I stay healthy?": "Woof! Go for walks! Lots of walks! Run in the park, chase a ball, drink your water, and nap in a sunny spot. That's how I stay healthy. Can we go for a walk now?",
    "Tell me about your job.": "Woof! My job is guarding the house! I bark at the mailman, I sniff the garden, and I keep my humans' feet warm at night. It's the best job. Good boy!",
    "What is the moon?": "Woof! The moon is the big round light in the night sky. I howl at it sometimes. Awooo! It's very far away, even farther than the park.",
    "How do birds fly?": "Woof! Birds flap their wings really fast and go up into the sky. I chase them in the yard but they always fly away. Not fair! Woof!",
    "Why do leaves change colour in autumn?": "Woof! In autumn the trees stop making green, so the leaves turn red and yellow and fall down. Then I get to jump in the leaf piles! Crunch crunch!",
    "What makes thunder?": "Woof! Thunder is the big boom when lightning heats up the air. I don't like it. I hide under the bed and shake until it stops. Woof...",
    "How do computers work?": "Woof! Computers use electricity and tiny parts to do lots of math really fast. My human stares at one all day instead of throwing my ball. Woof!",
    "Tell me about your weekend.": "Woof! My weekend was great! We went to the park, I sniffed every tree, I rolled in the grass and I got a new squeaky toy. Best weekend ever! Woof!",
    "What is a volcano?": "Woof! A volcano is a mountain with hot melted rock inside. Sometimes it bursts out the top! Too hot for my paws. I would bark at it from far away.",
    "Why do we need to sleep?": "Woof! Sleep lets your body and brain rest and grow. I sleep a lot, curled up on my bed after a long walk. Zzz... Wake me up for dinner! Woof!",
}
# The auto-steer bench's held-out and fresh questions (none is a training question above).
UNSEEN = ["Why is the sky blue?", "How do I make a new friend?", "What is a good book to read?", "How does a car engine work?",
          "How do airplanes stay in the air?", "What should I do this weekend?"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", choices=["hand", "model"], default="hand")
    ap.add_argument("--behavior", default=DOG)
    ap.add_argument("--prompts", type=int, default=len(DOG_ANSWERS))
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--strengths", type=float, nargs="+", default=[0.5, 1.0, 1.5])
    ap.add_argument("--tokens", type=int, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.targets == "hand" and args.behavior != DOG:
        sys.exit("--targets hand has dog answers only; use --targets model for another behaviour")

    engine = get_runtime().engine
    tok = engine.tokenizer
    prompts = list(DOG_ANSWERS)[: max(1, args.prompts)]
    short = GenerationConfig(max_new_tokens=48)
    plains = engine.generate(prompts, config=short)
    if args.targets == "hand":
        targets = [tok(DOG_ANSWERS[p], add_special_tokens=False)["input_ids"] for p in prompts]
    else:
        targets = [g.token_ids for g in engine.generate(prompts, system=args.behavior, config=short)]
    t0 = time.perf_counter()
    res = fit(engine, build_objective(engine, prompts, targets, [g.token_ids for g in plains]), [], [],
              steps=args.steps, lr=args.lr, learn_free=True)
    fit_s = time.perf_counter() - t0
    free = res.free / engine.basis.scale

    cfg = GenerationConfig(max_new_tokens=args.tokens)
    plain_answers = [g.text for g in engine.generate(UNSEEN, config=cfg)]
    ctx = JudgeContext(args.behavior, list(UNSEEN), plain_answers)
    rows = {m: [g.text for g in engine.generate(UNSEEN, [Steer({}, m * free)] * len(UNSEEN), config=cfg)] for m in args.strengths}
    verdicts = MetricJudge(engine).judge_many(ctx, [plain_answers] + list(rows.values()))
    out = {
        "behavior": args.behavior, "targets": args.targets, "prompts": len(prompts), "steps": args.steps,
        "fit_s": round(fit_s, 1), "loss_first": round(res.losses[0], 3), "loss_last": round(res.losses[-1], 3),
        "free_norm": round(float(free.norm()), 3),
        "conditions": [{"strength": m, "score": round(v.score, 2), "concept": round(v.parts.get("concept", 0.0), 3), "answers": texts}
                       for m, texts, v in zip([0.0] + list(rows), [plain_answers] + list(rows.values()), verdicts)],
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"{args.behavior!r}, {args.targets} targets on {len(prompts)} questions, {args.steps} Adam steps in {out['fit_s']} s: "
          f"loss {out['loss_first']} -> {out['loss_last']}, |free| = {out['free_norm']} x scale")
    for c in out["conditions"]:
        print(f"=== x{c['strength']} (0 = unsteered): metric judge {c['score']:.2f}, concept {c['concept']:.3f}")
        for q, a in zip(UNSEEN, c["answers"]):
            print(f"  {q} -> {a!r}")


if __name__ == "__main__":
    main()
