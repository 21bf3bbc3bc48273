"""The ``expand`` macro: (postgres spec, merged config bucket) → manifests + bucket actions.

Voodu calls this on every ``vd apply``; standalone ``apply`` calls it in-process. Its output must
be deterministic for the same spec and bucket, because any change in the emitted statefulset or
asset changes the spec hash and rolls every pod. Randomness (passwords) is therefore generated
once, returned as ``config_set`` actions, and read back from the bucket on later applies.

Seeding rules (behavior.md §3, with the HCL-password defect fixed):

1. ``POSTGRES_PASSWORD`` — the HCL value when given, else the bucket's, else 64 fresh hex chars.
   It is written whenever the bucket does not already hold exactly that value, so link, capture
   and info work with an HCL password too.
2. ``POSTGRES_REPLICATION_PASSWORD`` — the bucket's, else generated.
3. ``PG_PRIMARY_ORDINAL=0`` (skip_restart) whenever the bucket has none.
4. ``BACKUP_KEEP=30`` on the first apply (no superuser password in the bucket yet) unless the
   operator pre-seeded a value; an operator's ``0`` is never overwritten.

Pure except for the injectable password generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voodu_postgres.domain.actions import Action, config_set
from voodu_postgres.domain.keys import (
    BACKUP_KEEP_KEY,
    DEFAULT_BACKUP_KEEP,
    EXPOSE_KEY,
    PASSWORD_KEY,
    PRIMARY_ORDINAL_KEY,
    REPLICATION_PASSWORD_KEY,
    generate_password,
)
from voodu_postgres.domain.rendered import Rendered
from voodu_postgres.domain.spec import PostgresSpec
from voodu_postgres.render.entrypoint import render_entrypoint
from voodu_postgres.render.initdb import render_init_replication_sh
from voodu_postgres.render.pgconf import render_overrides_conf, render_streaming_conf
from voodu_postgres.render.statefulset import render_asset, render_statefulset


@dataclass(frozen=True)
class Expansion:
    """What expand produces for one block."""

    files: list[Rendered]
    manifests: list[dict[str, Any]]
    actions: list[Action] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"manifests": self.manifests}
        if self.actions:
            out["actions"] = [a.to_wire() for a in self.actions]
        return out


def render_files(spec: PostgresSpec) -> list[Rendered]:
    """The four asset files; only the overrides depend on the spec."""
    return [
        render_entrypoint(),
        render_overrides_conf(spec.pg_config),
        render_streaming_conf(),
        render_init_replication_sh(),
    ]






def expand(
    spec: PostgresSpec,
    bucket: Mapping[str, str],
    *,
    generate: Callable[[], str] = generate_password,
) -> Expansion:
    """Expand one postgres block against its merged config bucket (empty values mean unset)."""
    config = {k: v for k, v in bucket.items() if v != ""}
    scope, name = spec.scope, spec.name
    actions: list[Action] = []

    first_apply = PASSWORD_KEY not in config
    password = spec.password.get_secret_value() or config.get(PASSWORD_KEY) or generate()
    if config.get(PASSWORD_KEY) != password:
        actions.append(config_set(scope, name, {PASSWORD_KEY: password}))

    replication_password = config.get(REPLICATION_PASSWORD_KEY) or generate()
    if REPLICATION_PASSWORD_KEY not in config:
        actions.append(config_set(scope, name, {REPLICATION_PASSWORD_KEY: replication_password}))

    if PRIMARY_ORDINAL_KEY not in config:
        actions.append(config_set(scope, name, {PRIMARY_ORDINAL_KEY: "0"}, skip_restart=True))

    if first_apply and BACKUP_KEEP_KEY not in config:
        actions.append(config_set(scope, name, {BACKUP_KEEP_KEY: DEFAULT_BACKUP_KEEP}))

    files = render_files(spec)
    statefulset = render_statefulset(
        spec,
        password=password,
        replication_password=replication_password,
        exposed=config.get(EXPOSE_KEY) == "true",
    )
    return Expansion(files=files, manifests=[render_asset(spec, files), statefulset], actions=actions)
