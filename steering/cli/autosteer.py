"""`autosteer`: learn a profile from one line; shows the run on the terminal or as --json lines."""

from __future__ import annotations

import sys
from pathlib import Path

from ..autosteer.config import DEFAULT_HELDOUT, JUDGES, MODES, OPTIMISERS, AutoSteerConfig
from .common import UsageError, positive_int, writable_file

# The command imports the engine (torch, transformers) when it runs, so that building the parser
# (--help, a bad option) stays instant.


def add_autosteer(sub):
    p = sub.add_parser("autosteer", help="learn feature weights for a behaviour from one line of text")
    p.add_argument("--behavior", "--behaviour", dest="behavior", required=True, help='e.g. "Explain things in a way that children can understand"')
    p.add_argument("--prompt", action="append", required=True, help="training prompt (repeat for several)")
    p.add_argument("--heldout", "--held-out", dest="heldout", action="append", default=None, help="held-out prompt (repeat); default: a built-in set")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--features", type=int, default=5)
    p.add_argument("--screen", type=int, default=6, help="retrieve FEATURES x SCREEN candidates and keep those that score best alone")
    p.add_argument("--candidates", type=int, default=4, help="weight vectors per epoch (numeric optimiser)")
    p.add_argument("--threshold", type=float, default=7.0, help="stop early when the best score reaches this")
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--judge", choices=list(JUDGES), default="metric",
                   help="metric: offline; llm: an OpenAI-compatible endpoint (falls back to metric for any answer it cannot score)")
    p.add_argument("--optimizer", "--optimiser", dest="optimiser", choices=list(OPTIMISERS), default="gradient",
                   help="gradient (default): Adam on a prompt-distillation objective; numeric: Optuna TPE; llm: textual gradients")
    p.add_argument("--llm-base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    p.add_argument("--llm-model", default=None, help="model name at the endpoint (default: $STEERING_LLM_MODEL)")
    p.add_argument("--mode", choices=list(MODES), default="auto",
                   help="what the epochs optimise: steering alone, steering on top of the behaviour as a system prompt, or auto "
                        "(on top of the prompt when the prompt alone beats every screened feature alone)")
    p.add_argument("--no-opening", dest="opening", action="store_false",
                   help="never add an in-character opening (tried when the behaviour names a character: 'like a dog')")
    p.add_argument("--name", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default=None)
    p.add_argument("--out", default=None, help="profile path (default: profiles/NAME.json)")
    p.add_argument("--json", action="store_true", help="one JSON object per line per epoch, then a final line")
    p.set_defaults(func=cmd_autosteer)


def _make_run(args):
    from ..autosteer.factory import make_autosteer
    from ..llm import LLMClient, LLMError

    try:
        cfg = AutoSteerConfig(
            behavior=args.behavior, prompts=args.prompt, epochs=args.epochs, features=args.features,
            candidates=args.candidates, screen=args.screen, threshold=args.threshold, max_new_tokens=args.max_new_tokens,
            heldout=args.heldout or list(DEFAULT_HELDOUT), name=args.name, seed=args.seed, mode=args.mode,
            opening=args.opening,
        )
        client = None
        if args.judge == "llm" or args.optimiser == "llm" or args.llm_base_url:
            client = LLMClient.from_env(args.llm_base_url, args.llm_model)
        return make_autosteer(cfg, args.judge, args.optimiser, client, args.preset)
    except (ValueError, LLMError) as exc:
        raise UsageError(str(exc)) from exc


def cmd_autosteer(args) -> int:
    from tqdm import tqdm

    from ..autosteer.events import follow
    from ..autosteer.judges import JudgeError
    from ..llm import LLMError
    from .views import JsonLines, Terminal

    if args.out:
        writable_file(args.out, "--out")  # before the run, not after minutes of it
    run = _make_run(args)
    out = Path(args.out or f"profiles/{run.cfg.name}.json")
    bar = None if args.json else tqdm(total=run.cfg.epochs, desc="epochs", unit="epoch", file=sys.stderr)
    view = JsonLines(run, out) if args.json else Terminal(run.cfg, out, bar)
    try:
        for _ in follow(run.run(), view):
            pass
    except (LLMError, JudgeError) as exc:
        raise UsageError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    return 0
