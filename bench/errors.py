"""Errors that are the user's to fix: the CLI prints them on one line and exits 2."""

import sys


class UsageError(Exception):
    """Bad input (unknown name, wrong type, malformed file): one line, exit 2, nothing written."""


def warn(msg: str) -> None:
    """A one-line warning on stderr: something the user should know that does not stop us."""
    print(f"warning: {msg}", file=sys.stderr, flush=True)
