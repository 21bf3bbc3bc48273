"""Read-only effects: build an :class:`Observed` snapshot of one resource from Docker and Postgres.

Pods are found by Voodu's labels (``voodu.scope``/``voodu.name``), never by guessing names.
Postgres is asked through ``docker exec psql -h 127.0.0.1`` inside each running pod: TCP on
loopback, which the image's pg_hba trusts, so no password is needed — and, unlike the unix
socket, it is never answered by the temporary server the image runs during initdb (which would
make a half-initialised primary look ready). One query per pod returns everything as JSON.

Observation never raises for one bad pod: an unreachable pod is recorded with its error and the
planner decides what that means (Patroni/CNPG style partial snapshots). Pods are queried in
parallel so a pass stays fast as the cluster grows.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from voodu_postgres.adapters.docker import ContainerInfo, Runtime, RuntimeFailure
from voodu_postgres.adapters.files import file_digests
from voodu_postgres.domain.model import Desired, Observed, PendingSetting, PgStatus, PodStatus, Replica
from voodu_postgres.domain.naming import Ref

GUARD_LOG_MARKER = "refusing to start replica"

# pg_current_wal_lsn() raises during recovery, so primary-only parts sit behind CASE.
STATUS_SQL = """
SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'timeline', CASE WHEN pg_is_in_recovery()
                   THEN (SELECT received_tli FROM pg_stat_wal_receiver)
                   ELSE (SELECT timeline_id FROM pg_control_checkpoint()) END,
  'lsn', CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text
              ELSE pg_current_wal_lsn()::text END,
  'pending', (SELECT coalesce(json_agg(json_build_object(
                 'name', s.name, 'current', s.setting, 'next', f.setting) ORDER BY s.name), '[]'::json)
               FROM pg_settings s
               LEFT JOIN LATERAL (SELECT fs.setting FROM pg_file_settings fs
                                  WHERE fs.name = s.name ORDER BY fs.seqno DESC LIMIT 1) f ON true
               WHERE s.pending_restart),
  'sync_auto', (SELECT setting FROM pg_file_settings WHERE name = 'synchronous_standby_names'
                AND sourcefile LIKE '%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1),
  'boot_overrides', (SELECT coalesce(json_agg(name ORDER BY name), '[]'::json) FROM pg_settings
                     WHERE sourcefile LIKE '%/voodu-runtime.conf' AND name <> 'primary_conninfo'),
  'receiver_status', (SELECT status FROM pg_stat_wal_receiver),
  'received_lsn', CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text END,
  'receiver_host', (SELECT sender_host FROM pg_stat_wal_receiver),
  'conninfo_host', CASE WHEN pg_is_in_recovery()
                        THEN substring(current_setting('primary_conninfo') from 'host=([^ ]+)') END,
  'replicas', CASE WHEN pg_is_in_recovery() THEN '[]'::json ELSE (
      SELECT coalesce(json_agg(json_build_object(
               'application_name', application_name, 'state', state,
               'lag_bytes', pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint)
             ORDER BY application_name), '[]'::json)
      FROM pg_stat_replication) END
)
"""


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


def parse_status(output: str) -> PgStatus:
    data = json.loads(output.strip().splitlines()[-1])
    return PgStatus(
        in_recovery=bool(data["in_recovery"]),
        timeline=data.get("timeline"),
        lsn=data.get("lsn"),
        pending=tuple(PendingSetting(p["name"], str(p["current"]), None if p.get("next") is None else str(p["next"]))
                      for p in data.get("pending") or []),
        receiver_status=data.get("receiver_status"),
        receiver_host=data.get("receiver_host"),
        conninfo_host=data.get("conninfo_host"),
        received_lsn=data.get("received_lsn"),
        sync_auto=data.get("sync_auto"),
        boot_overrides=tuple(data.get("boot_overrides") or ()),
        replicas=tuple(
            Replica(r["application_name"], r["state"], r.get("lag_bytes")) for r in data.get("replicas") or []
        ),
    )


def resource_labels(ref: Ref) -> dict[str, str]:
    """Voodu's labels that identify every pod of one statefulset resource."""
    return {"voodu.kind": "statefulset", "voodu.scope": ref.scope, "voodu.name": ref.name}


def query_pg(runtime: Runtime, container: str, *, port: int, user: str,
             database: str) -> tuple[PgStatus | None, str | None]:
    try:
        output = run_sql(runtime, container, port=port, user=user, database=database, sql=STATUS_SQL)
    except RuntimeFailure as exc:
        return None, str(exc)
    try:
        return parse_status(output), None
    except (ValueError, KeyError, IndexError) as exc:
        return None, f"unexpected status output: {exc}"


def _pod_status(runtime: Runtime, info: ContainerInfo, ordinal: int, desired: Desired,
                volumes: set[str]) -> PodStatus:
    pg, error = (None, None)
    guard = False
    if info.state == "running":
        # ask each pod on the port, user and database it was created with: after a change of
        # `port` the pods still listen on the old one until they are recreated
        pg, error = query_pg(runtime, info.name, port=info.port or desired.port,
                             user=info.identity.get("POSTGRES_USER") or desired.user,
                             database=info.identity.get("POSTGRES_DB") or desired.database)
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
