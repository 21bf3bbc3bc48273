"""Statefulset manifest → the concrete container for one ordinal (what Voodu's controller does).

Standalone mode has no controller, so this module performs its translation (voodu-platform.md
§3.2–3.4) as a pure function: container name, labels, identity env, the bucket→env merge, DNS
aliases, named data volumes, resolved asset bind mounts, loopback port policy, resource limits
and a Docker healthcheck derived from the readiness probe. The runtime then only has to hand a
:class:`PodSpec` to Docker.

Names and labels are exactly Voodu's, so a later ``vd apply`` on the same host can adopt pods
created here.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voodu_postgres.domain.errors import VooduError
from voodu_postgres.domain.keys import PASSWORD_KEY
from voodu_postgres.domain.naming import Ref

STATE_MOUNT = "/run/voodu-postgres"
_ASSET_RE = re.compile(r"\$\{asset\.([^}]+)\}")
_DURATION_RE = re.compile(r"(\d+)(ms|s|m|h)")
_MEMORY_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}

#: keys excluded from the spec hash, as in Voodu: changing them must not roll pods
_HASH_EXCLUDED = frozenset({"replicas", "health_check", "env_from", "on_probe"})


class PodSpecError(VooduError, ValueError):
    """The manifest cannot be turned into a container (e.g. an unknown asset reference)."""


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    mode: str = "rw"


@dataclass(frozen=True)
class PortBind:
    host_ip: str
    host_port: int | None
    container_port: int


@dataclass(frozen=True)
class HealthCheck:
    test: list[str]
    interval_s: float
    timeout_s: float
    retries: int
    start_period_s: float


@dataclass(frozen=True)
class PodSpec:
    ref: Ref
    ordinal: int
    container: str
    image: str
    command: list[str]
    env: dict[str, str]
    labels: dict[str, str]
    binds: list[Bind]
    volumes: dict[str, str]  # named volume → mount path
    ports: list[PortBind]
    network: str
    aliases: list[str]
    restart: str = "unless-stopped"
    nano_cpus: int | None = None
    mem_limit: int | None = None
    healthcheck: HealthCheck | None = None
    spec_hash: str = ""
    volume_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    cap_add: list[str] = field(default_factory=list)
    extra_hosts: dict[str, str] = field(default_factory=dict)
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    log_max_size: str = "10m"
    log_max_files: int = 3


#: statefulset keys only Voodu's controller implements; standalone apply ignores them (and says so)
CONTROLLER_ONLY_KEYS = ("docker_options", "network", "networks", "network_mode", "env_from", "inits",
                        "build", "dockerfile", "workdir", "path", "lang", "on_probe", "depends_on")


def parse_ulimit(name: str, value: object) -> tuple[int, int]:
    text = str(value)
    soft, _, hard = text.partition(":")
    try:
        return int(soft), int(hard or soft)
    except ValueError as exc:
        raise PodSpecError(f'invalid ulimit {name} = "{text}" (expected soft:hard)') from exc


#: env values that are secrets a live rotation changes (``new-password``): a pod reads them only
#: at initdb / from its state file, so a new value must not recreate every pod
_HASH_EXCLUDED_ENV = frozenset({PASSWORD_KEY, "PG_REPLICATION_PASSWORD"})


def spec_hash(statefulset: Mapping[str, Any], asset_digests: Mapping[str, str]) -> str:
    """sha256 over the pod-shaping fields plus the asset digests (so a changed script rolls pods)."""
    shaped = {k: v for k, v in statefulset.items() if k not in _HASH_EXCLUDED}
    if isinstance(shaped.get("env"), Mapping):
        shaped["env"] = {k: v for k, v in shaped["env"].items() if k not in _HASH_EXCLUDED_ENV}
    payload = json.dumps({"spec": shaped, "assets": dict(sorted(asset_digests.items()))}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def parse_duration(text: object, default: float) -> float:
    """``"20s"``, ``"1m"``, ``"500ms"`` → seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or not text:
        return default
    total, pos = 0.0, 0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            raise PodSpecError(f'invalid duration "{text}"')
        value, unit = int(match.group(1)), match.group(2)
        total += value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        pos = match.end()
    if pos != len(text):
        raise PodSpecError(f'invalid duration "{text}"')
    return total


