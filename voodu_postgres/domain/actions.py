"""Dispatch actions in Voodu's exact wire shape.

An action is how a plugin asks the controller to change state (write a config bucket, store a
manifest, run a job …). The JSON field names and their order are a contract with the
controller (behavior.md §1.2–1.3): ``type, scope, name, kv?, keys?, skip_restart?, manifest?,
kind?, command?, remote_path?, dest_path?, size_bytes?, summary?``; ``scope`` and ``name`` are
always present, ``skip_restart`` only when true. Standalone mode applies the same actions to
its own store, so both modes share one vocabulary.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Action:
    type: str
    scope: str
    name: str
    kv: dict[str, str] | None = None
    keys: list[str] | None = None
    skip_restart: bool = False
    manifest: dict[str, Any] | None = None
    kind: str | None = None
    command: list[str] | None = None
    remote_path: str | None = None
    dest_path: str | None = None
    size_bytes: int | None = None
    summary: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON object, fields in the controller's order, optional ones omitted."""
        out: dict[str, Any] = {"type": self.type, "scope": self.scope, "name": self.name}
        if self.kv is not None:
            out["kv"] = dict(sorted(self.kv.items()))
        if self.keys is not None:
            out["keys"] = list(self.keys)
        if self.skip_restart:
            out["skip_restart"] = True
        for key in ("manifest", "kind", "command", "remote_path", "dest_path", "size_bytes", "summary"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def describe(self) -> str:
        """A human line with secret values hidden, e.g. ``config_set data/main: K1,K2``."""
        target = f"{self.scope}/{self.name}" if self.scope else self.name
        if self.summary:
            return self.summary
        if self.kv is not None:
            return f"{self.type} {target}: {','.join(sorted(self.kv))}"
        if self.keys is not None:
            return f"{self.type} {target}: {','.join(self.keys)}"
        return f"{self.type} {target}"


def config_set(scope: str, name: str, kv: dict[str, str], *, skip_restart: bool = False) -> Action:
    return Action("config_set", scope, name, kv=kv, skip_restart=skip_restart)

