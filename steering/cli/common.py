"""What every command line of the project shares: the usage error and the exit-code contract
(0 success, 2 bad input with a one-line error, 1 anything unexpected, 130 interrupted)."""

from __future__ import annotations

import argparse
import logging
import sys


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def run_main(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv`, configure logging (-v), run the chosen command's `func`, map errors to exit codes."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