def parse_cpus(text: str) -> int:
    """CPU quantity → Docker NanoCPUs (``"500m"`` → 500_000_000)."""
    cpus = int(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return int(round(cpus * 1e9))


def parse_memory(text: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|K|M|G|T)?", text)
    if not match:
        raise PodSpecError(f'invalid memory quantity "{text}"')
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2) or ""]


def parse_port(text: str) -> PortBind:
    """Voodu's port normalisation: ``"5432"`` → loopback, random host port; three parts pass through."""
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return PortBind("127.0.0.1", None, int(parts[0]))
        if len(parts) == 2:
            return PortBind("127.0.0.1", int(parts[0]), int(parts[1]))
        if len(parts) == 3:
            return PortBind(parts[0], int(parts[1]) if parts[1] else None, int(parts[2]))
    except ValueError:
        pass
    raise PodSpecError(f'invalid port "{text}"')


def _healthcheck(probes: Mapping[str, Any]) -> HealthCheck | None:
    # Docker has one healthcheck per container; readiness ("actually serving") is the signal
    # every later step waits on, so it wins over liveness when both exist.
    probe = probes.get("readiness") or probes.get("liveness") or probes.get("startup")
    if not isinstance(probe, Mapping):
        return None
    if isinstance(probe.get("exec"), Mapping):
        test = ["CMD", *[str(a) for a in probe["exec"].get("command", [])]]
    elif isinstance(probe.get("tcp_socket"), Mapping):
        port = int(probe["tcp_socket"].get("port", 5432))
        test = ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]
    else:
        return None
    return HealthCheck(
        test=test,
        interval_s=parse_duration(probe.get("period"), 10.0),
        timeout_s=parse_duration(probe.get("timeout"), 5.0),
        retries=int(probe.get("failure_threshold", 3)),
        start_period_s=parse_duration(probe.get("initial_delay"), 0.0),
    )


