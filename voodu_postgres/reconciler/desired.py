"""Desired state: (validated spec, seeded bucket) → everything that should exist for a resource.

Pure: the asset directory is only a path here (the runtime writes the files), and the pods are
:class:`PodSpec` values built by :mod:`podspec`.

The pod hash deliberately leaves out the ``pg_config`` overrides file: a ``pg_config`` change is
applied by rewriting that file and reloading, and only the parameters Postgres itself reports as
``pending_restart`` cause a (rolling) restart. Everything else that shapes a container — image,
env, resources, the wrapper script — is in the hash, so a change there recreates pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from voodu_postgres.domain.keys import (
    PASSWORD_KEY,
    PENDING_SUFFIX,
)
from voodu_postgres.domain.model import Desired, FailoverPolicy
from voodu_postgres.domain.podspec import PodSpec, build_pod
from voodu_postgres.domain.record import ClusterRecord
from voodu_postgres.domain.spec import PostgresSpec
from voodu_postgres.render.expansion import expand

OVERRIDES_KEY = "pg_overrides_conf"


def assets_dir_for(home: Path, spec: PostgresSpec) -> Path:
    return home / "assets" / (spec.scope or "_unscoped") / spec.name


def state_dir_for(home: Path, spec: PostgresSpec) -> Path:
    """Mutable per-cluster state mounted into pods (the primary ordinal promote moves)."""
    return home / "runtime" / (spec.scope or "_unscoped") / spec.name


def derive(
    spec: PostgresSpec,
    bucket: Mapping[str, str],
    *,
    assets_dir: Path,
    network: str,
    extra_labels: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
) -> Desired:
    """Desired state for one resource; ``bucket`` must already hold the seeded secrets."""
    expansion = expand(spec, bucket)
    if expansion.actions:
        missing = ", ".join(sorted(k for a in expansion.actions for k in (a.kv or {})))
        raise ValueError(f"bucket for {spec.ref} is not seeded yet ({missing}); apply the seed actions first")
    statefulset = expansion.manifests[1]
    paths = {f.name: str(assets_dir / f.name) for f in expansion.files}
    digests = {f.name: f.sha256 for f in expansion.files if f.name != OVERRIDES_KEY}
    overrides = next(f for f in expansion.files if f.name == OVERRIDES_KEY)
    pods = tuple(
        _own_host_port(build_pod(statefulset, ordinal, asset_paths=paths, asset_digests=digests, bucket=bucket,
                                 network=network, extra_labels=extra_labels,
                                 state_dir=str(state_dir) if state_dir is not None else None))
        for ordinal in range(spec.replicas)
    )
    record = ClusterRecord.of(bucket)
    target = record.primary
    return Desired(
        ref=spec.ref,
        replicas=spec.replicas,
        target_primary=target,
        port=spec.port,
        user=spec.user,
        database=spec.database,
        pods=pods,
        files=tuple(expansion.files),
        overrides_sha=overrides.sha256,
        network=network,
        statefulset=statefulset,
        switchover=record.switchover,
        switchover_request=record.request,
        rejoin=record.rejoin,
        sync_names=sync_standby_names(spec, target) if spec.synchronous else None,
        auto_failover=FailoverPolicy(spec.failover_timeout, spec.max_lag_on_failover) if spec.auto_failover
        else None,
        # the cooldown only counts a failover that happened (its target became the primary)
        last_failover_at=record.last_failover_at,
        failover_fencing=record.failover_fencing,
        passwords=tuple(p for p in (bucket.get(PASSWORD_KEY, ""), bucket.get(PASSWORD_KEY + PENDING_SUFFIX, "")) if p),
    )


def _own_host_port(pod: PodSpec) -> PodSpec:
    """Give each pod its own host port when the cluster is published on a fixed one.

    Voodu applies one port list to every pod, so only one pod could bind ``0.0.0.0:5432``;
    standalone runs the containers itself and publishes pod N on ``5432 + N`` instead (``info``
    shows where each pod is). Random loopback ports need no change.
    """
    moved = [replace(p, host_port=p.host_port + pod.ordinal) if p.host_port is not None else p for p in pod.ports]
    return replace(pod, ports=moved)


def sync_standby_names(spec: PostgresSpec, primary: int) -> str:
    """``ANY 1 ("db-1", "db-2")``: a commit waits until any one standby has flushed it.

    Explicit names rather than ``*``: a ``pg_basebackup`` streaming WAL would match ``*`` and
    could acknowledge commits that no real standby holds.
    """
    names = ", ".join(f'"{spec.name}-{o}"' for o in range(spec.replicas) if o != primary)
    return f"ANY 1 ({names})"
