"""`build-sae` (train the default model's SAE), `evaluate-sae` (its model card) and `calibrate`
(its steering scale)."""

from __future__ import annotations

import dataclasses
import json

from ..sae.build_config import SAEBuildConfig
from .common import UsageError

# The commands import the engine (torch, transformers) when they run, so that building the parser
# (--help, a bad option) stays instant.


def add_build_sae(sub):
    p = sub.add_parser("build-sae", help="train the default model's SAE offline (long: run in the background)")
    for f in dataclasses.fields(SAEBuildConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.set_defaults(func=cmd_build_sae)


def cmd_build_sae(args) -> int:
    from ..sae.train import build_sae

    cfg = SAEBuildConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SAEBuildConfig)})
    print(build_sae(cfg))
    return 0


def add_evaluate_sae(sub):
    p = sub.add_parser("evaluate-sae", help="measure the default SAE (variance explained, L0, dead latents, CE recovered)")
    p.add_argument("--preset", default=None)
    p.add_argument("--questions", type=int, default=120, help="held-out questions the model answers for the test text")
    p.set_defaults(func=cmd_evaluate_sae)


def add_calibrate(sub):
    c = sub.add_parser("calibrate", help="measure the residual norm, set the steering scale, record examples")
    c.add_argument("--preset", default=None)
    c.add_argument("--factor", type=float, default=None, help="scale = factor x median residual norm (default 1.0)")
    c.add_argument("--prompt", default="Tell me about your weekend.")
    c.set_defaults(func=cmd_calibrate)


def _local_sae_preset(name):
    from ..runtime.models import resolve_preset

    preset = resolve_preset(name)
    if preset.sae.local_dir is None:
        raise UsageError(f"preset {preset.id!r} uses a hub SAE; evaluate-sae and calibrate write next to a local SAE")
    return preset


def cmd_evaluate_sae(args) -> int:
    from ..sae.evaluate import evaluate_preset

    print(json.dumps(evaluate_preset(_local_sae_preset(args.preset), args.questions), indent=2))
    return 0


def cmd_calibrate(args) -> int:
    from ..sae.calibrate import calibrate_preset

    calibrate_preset(_local_sae_preset(args.preset), args.factor, args.prompt)
    return 0
