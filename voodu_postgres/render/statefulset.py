"""The statefulset and asset manifests, in Voodu's wire shape.

``render_statefulset`` builds the plugin's default spec (image, env contract of the official
postgres image, asset bind mounts, the per-pod data claim, loopback ports, default probes) and
merges the operator's passthrough keys over it. Merge rules, with the Go plugin's defects fixed
(behavior.md §2, §7.2):

* ``env`` merges per key, operator wins.
* ``volumes`` merge by destination path: an operator entry with the same destination replaces the
  default *in place*; new destinations are appended in the operator's order. Nothing is re-sorted,
  and the required defaults cannot be dropped.
* ``probes`` from the operator replace the defaults entirely (documented behaviour).
* any other key: the operator value replaces the default.

``PG_PRIMARY_ORDINAL`` is never put in ``env``: the controller lets spec env win over the bucket,
so a value here would shadow promote's bucket flip.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from voodu_postgres.domain.keys import PASSWORD_KEY
from voodu_postgres.domain.naming import DATA_CLAIM, DATA_MOUNT, PGDATA
from voodu_postgres.domain.rendered import Rendered
from voodu_postgres.domain.spec import PostgresSpec

WRAPPER_PATH = "/usr/local/bin/voodu-postgres-entrypoint"

#: asset key → mount path inside every pod (the files' wire names and paths).
ASSET_MOUNTS: dict[str, str] = {
    "entrypoint": WRAPPER_PATH,
    "pg_overrides_conf": "/etc/postgresql/conf.d/voodu-99-overrides.conf",
    "streaming_conf": "/etc/postgresql/conf.d/voodu-50-streaming.conf",
    "init_replication_sh": "/docker-entrypoint-initdb.d/00_create_replication.sh",
}
BACKUPS_MOUNT = "/backups"


def pg_isready_argv(spec: PostgresSpec) -> list[str]:
    # -h 127.0.0.1: over the unix socket pg_isready also answers "ready" for the temporary
    # server the image runs during initdb, which is not yet the real, reachable server.
    return ["pg_isready", "-h", "127.0.0.1", "-U", spec.user, "-d", spec.database, "-p", str(spec.port)]


def default_probes(spec: PostgresSpec) -> dict[str, Any]:
    return {
        "liveness": {
            "tcp_socket": {"port": spec.port},
            "initial_delay": "20s",
            "period": "10s",
            "failure_threshold": 3,
        },
        "readiness": {
            "exec": {"command": pg_isready_argv(spec)},
            "period": "5s",
            "failure_threshold": 1,
            "success_threshold": 2,
        },
    }


def ports_for(spec: PostgresSpec, *, exposed: bool) -> list[str]:
    # Three-part form when exposed: Voodu rewrites a two-part "0.0.0.0:5432" into an invalid
    # "127.0.0.1:0.0.0.0:5432" (voodu-platform.md §3.3). A bare port is a loopback bind.
    return [f"0.0.0.0:{spec.port}:{spec.port}"] if exposed else [str(spec.port)]


def base_env(spec: PostgresSpec, *, password: str, replication_password: str) -> dict[str, str]:
    return {
        "POSTGRES_USER": spec.user,
        "POSTGRES_DB": spec.database,
        PASSWORD_KEY: password,
        "POSTGRES_INITDB_ARGS": f"--locale={spec.initdb_locale} --encoding={spec.initdb_encoding}",
        "PGDATA": PGDATA,
        "PG_PORT": str(spec.port),
        "PG_NAME": spec.name,
        "PG_SCOPE_SUFFIX": spec.ref.scope_suffix,
        "PG_REPLICATION_USER": spec.replication_user,
        "PG_REPLICATION_PASSWORD": replication_password,
    }


def volume_destination(volume: str) -> str:
    """The destination of ``src:dst[:mode]`` (the merge key); a string without ``:`` is its own key."""
    parts = volume.split(":")
    return parts[1] if len(parts) >= 2 else volume


def merge_volumes(defaults: list[str], operator: list[str]) -> list[str]:
    merged = list(defaults)
    index = {volume_destination(v): i for i, v in enumerate(merged)}
    for volume in operator:
        dest = volume_destination(volume)
        if dest in index:
            merged[index[dest]] = volume
        else:
            index[dest] = len(merged)
            merged.append(volume)
    return merged


def render_statefulset(
    spec: PostgresSpec, *, password: str, replication_password: str, exposed: bool
) -> dict[str, Any]:
    """The statefulset manifest ``{kind, scope, name, spec}`` for this postgres block."""
    ref = spec.ref
    volumes = [f"{ref.asset_ref(key)}:{path}:ro" for key, path in ASSET_MOUNTS.items()]
    volumes.append(f"{ref.backups_dir()}:{BACKUPS_MOUNT}:rw")
    body: dict[str, Any] = {
        "image": spec.image,
        "replicas": spec.replicas,
        "ports": ports_for(spec, exposed=exposed),
        "command": ["bash", WRAPPER_PATH],
        "health_check": " ".join(pg_isready_argv(spec)),
        "probes": default_probes(spec),
        "volume_claims": [{"name": DATA_CLAIM, "mount_path": DATA_MOUNT}],
        "volumes": volumes,
        "env": base_env(spec, password=password, replication_password=replication_password),
    }
    for key, value in spec.passthrough.items():
        if key == "env":
            body["env"] = {**body["env"], **value}
        elif key == "volumes":
            body["volumes"] = merge_volumes(body["volumes"], value)
        elif key == "volume_claims":
            # merged by claim name: the `data` claim holds PGDATA and can never be dropped
            claims = {c["name"]: c for c in body["volume_claims"]}
            claims.update({c["name"]: c for c in value})
            body["volume_claims"] = list(claims.values())
        else:
            body[key] = value
    return manifest("statefulset", ref.scope, ref.name, dict(sorted(body.items())))


def render_asset(spec: PostgresSpec, files: list[Rendered]) -> dict[str, Any]:
    """The asset manifest carrying the rendered files as literal strings, keyed by asset key."""
    return manifest(
        "asset", spec.scope, spec.name, {"files": {f.name: f.text for f in sorted(files, key=lambda f: f.name)}}
    )


def manifest(kind: str, scope: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``{kind, scope?, name, spec}`` — scope omitted when empty, as the Go plugin does."""
    out: dict[str, Any] = {"kind": kind}
    if scope:
        out["scope"] = scope
    out["name"] = name
    out["spec"] = body
    return out
