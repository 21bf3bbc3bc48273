"""What a command decides from: one cluster's spec, bucket, statefulset and (when asked) what
Docker and Postgres show — the same :class:`Facts` in both modes.

Standalone builds them from the recorded spec and the SQLite bucket; under Voodu they come from
the controller (``GET /describe`` returns the *statefulset* the block expanded to, so the
postgres fields are read back from its env, as the Go plugin does: ``POSTGRES_USER``,
``POSTGRES_DB``, ``PG_PORT``, ``PG_REPLICATION_USER``).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voodu_postgres.domain.errors import CommandError
from voodu_postgres.domain.keys import EXPOSE_KEY, LINKED_CONSUMERS_KEY, PASSWORD_KEY, primary_ordinal
from voodu_postgres.domain.model import Desired, Observed, PodStatus
from voodu_postgres.domain.naming import Ref, RefError, parse_ref
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.domain.spec import PostgresSpec, SpecError, load_spec
from voodu_postgres.reconciler.plan import pod_of, roles_of


@dataclass(frozen=True)
class Facts:
    """Everything a command reads about one cluster."""

    spec: PostgresSpec
    bucket: dict[str, str]
    statefulset: dict[str, Any]  # the statefulset spec (wire JSON) as the controller holds it
    desired: Desired | None = None  # with observation: what the cluster should look like
    observed: Observed | None = None  # with observation: every pod as seen now
    plugin_mode: bool = False

    @property
    def ref(self) -> Ref:
        return self.spec.ref

    @property
    def primary(self) -> int:
        return primary_ordinal(self.bucket)

    @property
    def exposed(self) -> bool:
        return self.bucket.get(EXPOSE_KEY) == "true"

    @property
    def password(self) -> str:
        value = self.bucket.get(PASSWORD_KEY, "")
        if not value:
            raise CommandError(f"postgres {self.ref} has no {PASSWORD_KEY} in its config bucket — "
                               "has it been applied?")
        return value

    def consumers(self) -> list[str]:
        return parse_consumers(self.bucket.get(LINKED_CONSUMERS_KEY, ""))

    def pod(self, ordinal: int) -> PodStatus:
        assert self.desired is not None and self.observed is not None, "facts loaded without observation"
        return pod_of(self.desired, self.observed, ordinal)

    def role(self, ordinal: int) -> PodRole:
        assert self.desired is not None and self.observed is not None, "facts loaded without observation"
        return roles_of(self.desired, self.observed)[ordinal]


def parse_consumers(raw: str) -> list[str]:
    """``POSTGRES_LINKED_CONSUMERS`` → refs: split on commas, trimmed, empties and repeats dropped."""
    out: list[str] = []
    for item in raw.split(","):
        text = item.strip()
        if text and text not in out:
            out.append(text)
    return out


def consumer_ref(text: str) -> Ref:
    try:
        return parse_ref(text, what="consumer ref")
    except RefError as exc:
        raise CommandError(str(exc)) from exc


def _env_int(env: Mapping[str, Any], key: str, default: int) -> int:
    raw = str(env.get(key, "")).strip()
    return int(raw) if (raw.isascii() and raw.isdigit()) and int(raw) > 0 else default


def spec_from_statefulset(scope: str, name: str, statefulset: Mapping[str, Any]) -> PostgresSpec:
    """Rebuild the postgres fields a command needs from the statefulset Voodu stores.

    Only what the statefulset carries comes back (image, replicas, user, database, port,
    replication user); ``pg_config`` and ``synchronous`` stay at their defaults.
    """
    env = statefulset.get("env") or {}
    if not isinstance(env, Mapping):
        env = {}
    replicas = statefulset.get("replicas", 1)
    body: dict[str, Any] = {
        "image": str(statefulset.get("image") or ""),
        "replicas": int(replicas) if isinstance(replicas, int | float) and not isinstance(replicas, bool)
        and replicas >= 1 else 1,
        "user": str(env.get("POSTGRES_USER") or ""),
        "database": str(env.get("POSTGRES_DB") or ""),
        "port": _env_int(env, "PG_PORT", 5432),
        "replication_user": str(env.get("PG_REPLICATION_USER") or ""),
    }
    try:
        return load_spec(scope, name, body)
    except SpecError as exc:
        raise CommandError(f"statefulset {Ref(scope, name)} does not look like a postgres cluster: {exc}") from exc
