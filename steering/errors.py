"""The error every kind of bad input from a user derives from (a malformed profile, an unknown
preset): the command lines answer it with exit code 2 and one line. Imports nothing, so a command
line can catch it without loading the engine."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a malformed file, an unknown name, a value out of range."""


class OfflineError(RuntimeError):
    """A preset needs a download and the hub cannot be reached (the message says what to do)."""
