"""Read-only effects: build an :class:`Observed` snapshot of one resource from Docker and Postgres.

Pods are found by Voodu's labels (``voodu.scope``/``voodu.name``), never by guessing names.
Each running pod's Postgres is asked through the Postgres adapter (psycopg, at the pod's
published address; see :mod:`voodu_postgres.adapters.postgres`): one query per pod returns
everything as JSON. Other statements still run as ``docker exec psql`` inside the pod
(:func:`run_sql`): loopback TCP there, which the image's pg_hba trusts.

Observation never raises for one bad pod: an unreachable pod is recorded with its error and the
planner decides what that means (Patroni/CNPG style partial snapshots). Pods are queried in
parallel so a pass stays fast as the cluster grows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from voodu_postgres.adapters.docker import ContainerInfo, Runtime, RuntimeFailure
from voodu_postgres.adapters.files import file_digests
from voodu_postgres.adapters.postgres import Endpoint
from voodu_postgres.domain.model import Desired, Observed, PgStatus, PodStatus
from voodu_postgres.domain.naming import Ref

GUARD_LOG_MARKER = "refusing to start replica"

def psql_argv(port: int, user: str, database: str, sql: str) -> list[str]:
    return ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
            "-U", user, "-d", database, "-c", sql]


def run_sql(runtime: Runtime, container: str, *, port: int, user: str, database: str, sql: str) -> str:
    """Run one statement in a pod over trusted loopback TCP; its output, or RuntimeFailure
    carrying psql's last line (the error) when it fails."""
    # a hung server must not hang the caller: libpq gives up connecting after this many seconds
    result = runtime.exec(container, psql_argv(port, user, database, sql), env={"PGCONNECT_TIMEOUT": "5"})
    if result.exit_code != 0:
        lines = result.output.strip().splitlines()
        raise RuntimeFailure(lines[-1] if lines else f"psql exited {result.exit_code}")
    return result.output.strip()


def resource_labels(ref: Ref) -> dict[str, str]:
    """Voodu's labels that identify every pod of one statefulset resource."""
    return {"voodu.kind": "statefulset", "voodu.scope": ref.scope, "voodu.name": ref.name}


def endpoint_of(info: ContainerInfo, desired: Desired) -> Endpoint:
    """Where to reach a running pod's Postgres from this host: its published address, as the user
    and database it was created with (after a change of `port` a pod listens on the old one until
    it is recreated), with the bucket's password."""
    port = info.port or desired.port
    published = info.published.get(port, "")
    host, _, host_port = published.rpartition(":")
    if not (host_port.isascii() and host_port.isdigit()):
        raise RuntimeFailure(f"{info.name}: port {port} is not published")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"  # published on every interface: loopback reaches it without leaving the host
    return Endpoint(name=info.name, host=host.strip("[]"), port=int(host_port),
                    user=info.identity.get("POSTGRES_USER") or desired.user,
                    database=info.identity.get("POSTGRES_DB") or desired.database, passwords=desired.passwords)


def pod_endpoint(runtime: Runtime, desired: Desired, ordinal: int) -> Endpoint:
    """Where an effect reaches pod ``ordinal``'s Postgres: the host port its engine publishes for
    the spec's port, as the spec's user and database, named ``db-N`` in messages."""
    return container_endpoint(runtime, desired.ref.container(ordinal), name=desired.app_name(ordinal),
                              port=desired.port, user=desired.user, database=desired.database,
                              passwords=desired.passwords)


def container_endpoint(runtime: Runtime, container: str, *, name: str, port: int, user: str, database: str,
                       passwords: tuple[str, ...]) -> Endpoint:
    """A running container's Postgres at the loopback address its engine publishes ``port`` on."""
    return Endpoint(name=name, host="127.0.0.1", port=runtime.host_port(container, port), user=user,
                    database=database, passwords=passwords)


def query_pg(runtime: Runtime, info: ContainerInfo, desired: Desired) -> tuple[PgStatus | None, str | None]:
    """A running pod's status, or why it could not be read (never raises for one bad pod)."""
    try:
        return runtime.postgres().status(endpoint_of(info, desired)), None
    except RuntimeFailure as exc:
        return None, str(exc)


def _pod_status(runtime: Runtime, info: ContainerInfo, ordinal: int, desired: Desired,
                volumes: set[str]) -> PodStatus:
    pg, error = (None, None)
    guard = False
    if info.state == "running":
        pg, error = query_pg(runtime, info, desired)
    if pg is None and (info.state in ("restarting", "exited") or info.restart_count > 0):
        guard = GUARD_LOG_MARKER in runtime.logs_tail(info.name, 40)
    return PodStatus(
        ordinal=ordinal,
        container=info.name,
        exists=True,
        state=info.state,
        health=info.health,
        spec_hash=info.labels.get("voodu.manifest_hash"),
        restart_count=info.restart_count,
        pg=pg,
        error=error,
        guard_tripped=guard,
        volume_exists=desired.ref.volume(ordinal) in volumes,
        port=info.port,
        published=info.published.get(info.port or desired.port),
        on_network=(desired.network in info.networks) if info.networks is not None else None,
        started_at=info.started_at,
    )


def snapshot(runtime: Runtime, desired: Desired, assets_dir: Path) -> Observed:
    """Observe every ordinal of ``desired.ref`` that has a container or a data volume."""
    ref = desired.ref
    labels = resource_labels(ref)
    containers = runtime.list_containers(labels)
    volumes = set(runtime.list_volumes({"voodu.scope": ref.scope, "voodu.name": ref.name}))
    by_ordinal: dict[int, ContainerInfo] = {}
    for info in containers:
        raw = info.labels.get("voodu.replica_ordinal", "")
        if (raw.isascii() and raw.isdigit()):
            by_ordinal[int(raw)] = info
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(by_ordinal)))) as pool:
        futures = {o: pool.submit(_pod_status, runtime, info, o, desired, volumes)
                   for o, info in by_ordinal.items()}
        pods = {o: f.result() for o, f in futures.items()}
    for name in volumes:  # a data volume without a container is still part of the picture
        prefix = f"voodu-{ref.app_id}-data-"
        if name.startswith(prefix) and (name[len(prefix):].isascii() and name[len(prefix):].isdigit()):
            ordinal = int(name[len(prefix):])
            pods.setdefault(ordinal, PodStatus(ordinal=ordinal, container=ref.container(ordinal),
                                               volume_exists=True))
    return Observed(ref=ref, pods=tuple(pods[o] for o in sorted(pods)),
                    network_exists=runtime.network_exists(desired.network),
                    asset_digests=file_digests(assets_dir))
