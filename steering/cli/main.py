"""Command line for the steering engine: `python -m steering COMMAND ...` (contract: docs/cli.md).

Exit codes: 0 success, 2 bad input (one-line error on stderr), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import sys

from . import autosteer, features, profiles, sae
from .common import run_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m steering", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    profiles.add_generate(sub)
    features.add_features(sub)
    profiles.add_export(sub)
    profiles.add_prepare(sub)
    autosteer.add_autosteer(sub)
    sae.add_build_sae(sub)
    features.add_build_index(sub)
    sae.add_evaluate_sae(sub)
    sae.add_calibrate(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
