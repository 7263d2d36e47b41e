"""Command line for the steering engine: `python -m steering COMMAND ...` (contract: docs/cli.md).

Exit codes: 0 success, 2 bad input (one-line error on stderr), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def _add_generate(sub):
    p = sub.add_parser("generate", help="answer a prompt with a steering profile")
    p.add_argument("--profile", required=True, help="steering profile JSON (all-zero weights = unsteered)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args) -> int:
    from .engine import GenerationConfig
    from .profile import ProfileError, load_profile
    from .session import engine_for_profile, system_for, weights_for

    prompt = args.prompt.strip()
    if not prompt:
        raise UsageError("--prompt is empty")
    try:
        profile = load_profile(args.profile)
        engine = engine_for_profile(profile)
    except ProfileError as exc:
        raise UsageError(str(exc)) from exc
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    if args.json:
        [gen] = engine.generate([prompt], [weights_for(profile, engine)], system=system_for(profile), config=cfg)
        print(json.dumps({"text": gen.text, "finish_reason": gen.finish_reason, "profile": profile.name}))
        return 0
    last = ""
    for texts in engine.stream([prompt], [weights_for(profile, engine)], system=system_for(profile), config=cfg):
        sys.stdout.write(texts[0][len(last) :] if texts[0].startswith(last) else "\n" + texts[0])
        sys.stdout.flush()
        last = texts[0]
    print()
    return 0


def _add_build_sae(sub):
    from .train_sae import SAEBuildConfig

    p = sub.add_parser("build-sae", help="train the default model's SAE offline (long: run in the background)")
    for f in dataclasses.fields(SAEBuildConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.set_defaults(func=cmd_build_sae)


def cmd_build_sae(args) -> int:
    from .train_sae import SAEBuildConfig, build_sae

    cfg = SAEBuildConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SAEBuildConfig)})
    print(build_sae(cfg))
    return 0


def _add_features(sub):
    p = sub.add_parser("features", help="search or show SAE features (latents) by their labels")
    fsub = p.add_subparsers(dest="features_command", required=True)
    s = fsub.add_parser("search", help="latents whose label matches a description")
    s.add_argument("query")
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--preset", default=None)
    s.add_argument("--contexts", type=int, default=0, help="also print N top-activating contexts per hit")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_features_search)
    sh = fsub.add_parser("show", help="everything the index knows about one latent")
    sh.add_argument("index", type=int)
    sh.add_argument("--preset", default=None)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_features_show)
    imp = fsub.add_parser("import-neuronpedia", help="make a preset's index from a Neuronpedia explanations export")
    imp.add_argument("file")
    imp.add_argument("--preset", required=True)
    imp.add_argument("--d-sae", type=int, required=True)
    imp.set_defaults(func=cmd_features_import)


def _load_index(preset_name):
    from .features import FeatureIndex
    from .models import index_dir, resolve_preset

    try:
        return FeatureIndex.load(index_dir(resolve_preset(preset_name)))
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def cmd_features_search(args) -> int:
    if not args.query.strip():
        raise UsageError("the search query is empty")
    if not 1 <= args.k <= 1000:
        raise UsageError("--k must be between 1 and 1000")
    index = _load_index(args.preset)
    hits = index.search(args.query, k=args.k)
    if args.json:
        print(json.dumps([{"index": h.index, "label": h.label, "score": round(h.score, 4)} for h in hits]))
        return 0
    for h in hits:
        print(f"{h.index:6d}  {h.score:.3f}  {h.label}")
        for c in index.get(h.index).contexts[: args.contexts]:
            print(f"        | {c}")
    return 0


def cmd_features_show(args) -> int:
    index = _load_index(args.preset)
    try:
        rec = index.get(args.index)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from exc
    if args.json:
        print(json.dumps(dataclasses.asdict(rec), ensure_ascii=False))
        return 0
    print(f"latent {rec.index}: {rec.label}  [{rec.source}]")
    print(f"  max activation {rec.max_activation:.2f}, active on {100 * rec.frequency:.3f}% of tokens")
    print(f"  promotes:   {' | '.join(rec.promoted)}")
    print(f"  suppresses: {' | '.join(rec.suppressed)}")
    for c in rec.contexts:
        print(f"  | {c}")
    return 0


def cmd_features_import(args) -> int:
    from .features import import_neuronpedia
    from .models import index_dir, resolve_preset

    preset = resolve_preset(args.preset)
    try:
        index = import_neuronpedia(args.file, args.d_sae, {"preset": preset.id, "sae": preset.sae.ident})
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(index.save(index_dir(preset)))
    return 0


def _add_build_index(sub):
    p = sub.add_parser("build-index", help="build the feature index (evidence, labels, embeddings) for a preset's SAE")
    p.add_argument("--preset", default=None)
    p.add_argument("--per-source", type=int, default=1500, help="documents sampled from each corpus source")
    p.add_argument("--self-answers", default="runs/sae/self_answers.jsonl")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--llm-labels", action="store_true", help="label latents with the configured OpenAI-compatible endpoint")
    p.set_defaults(func=cmd_build_index)


def cmd_build_index(args) -> int:
    from tqdm import tqdm

    from .corpus import index_texts
    from .features import build_index
    from .models import index_dir, load_model, load_sae, resolve_preset
    from .saes import sae_layer

    preset = resolve_preset(args.preset)
    model, tok = load_model(preset)
    sae = load_sae(preset)
    answers_path = Path(args.self_answers)
    answers = [json.loads(line) for line in answers_path.open()] if answers_path.is_file() else []
    texts = index_texts(tok, args.seed, answers, args.per_source)
    labeller = None
    if args.llm_labels:
        from .llm import LLMClient, explain_feature

        client = LLMClient.from_env()
        labeller = lambda rec: explain_feature(client, rec)  # noqa: E731
    with tqdm(total=len(texts), desc="index", unit="doc") as bar:
        index = build_index(
            model, tok, sae, sae_layer(sae), texts, labeller,
            meta={"preset": preset.id, "sae": preset.sae.ident, "seed": args.seed, "per_source": args.per_source},
            progress=bar.update,
        )
    print(index.save(index_dir(preset)))
    return 0


def _add_evaluate_sae(sub):
    p = sub.add_parser("evaluate-sae", help="measure the default SAE (variance explained, L0, dead latents, CE recovered)")
    p.add_argument("--preset", default=None)
    p.add_argument("--questions", type=int, default=120, help="held-out questions the model answers for the test text")
    p.set_defaults(func=cmd_evaluate_sae)
    c = sub.add_parser("calibrate", help="measure the residual norm, set the steering scale, record examples")
    c.add_argument("--preset", default=None)
    c.add_argument("--factor", type=float, default=None, help="scale = factor x median residual norm (default 1.0)")
    c.add_argument("--prompt", default="Tell me about your weekend.")
    c.set_defaults(func=cmd_calibrate)


def _sae_folder(preset):
    if preset.sae.local_dir is None:
        raise UsageError(f"preset {preset.id!r} uses a hub SAE; evaluate-sae and calibrate write next to a local SAE")
    return preset.sae.local_dir


def cmd_evaluate_sae(args) -> int:
    from .corpus import seed_questions
    from .features import FeatureIndex
    from .models import index_dir, resolve_preset
    from .sae_eval import evaluate_sae, heldout_texts, model_card
    from .saes import read_calibration
    from .session import get_runtime

    preset = resolve_preset(args.preset)
    folder = _sae_folder(preset)
    recipe = json.loads((folder / "recipe.json").read_text())
    rt = get_runtime(preset.id)
    sae = rt.engine.sae  # the runtime already loaded it
    # Questions after the ones the build used for the model's own answers: never in the corpus.
    used = recipe["build_config"]["self_answers"]
    questions = seed_questions(recipe["build_config"]["seed"])[used : used + args.questions]
    texts = heldout_texts(rt.engine, rt.engine.tokenizer, questions)
    quality = evaluate_sae(rt.engine.model, rt.engine.tokenizer, sae, rt.engine.basis.layer, texts).to_dict()
    quality["questions"] = len(questions)
    try:
        index = FeatureIndex.load(index_dir(preset))
        quality["dead_fraction_index"] = sum(r.frequency == 0 for r in index.records) / len(index)
        quality["index_tokens"] = index.meta.get("tokens")
    except FileNotFoundError:
        quality["dead_fraction_index"] = quality["dead_fraction"]
    (folder / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    (folder / "README.md").write_text(model_card(folder.name, recipe, quality, read_calibration(preset)))
    print(json.dumps(quality, indent=2))
    return 0


def cmd_calibrate(args) -> int:
    from .engine import GenerationConfig, SteeringBasis
    from .features import FeatureIndex
    from .metrics import perplexities
    from .models import index_dir, resolve_preset
    from .saes import DEFAULT_SCALE_FACTOR, write_calibration
    from .session import get_runtime

    preset = resolve_preset(args.preset)
    _sae_folder(preset)
    rt = get_runtime(preset.id)
    engine = rt.engine
    calib = write_calibration(preset, engine.model, engine.tokenizer, preset.sae.layer, args.factor or DEFAULT_SCALE_FACTOR)
    # The runtime loaded the previous calibration; steer the examples with the new scale.
    engine.basis = SteeringBasis.from_sae(engine.sae, engine.basis.layer, calib["scale"])
    index = FeatureIndex.load(index_dir(preset))
    examples = []
    for topic in ("dogs and puppies", "cooking and food", "the ocean"):
        hit = index.search(topic, k=1)[0]
        ws = [0.0, 0.3, 0.6, 1.0]
        gens = rt.engine.generate([args.prompt] * len(ws), [{hit.index: w} for w in ws], config=GenerationConfig(max_new_tokens=48))
        ppl = perplexities(rt.engine, [args.prompt] * len(ws), [g.text for g in gens])
        examples.append({"index": hit.index, "label": hit.label, "topic": topic, "prompt": args.prompt,
                         "outputs": [[w, g.text, p] for w, g, p in zip(ws, gens, ppl)]})
        for w, g, p in zip(ws, gens, ppl):
            print(f"[{hit.index} w={w} ppl={p:.1f}] {g.text[:160]!r}")
    calib["examples"] = examples
    from .saes import calibration_path

    calibration_path(preset).write_text(json.dumps(calib, indent=2) + "\n")
    return 0


def _add_export(sub):
    p = sub.add_parser("export", help="fold a profile into a plain checkpoint (vLLM, TGI, llama.cpp) or a llama.cpp control vector")
    p.add_argument("--profile", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default="checkpoint", choices=["checkpoint", "control-vector"],
                   help="checkpoint: Hugging Face checkpoint with the steering folded in (default); "
                        "control-vector: llama.cpp control-vector GGUF for the plain model")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from .export import ExportError, export_profile
    from .profile import ProfileError, load_profile

    try:
        out = export_profile(load_profile(args.profile), args.out, args.format)
    except (ProfileError, ExportError) as exc:
        raise UsageError(str(exc)) from exc
    print(out)
    return 0


def _add_autosteer(sub):
    p = sub.add_parser("autosteer", help="learn feature weights for a behaviour from one line of text")
    p.add_argument("--behavior", required=True, help='e.g. "Explain things in a way that children can understand"')
    p.add_argument("--prompt", action="append", required=True, help="training prompt (repeat for several)")
    p.add_argument("--heldout", action="append", default=None, help="held-out prompt (repeat); default: a built-in set")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--features", type=int, default=5)
    p.add_argument("--screen", type=int, default=6, help="retrieve FEATURES x SCREEN candidates and keep those that score best alone")
    p.add_argument("--candidates", type=int, default=4, help="weight vectors per epoch (numeric optimiser)")
    p.add_argument("--threshold", type=float, default=7.0, help="stop early when the best score reaches this")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--judge", choices=["metric", "llm"], default="metric",
                   help="metric: offline; llm: an OpenAI-compatible endpoint (falls back to metric for any answer it cannot score)")
    p.add_argument("--optimizer", "--optimiser", dest="optimizer", choices=["numeric", "gradient", "llm"], default="numeric",
                   help="numeric (default): Optuna TPE; gradient: Adam on a prompt-distillation objective; llm: textual gradients")
    p.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    p.add_argument("--llm-model", default=None, help="model name at the endpoint (default: $STEERING_LLM_MODEL)")
    p.add_argument("--name", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default=None)
    p.add_argument("--out", default=None, help="profile path (default: profiles/NAME.json)")
    p.add_argument("--json", action="store_true", help="one JSON object per line per epoch, then a final line")
    p.set_defaults(func=cmd_autosteer)


def cmd_autosteer(args) -> int:
    from .autosteer import DEFAULT_HELDOUT, SCREEN_WEIGHT, AutoSteerConfig, EpochResult, PhaseEvent, ScreenResult, make_autosteer
    from .judges import JudgeError
    from .llm import LLMClient, LLMError

    try:
        cfg = AutoSteerConfig(
            behavior=args.behavior, prompts=args.prompt, epochs=args.epochs, features=args.features,
            candidates=args.candidates, screen=args.screen, threshold=args.threshold, max_new_tokens=args.max_new_tokens,
            heldout=args.heldout or list(DEFAULT_HELDOUT), name=args.name, seed=args.seed,
        )
        client = None
        if args.judge == "llm" or args.optimizer == "llm" or args.llm_base_url:
            client = LLMClient.from_env(args.llm_base_url, args.llm_model)
        run = make_autosteer(cfg, args.judge, args.optimizer, client, args.preset)
    except (ValueError, LLMError) as exc:
        raise UsageError(str(exc)) from exc
    out = Path(args.out or f"profiles/{cfg.name}.json")
    bar = None
    if not args.json:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, desc="epochs", unit="epoch", file=sys.stderr)
    try:
        for event in run.run():
            if isinstance(event, PhaseEvent):
                if not args.json:
                    bar.set_description(event.phase)
                    bar.write(f"[{event.phase}] {event.message}")
                continue
            if isinstance(event, ScreenResult):
                if not args.json:  # --json keeps one line per epoch; the screening goes in the final line
                    bar.write(f"screened {len(event.candidates)} candidate features in {event.seconds:.0f}s (score alone at weight +-{SCREEN_WEIGHT}):")
                    for i, (c, score) in enumerate(zip(event.candidates, event.scores)):
                        mark = "keep" if i < event.kept else "    "
                        bar.write(f"  {mark} {c.index:5d} {c.sign:+.0f} {c.source:11s} {score:5.2f}  {c.label[:70]}")
                continue
            if isinstance(event, EpochResult):
                if args.json:
                    print(json.dumps(event.to_json(run.features)), flush=True)
                else:
                    bar.update(1)
                    free = f" + free direction ({event.free_share:.0%} of the norm, not an SAE feature)" if event.free_share else ""
                    bar.write(f"epoch {event.epoch}: score {event.score:.2f} (best {event.best_score:.2f}) weights {event.weights}{free}")
                    bar.write(f"  critique: {event.critique}")
                    for prompt, text in zip(cfg.prompts, event.outputs):
                        bar.write(f"  [{prompt[:40]}] {text[:200]!r}")
                continue
            path = event.profile.save(out)
            final = {"profile": str(path), "stopped": event.stopped,
                     "features": [{"index": f.index, "label": f.label, "source": f.source} for f in event.features],
                     "held_out": event.heldout.scores if event.heldout else None,
                     "held_out_outputs": event.heldout.outputs if event.heldout else None,
                     "mode": event.profile.mode, "free_share": event.profile.free_share,
                     "notes": event.profile.provenance.get("notes", []),
                     "screened": event.screened.to_json()["screened"] if event.screened else None}
            if args.json:
                print(json.dumps(final), flush=True)
            else:
                bar.close()
                print(f"saved {path} ({event.stopped}; answers {event.profile.mode.replace('_', ' + ')}"
                      + (f"; {event.profile.free_share:.0%} of the steering is a free direction, not an SAE feature" if event.profile.free_share else "") + ")")
                for note in event.profile.provenance.get("notes", []):
                    print(f"  note: {note}")
                if event.heldout:
                    for cond, score in event.heldout.scores.items():
                        print(f"  held-out {cond:18s} {score:.2f}")
    except (LLMError, JudgeError) as exc:
        raise UsageError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    return 0


def _add_prepare(sub):
    p = sub.add_parser("prepare", help="convert and load the default model once (Docker build, CI)")
    p.add_argument("--preset", default=None)
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args) -> int:
    import time

    from .engine import GenerationConfig
    from .session import get_runtime

    t0 = time.perf_counter()
    rt = get_runtime(args.preset)
    [g] = rt.engine.generate(["Say hello."], config=GenerationConfig(max_new_tokens=8))
    print(json.dumps({"preset": rt.preset.id, "sae": rt.sae_ref.id, "seconds": round(time.perf_counter() - t0, 1), "sample": g.text}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m steering", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_features(sub)
    _add_export(sub)
    _add_prepare(sub)
    _add_autosteer(sub)
    _add_build_sae(sub)
    _add_build_index(sub)
    _add_evaluate_sae(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
