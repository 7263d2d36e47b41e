"""What every command line of the project shares: the usage error and the exit-code contract
(0 success, 2 bad input with a one-line error, 1 anything unexpected, 130 interrupted)."""

from __future__ import annotations

import argparse
import logging
import math
import sys

from ..errors import InputError


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (e.g. --max-new-tokens)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def temperature(text: str) -> float:
    """argparse type: a sampling temperature, 0 (greedy) to 5."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 5.0):
        raise argparse.ArgumentTypeError(f"must be between 0 (greedy) and 5, got {text}")
    return value


def run_main(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv`, configure logging (-v), run the chosen command's `func`, map errors to exit codes."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, InputError, FileNotFoundError) as exc:  # InputError: a malformed profile, an unknown preset
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
