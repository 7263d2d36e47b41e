"""What every command line of the project shares: the usage error and the exit-code contract
(0 success, 2 bad input with a one-line error, 1 anything unexpected, 130 interrupted)."""

from __future__ import annotations

import argparse
import logging
import math
import sys

from ..errors import InputError, OfflineError


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}" if least == 1 else f"must be {least} or more, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (e.g. --max-new-tokens)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (e.g. --limit, where 0 means no limit)."""
    return _whole_number(text, 0)


def writable_file(path: str, flag: str) -> None:
    """UsageError unless a file can be written at `path`: not a folder, and its parent is a folder
    (or can become one). Checked before any long work, so none is lost at the end."""
    from pathlib import Path  # local: pathlib is all it needs; the module stays import-light

    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name, e.g. {target / 'profile.json'}")
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"{flag} {path}: {parent} is a file, not a folder")


def empty_folder(path: str, flag: str) -> None:
    """UsageError unless `path` is a new or empty folder (an export never mixes with another)."""
    from pathlib import Path  # local: as above

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{flag} {path} is a file; give a new folder")
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(f"{flag} {path} already holds files; give a new or empty folder")


def temperature(text: str) -> float:
    """argparse type: a sampling temperature, 0 (greedy) to 5."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and 0.0 <= value <= 5.0):
        raise argparse.ArgumentTypeError(f"must be between 0 (greedy) and 5, got {text}")
    return value


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its subcommands nowhere public
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            yield action


def _with_defaults(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's --help shows each option's default ("(default: 6)") where it has one."""
    for action in _subparsers(parser):
        for sub in action.choices.values():
            for option in sub._actions:  # noqa: SLF001
                shown = option.default not in (None, False, argparse.SUPPRESS) and "default" not in (option.help or "")
                if option.option_strings and not option.required and shown:
                    option.help = f"{option.help} (default: %(default)s)" if option.help else "default: %(default)s"
            _with_defaults(sub)


def _chosen(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)command parser `argv` names: its usage is the one a mistake should show."""
    for action in _subparsers(parser):
        for i, token in enumerate(argv):
            if token in action.choices:
                return _chosen(action.choices[token], argv[i + 1 :])
    return parser


def run_main(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse `argv`, configure logging (-v), run the chosen command's `func`, map errors to exit codes."""
    argv = sys.argv[1:] if argv is None else list(argv)
    _with_defaults(parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # "features search dogs --top 3": show `features search`'s usage, not the top level's
        _chosen(parser, argv).error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (UsageError, InputError, FileNotFoundError, OfflineError) as exc:  # a malformed profile, an unknown preset, no network
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
