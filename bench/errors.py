"""Errors that are the user's to fix: the CLI prints them on one line and exits 2."""


class UsageError(Exception):
    """Bad input (unknown name, wrong type, malformed file): one line, exit 2, nothing written."""
