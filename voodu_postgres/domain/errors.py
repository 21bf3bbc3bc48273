"""The one root of every error a user is meant to read.

Anything raised as a :class:`VooduError` (or a subclass) is printed by the CLI's error funnel as
one line — exit 2 for :class:`UsageError`, 1 otherwise — and in plugin mode as an error envelope.
Anything else that escapes a command is a bug, and is reported as such (still one line, with a
hint to re-run with ``--traceback``).

Pure: no imports beyond the standard library.
"""

from __future__ import annotations


class VooduError(Exception):
    """A failure the user can act on; its text is the whole message."""

    exit_code = 1


class UsageError(VooduError):
    """Bad command-line usage (unknown flag, missing argument, malformed ref)."""

    exit_code = 2


class CommandError(VooduError):
    """A command refused or failed for a reason the user can act on."""
