"""Command line for the steering engine: `python -m steering COMMAND ...` (see DESIGN.md).

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
    from .session import engine_for_profile, weights_for

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
        [gen] = engine.generate([prompt], [weights_for(profile, engine)], config=cfg)
        print(json.dumps({"text": gen.text, "finish_reason": gen.finish_reason, "profile": profile.name}))
        return 0
    last = ""
    for texts in engine.stream([prompt], [weights_for(profile, engine)], config=cfg):
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m steering", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_build_sae(sub)
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
