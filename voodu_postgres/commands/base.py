"""What every command shares: the I/O it may touch (:class:`Env`), exit codes, and its
:class:`Result` — a message for people, data for ``-o json``, and actions in Voodu's vocabulary.

A command *decides*; it does not care where its actions land. The sink chosen by the CLI
carries them out: locally in standalone mode (:mod:`voodu_postgres.commands.sink`), or as the one
JSON envelope Voodu's controller reads in plugin mode.

Pure: no I/O beyond the streams handed in.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TextIO

from voodu_postgres.domain.actions import Action
from voodu_postgres.domain.keys import SECRET_KEYS

PLUGIN_DIR_ENV = "VOODU_PLUGIN_DIR"
NETWORK_ENV = "VOODU_POSTGRES_NETWORK"
LABELS_ENV = "VOODU_POSTGRES_LABELS"
REDACTED = "<redacted>"
_SECRET_RE = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_(READ_)?URL", re.IGNORECASE)


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130


@dataclass
class Env:
    """Everything a command touches from the outside, injectable for in-process tests."""

    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def plugin_mode(self) -> bool:
        """Voodu sets ``$VOODU_PLUGIN_DIR`` for every exec it spawns; standalone never does."""
        return bool(self.environ.get(PLUGIN_DIR_ENV))

    def say(self, line: str) -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def warn(self, line: str) -> None:
        self.stderr.write(line + "\n")
        self.stderr.flush()

    def extra_labels(self) -> dict[str, str]:
        """``$VOODU_POSTGRES_LABELS`` (``k=v,k2=v2``): extra labels on everything created (tests
        use it to find and remove what they made)."""
        out = {}
        for pair in self.environ.get(LABELS_ENV, "").split(","):
            key, sep, value = pair.strip().partition("=")
            if key and sep:
                out[key] = value
        return out


@dataclass
class Result:
    """A command's decision: what to tell the user, what to print for ``-o json``, and what to do.

    ``exit_code`` is set by the sink when an action decides it (``psql`` returns psql's code).
    """

    message: str
    data: dict[str, Any] = field(default_factory=dict)
    actions: list[Action] = field(default_factory=list)
    exit_code: int = ExitStatus.OK


def dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def envelope_ok(env: Env, data: Any) -> None:
    env.stdout.write(dump({"status": "ok", "data": data}) + "\n")


def envelope_error(env: Env, message: str) -> None:
    # stdout, not stderr: the controller reads the envelope there first (voodu-platform.md §1.4)
    env.stdout.write(dump({"status": "error", "error": message}) + "\n")


def is_secret_key(key: str) -> bool:
    return key in SECRET_KEYS or bool(_SECRET_RE.search(key))
