"""The seam between a command and the world it runs in: standalone (:mod:`.local`) or under
Voodu's controller (:mod:`.plugin`). A command loads :class:`Facts` through a :class:`Mode`,
decides a :class:`Result`, and hands it back to the same mode to carry out — so one decision
serves ``voodu-postgres link …`` and ``vd pg:link …`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from voodu_postgres.commands.apps import consumer_refresh
from voodu_postgres.commands.base import Env, Result
from voodu_postgres.commands.facts import Facts
from voodu_postgres.domain.actions import Action
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.spec import PostgresSpec

if TYPE_CHECKING:
    from voodu_postgres.adapters.docker import DockerRuntime


class Mode(Protocol):
    plugin: bool
    env: Env

    @property
    def runtime(self) -> DockerRuntime: ...

    def load(self, ref_text: str, *, observe: bool) -> Facts:
        """The cluster's facts; with ``observe``, also what Docker and Postgres show now."""
        ...

    def bucket(self, ref_text: str) -> dict[str, str]:
        """Any bucket (a linked consumer's), merged with its scope's."""
        ...

    def record(self, ref: Ref, kv: Mapping[str, str]) -> None:
        """Write to a bucket *now*, without restarting anything: intent recorded before an effect."""
        ...

    def state_dir(self, spec: PostgresSpec) -> Path | None:
        """Standalone's per-cluster state directory mounted into pods (None under Voodu)."""
        ...

    def lease(self, ref_text: str, command: str) -> AbstractContextManager[object]:
        """Hold the cluster's operation lease for a mutating command (standalone only)."""
        ...

    def finish(self, result: Result, *, output: str) -> int:
        """Carry out the result's actions and tell the user; the exit code."""
        ...


def refreshed_consumers(mode: Mode, facts: Facts, *, password: str | None = None,
                        skip_restart: bool = False) -> list[Action]:
    """Writes bringing every linked consumer's URLs up to date with ``facts`` (only what differs)."""
    buckets = {c: mode.bucket(c) for c in facts.consumers()}
    return consumer_refresh(facts, buckets, password=password, skip_restart=skip_restart)
