"""`generate` (answer with a profile), `export` (fold it into a checkpoint or a control vector)
and `prepare` (convert and load the default model once)."""

from __future__ import annotations

import json
import sys
import time

from .common import UsageError, empty_folder, positive_int, temperature

MAX_PROMPT_CHARS = 2000

# The commands import the engine (torch, transformers) when they run, so that building the parser
# (--help, a bad option) stays instant.


def add_generate(sub):
    p = sub.add_parser("generate", help="answer a prompt with a steering profile (or none: the plain model)")
    p.add_argument("--profile", default=None, help="steering profile JSON (default: none, the plain model's answer)")
    p.add_argument("--preset", default=None, help="model preset without a profile (default: the embedded smollm2-135m)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=positive_int, default=96)
    p.add_argument("--temperature", type=temperature, default=0.0, help="0 = greedy (up to 5)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args) -> int:
    prompt = args.prompt.strip()
    if not prompt:
        raise UsageError("--prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:  # the same limit as the app's manual mode
        raise UsageError(f"--prompt is too long ({len(prompt):,} characters; {MAX_PROMPT_CHARS} at most)")
    from ..artefacts.bind import engine_for_profile, system_for, weights_for
    from ..artefacts.profile import load_profile
    from ..runtime.engine import GenerationConfig
    from ..runtime.shared import get_runtime

    if args.profile is None:  # the plain model: what a profile's answers are compared with
        engine, weights, system, name = get_runtime(args.preset).engine, None, None, None
    else:
        if args.preset:
            raise UsageError("--preset is for answering without a profile; a profile names its own model")
        profile = load_profile(args.profile)  # a ProfileError is bad input: run_main answers it with exit code 2
        engine = engine_for_profile(profile)
        weights, system, name = weights_for(profile, engine), system_for(profile), profile.name
    cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    if args.json:
        [gen] = engine.generate([prompt], [weights], system=system, config=cfg)
        print(json.dumps({"text": gen.text, "finish_reason": gen.finish_reason, "profile": name}))
        return 0
    last = ""
    for texts in engine.stream([prompt], [weights], system=system, config=cfg):
        sys.stdout.write(texts[0][len(last) :] if texts[0].startswith(last) else "\n" + texts[0])
        sys.stdout.flush()
        last = texts[0]
    print()
    return 0


def add_export(sub):
    p = sub.add_parser("export", help="fold a profile into a plain checkpoint (vLLM, TGI, llama.cpp) or a llama.cpp control vector")
    p.add_argument("--profile", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default="checkpoint", choices=["checkpoint", "control-vector"],
                   help="checkpoint: Hugging Face checkpoint with the steering folded in (default); "
                        "control-vector: llama.cpp control-vector GGUF for the plain model")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..artefacts.export import ExportError, export_profile
    from ..artefacts.profile import load_profile

    empty_folder(args.out, "--out")  # before the model loads
    profile = load_profile(args.profile)
    try:
        out = export_profile(profile, args.out, args.format)
    except ExportError as exc:
        raise UsageError(str(exc)) from exc
    if profile.opening_direction is not None:
        print("note: this profile's in-character opening is not in the export (it acts on a few positions only); "
              "the exported model answers without it", file=sys.stderr)
    print(out)
    return 0


def add_prepare(sub):
    p = sub.add_parser("prepare", help="convert and load the default model once (Docker build, CI)")
    p.add_argument("--preset", default=None)
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args) -> int:
    from ..runtime.engine import GenerationConfig
    from ..runtime.shared import get_runtime

    t0 = time.perf_counter()
    rt = get_runtime(args.preset)
    [g] = rt.engine.generate(["Say hello."], config=GenerationConfig(max_new_tokens=8))
    print(json.dumps({"preset": rt.preset.id, "sae": rt.sae_ref.id, "seconds": round(time.perf_counter() - t0, 1), "sample": g.text}))
    return 0
