"""Statefulset manifest → container for one ordinal (the controller's translation, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from voodu_postgres.domain.podspec import PodSpecError, build_pod, parse_memory, parse_port
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.render.expansion import expand


def pod(body: dict[str, Any] | None = None, ordinal: int = 1, **kw: Any) -> Any:
    spec = load_spec("shop", "db", {"replicas": 3, **(body or {})})
    bucket: dict[str, str] = {}
    for action in expand(spec, bucket, generate=lambda: "a" * 64).actions:
        bucket.update(action.kv or {})
    manifest = expand(spec, bucket).manifests[1]
    paths = {k: f"/home/assets/{k}" for k in ("entrypoint", "pg_overrides_conf", "streaming_conf",
                                               "init_replication_sh")}
    return build_pod(manifest, ordinal, asset_paths=paths, asset_digests={}, bucket=bucket, network="voodu0", **kw)


def test_identity_names_labels_and_aliases_are_voodus() -> None:
    p = pod()
    assert p.container == "shop-db.1" and p.volumes == {"voodu-shop-db-data-1": "/var/lib/postgresql/data"}
    assert p.labels["voodu.replica_ordinal"] == "1" and p.labels["createdby"] == "voodu"
    assert "db-1.shop.voodu" in p.aliases and "db.shop.voodu" in p.aliases
    assert p.env["VOODU_REPLICA_ORDINAL"] == "1" and p.env["PG_PRIMARY_ORDINAL"] == "0"


def test_asset_refs_resolve_to_host_paths_read_only() -> None:
    binds = {b.target: b for b in pod().binds}
    assert binds["/usr/local/bin/voodu-postgres-entrypoint"].source == "/home/assets/entrypoint"
    assert binds["/usr/local/bin/voodu-postgres-entrypoint"].mode == "ro"


def test_loopback_port_and_limits() -> None:
    p = pod({"resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}})
    assert [(b.host_ip, b.host_port, b.container_port) for b in p.ports] == [("127.0.0.1", None, 5432)]
    assert p.nano_cpus == 500_000_000 and p.mem_limit == 2**30


def test_voodu_defaults_and_operator_overrides_for_ulimits_logs_hosts() -> None:
    p = pod({"ulimits": {"nofile": "1024:2048"}, "logs": {"max_size": "5m", "max_files": 2},
             "extra_hosts": ["db.internal:10.0.0.5"], "cap_add": ["SYS_PTRACE"]})
    assert p.ulimits == {"nofile": (1024, 2048)}
    assert (p.log_max_size, p.log_max_files) == ("5m", 2)
    assert p.extra_hosts == {"host.docker.internal": "host-gateway", "db.internal": "10.0.0.5"}
    assert p.cap_add == ["SYS_PTRACE"]


def test_readiness_probe_becomes_the_docker_healthcheck() -> None:
    hc = pod().healthcheck
    assert hc is not None and hc.test[:4] == ["CMD", "pg_isready", "-h", "127.0.0.1"]
    assert hc.interval_s == 5 and hc.retries == 1


def test_state_dir_mount_changes_the_hash() -> None:
    assert pod().spec_hash != pod(state_dir="/home/runtime/shop/db").spec_hash


@pytest.mark.parametrize("text,bind", [("5432", ("127.0.0.1", None, 5432)),
                                       ("0.0.0.0:5433:5433", ("0.0.0.0", 5433, 5433))])
def test_ports(text: str, bind: tuple[str, int | None, int]) -> None:
    p = parse_port(text)
    assert (p.host_ip, p.host_port, p.container_port) == bind


def test_bad_quantities_raise() -> None:
    with pytest.raises(PodSpecError):
        parse_memory("lots")
    with pytest.raises(PodSpecError):
        parse_port("x:y:z")


def test_network_lookup_is_exact_not_docker_substring_match() -> None:
    """Docker's ``names`` filter matches substrings: "vpg-a" would find "vpg-apps" and apply would
    then skip creating its own network."""
    from types import SimpleNamespace

    from voodu_postgres.adapters.docker import DockerRuntime

    created: list[str] = []
    existing = [SimpleNamespace(name="vpg-apps")]
    networks = SimpleNamespace(
        list=lambda names: [n for n in existing if any(x in n.name for x in names)],
        create=lambda name, **_kw: created.append(name))
    runtime = DockerRuntime(client=SimpleNamespace(ping=lambda: True, networks=networks))
    assert not runtime.network_exists("vpg-a") and runtime.network_exists("vpg-apps")
    runtime.ensure_network("vpg-a")
    assert created == ["vpg-a"]
