"""The app's exception hierarchy: everything the CLI turns into a one-line error."""

from __future__ import annotations


class MyceliumError(Exception):
    """Root of the app's errors; the CLI prints its message and exits with status 2."""


class CLIError(MyceliumError):
    """Bad command-line input: the message names the argument and what would be valid."""