def resolve_asset(text: str, ref: Ref, asset_paths: Mapping[str, str]) -> str:
    """Replace ``${asset.scope.name.key}`` with the host path of that asset file."""

    def sub(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        owner = Ref(parts[0], parts[1]) if len(parts) == 3 else Ref("", parts[0])
        key = parts[-1]
        if owner != ref or key not in asset_paths:
            raise PodSpecError(f"asset not found: {match.group(0)}")
        return asset_paths[key]

    return _ASSET_RE.sub(sub, text)


def build_pod(
    manifest: Mapping[str, Any],
    ordinal: int,
    *,
    asset_paths: Mapping[str, str],
    asset_digests: Mapping[str, str],
    bucket: Mapping[str, str],
    network: str,
    extra_labels: Mapping[str, str] | None = None,
    state_dir: str | None = None,
) -> PodSpec:
    """The container for ``ordinal`` of a statefulset manifest ``{kind, scope?, name, spec}``.

    ``state_dir`` (standalone mode) is a host directory mounted read-only at
    ``/run/voodu-postgres``: mutable cluster state, such as the primary ordinal, that the
    entrypoint prefers over its creation-time env.
    """
    ref = Ref(str(manifest.get("scope", "")), str(manifest["name"]))
    spec: Mapping[str, Any] = manifest["spec"]
    digest = spec_hash(spec, asset_digests)
    extra = extra_labels or {}

    env = _pod_env(spec, ref, ordinal, bucket, asset_paths)
    labels = _pod_labels(ref, ordinal, digest, extra)
    binds = _binds(spec, ref, asset_paths)
    if state_dir is not None:
        binds.append(Bind(state_dir, STATE_MOUNT, "ro"))
        digest = hashlib.sha256(f"{digest}:{STATE_MOUNT}".encode()).hexdigest()
        labels["voodu.manifest_hash"] = digest
    volumes, volume_labels = _claim_volumes(spec, ref, ordinal, extra)

    limits = (spec.get("resources") or {}).get("limits") or {}
    # Only the operator's ulimits: Voodu's nofile=65536 default exceeds the hard limit of some
    # hosts (this CI machine among them) and runc then refuses to start the container.
    ulimits = {str(k): v for k, v in (spec.get("ulimits") or {}).items()}
    hosts = _extra_hosts(spec)
    logs = spec.get("logs") or {}
    return PodSpec(
        ref=ref,
        ordinal=ordinal,
        container=ref.container(ordinal),
        image=str(spec["image"]),
        command=[resolve_asset(str(c), ref, asset_paths) for c in spec.get("command", [])],
        env=dict(sorted(env.items())),
        labels=labels,
        binds=binds,
        volumes=volumes,
        ports=[parse_port(str(p)) for p in spec.get("ports", [])],
        network=network,
        aliases=[*ref.pod_aliases(ordinal), *ref.shared_aliases()],
        restart=str(spec.get("restart") or "unless-stopped"),
        nano_cpus=_limit(parse_cpus, limits, "cpu"),
        mem_limit=_limit(parse_memory, limits, "memory"),
        healthcheck=_healthcheck(spec.get("probes") or {}),
        spec_hash=digest,
        volume_labels=volume_labels,
        cap_add=[str(c) for c in spec.get("cap_add") or []],
        extra_hosts=hosts,
        ulimits={name: parse_ulimit(name, value) for name, value in sorted(ulimits.items())},
        log_max_size=str(logs.get("max_size") or "10m"),
        log_max_files=int(logs.get("max_files") or 3),
    )


def _limit(parse: Callable[[str], int], limits: Mapping[str, Any], key: str) -> int | None:
    """One resource limit parsed; None when it is unset or empty (no limit)."""
    return parse(limits[key]) if limits.get(key) else None


def _pod_env(spec: Mapping[str, Any], ref: Ref, ordinal: int, bucket: Mapping[str, str],
             asset_paths: Mapping[str, str]) -> dict[str, str]:
    """Bucket → env, then spec env wins (Voodu's env-file order), then per-pod identity on top."""
    env = {k: v for k, v in bucket.items() if v != ""}
    env.update({k: resolve_asset(str(v), ref, asset_paths) for k, v in spec.get("env", {}).items()})
    env.update({
        "VOODU_SCOPE": ref.scope,
        "VOODU_NAME": ref.name,
        "VOODU_REPLICA_ORDINAL": str(ordinal),
        "VOODU_REPLICA_ID": str(ordinal),
    })
    return env


def _pod_labels(ref: Ref, ordinal: int, digest: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The container's labels, exactly Voodu's so a later ``vd apply`` can adopt the pod."""
    return {
        "createdby": "voodu",
        "voodu.kind": "statefulset",
        "voodu.scope": ref.scope,
        "voodu.name": ref.name,
        "voodu.replica_id": str(ordinal),
        "voodu.replica_ordinal": str(ordinal),
        "voodu.manifest_hash": digest,
        "voodu.role": "statefulset",
        **extra,
    }


def _binds(spec: Mapping[str, Any], ref: Ref, asset_paths: Mapping[str, str]) -> list[Bind]:
    """The ``volumes`` bind mounts (``source:target[:mode]``), asset references resolved."""
    binds = []
    for volume in spec.get("volumes", []):
        parts = resolve_asset(str(volume), ref, asset_paths).split(":")
        if len(parts) < 2:
            raise PodSpecError(f'invalid volume "{volume}"')
        binds.append(Bind(parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return binds


def _claim_volumes(spec: Mapping[str, Any], ref: Ref, ordinal: int,
                   extra: Mapping[str, str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The pod's named volumes (one per ``volume_claims`` entry) → mount path, and their labels."""
    volumes: dict[str, str] = {}
    volume_labels: dict[str, dict[str, str]] = {}
    for claim in spec.get("volume_claims", []):
        name = ref.volume(ordinal, str(claim["name"]))
        volumes[name] = str(claim["mount_path"])
        volume_labels[name] = {
            "createdby": "voodu", "voodu.kind": "statefulset", "voodu.scope": ref.scope,
            "voodu.name": ref.name, "voodu.replica_ordinal": str(ordinal), "voodu.claim": str(claim["name"]),
            **extra,
        }
    return volumes, volume_labels


def _extra_hosts(spec: Mapping[str, Any]) -> dict[str, str]:
    """``host.docker.internal`` plus the operator's ``host:address`` entries."""
    hosts = {"host.docker.internal": "host-gateway"}
    for entry in spec.get("extra_hosts") or []:
        host, sep, address = str(entry).partition(":")
        if not sep:
            raise PodSpecError(f'invalid extra_hosts entry "{entry}" (expected host:address)')
        hosts[host] = address
    return hosts
