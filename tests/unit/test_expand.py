"""expand: manifests, merge rules and the bucket-seeding actions (behavior.md §2–3, fixes of §7.2)."""

from __future__ import annotations

import itertools
import re
from typing import Any

from voodu_postgres.domain.keys import generate_password
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.render.expansion import expand

SEQ = itertools.count()


def gen() -> str:
    return f"{next(SEQ):064x}"


def run(body: dict[str, Any] | None = None, bucket: dict[str, str] | None = None, scope: str = "clowk-lp",
        name: str = "db") -> dict[str, Any]:
    return expand(load_spec(scope, name, body), bucket or {}, generate=gen).to_wire()


def sts(out: dict[str, Any]) -> dict[str, Any]:
    manifest = out["manifests"][1]
    assert manifest["kind"] == "statefulset"
    return manifest["spec"]  # type: ignore[no-any-return]


def seeded(out: dict[str, Any]) -> dict[str, str]:
    kv: dict[str, str] = {}
    for action in out.get("actions", []):
        kv.update(action["kv"])
    return kv


def test_generated_passwords_are_64_hex_and_distinct() -> None:
    a, b = generate_password(), generate_password()
    assert re.fullmatch(r"[0-9a-f]{64}", a) and a != b


def test_first_apply_seeds_four_keys_in_order() -> None:
    out = run()
    actions = out["actions"]
    assert [list(a["kv"]) for a in actions] == [
        ["POSTGRES_PASSWORD"], ["POSTGRES_REPLICATION_PASSWORD"], ["PG_PRIMARY_ORDINAL"], ["BACKUP_KEEP"]]
    assert all(list(a)[:3] == ["type", "scope", "name"] and a["type"] == "config_set" for a in actions)
    assert actions[2]["kv"] == {"PG_PRIMARY_ORDINAL": "0"} and actions[2]["skip_restart"] is True
    assert actions[3]["kv"] == {"BACKUP_KEEP": "30"}
    assert "skip_restart" not in actions[0] and "skip_restart" not in actions[3]


def test_feeding_back_the_seeded_values_emits_nothing_and_is_stable() -> None:
    first = run()
    bucket = seeded(first)
    second = run(bucket=bucket)
    assert "actions" not in second
    assert run(bucket=bucket) == second
    env = sts(second)["env"]
    assert env["POSTGRES_PASSWORD"] == bucket["POSTGRES_PASSWORD"]
    assert env["PG_REPLICATION_PASSWORD"] == bucket["POSTGRES_REPLICATION_PASSWORD"]


def test_hcl_password_is_persisted_and_backup_keep_seeded() -> None:
    out = run({"password": "from-hcl"})
    kv = seeded(out)
    assert kv["POSTGRES_PASSWORD"] == "from-hcl" and kv["BACKUP_KEEP"] == "30"
    assert "actions" not in run({"password": "from-hcl"}, bucket=kv)


def test_operator_backup_keep_zero_is_kept() -> None:
    assert "BACKUP_KEEP" not in seeded(run(bucket={"BACKUP_KEEP": "0"}))


def test_missing_ordinal_is_reseeded_without_restart() -> None:
    bucket = seeded(run())
    del bucket["PG_PRIMARY_ORDINAL"]
    assert run(bucket=bucket)["actions"] == [
        {"type": "config_set", "scope": "clowk-lp", "name": "db", "kv": {"PG_PRIMARY_ORDINAL": "0"},
         "skip_restart": True}]


def test_asset_has_four_files_and_statefulset_mounts_them() -> None:
    out = run()
    asset = out["manifests"][0]
    assert list(asset) == ["kind", "scope", "name", "spec"] and asset["kind"] == "asset"
    assert sorted(asset["spec"]["files"]) == ["entrypoint", "init_replication_sh", "pg_overrides_conf",
                                              "streaming_conf"]
    assert sts(out)["volumes"] == [
        "${asset.clowk-lp.db.entrypoint}:/usr/local/bin/voodu-postgres-entrypoint:ro",
        "${asset.clowk-lp.db.pg_overrides_conf}:/etc/postgresql/conf.d/voodu-99-overrides.conf:ro",
        "${asset.clowk-lp.db.streaming_conf}:/etc/postgresql/conf.d/voodu-50-streaming.conf:ro",
        "${asset.clowk-lp.db.init_replication_sh}:/docker-entrypoint-initdb.d/00_create_replication.sh:ro",
        "/opt/voodu/backups/clowk-lp/db:/backups:rw",
    ]


def test_unscoped_resource_uses_three_segment_asset_refs() -> None:
    spec = sts(run(scope="", name="solo"))
    assert all("${asset..solo" not in v for v in spec["volumes"])
    assert spec["volumes"][0].startswith("${asset.solo.entrypoint}:")
    assert spec["volumes"][-1] == "/opt/voodu/backups/_unscoped/solo:/backups:rw"
    assert spec["env"]["PG_SCOPE_SUFFIX"] == ".voodu"
    assert "scope" not in run(scope="", name="solo")["manifests"][1]


def test_statefulset_default_shape() -> None:
    spec = sts(run({"user": "appuser", "database": "appdata", "port": 5433, "replicas": 3,
                    "initdb_locale": "pt_BR.UTF-8", "initdb_encoding": "LATIN1"}))
    assert spec["image"] == "postgres:latest" and spec["replicas"] == 3
    assert spec["ports"] == ["5433"]
    assert spec["command"] == ["bash", "/usr/local/bin/voodu-postgres-entrypoint"]
    assert spec["volume_claims"] == [{"name": "data", "mount_path": "/var/lib/postgresql/data"}]
    env = spec["env"]
    assert env["POSTGRES_USER"] == "appuser" and env["POSTGRES_DB"] == "appdata"
    assert env["POSTGRES_INITDB_ARGS"] == "--locale=pt_BR.UTF-8 --encoding=LATIN1"
    assert env["PGDATA"] == "/var/lib/postgresql/data/pgdata" and env["PG_PORT"] == "5433"
    assert env["PG_NAME"] == "db" and env["PG_SCOPE_SUFFIX"] == ".clowk-lp.voodu"
    assert env["PG_REPLICATION_USER"] == "replicator"
    assert "PG_PRIMARY_ORDINAL" not in env
    for key in ("database", "user", "password", "port", "pg_config", "extensions", "replication_user",
                "initdb_locale", "initdb_encoding", "synchronous"):
        assert key not in spec
    assert list(spec) == sorted(spec)


def test_default_probes_follow_the_spec() -> None:
    probes = sts(run({"user": "appuser", "database": "appdata", "port": 5433}))["probes"]
    assert probes["liveness"] == {"tcp_socket": {"port": 5433}, "initial_delay": "20s", "period": "10s",
                                  "failure_threshold": 3}
    assert probes["readiness"]["exec"]["command"] == ["pg_isready", "-h", "127.0.0.1", "-U", "appuser", "-d",
                                                      "appdata", "-p", "5433"]
    assert (probes["readiness"]["period"], probes["readiness"]["failure_threshold"],
            probes["readiness"]["success_threshold"]) == ("5s", 1, 2)


def test_operator_probes_replace_defaults_entirely() -> None:
    assert sts(run({"probes": {}}))["probes"] == {}


def test_exposed_bucket_flag_uses_three_part_public_bind() -> None:
    assert sts(run({"port": 5433}, bucket={"PG_EXPOSE_PUBLIC": "true"}))["ports"] == ["0.0.0.0:5433:5433"]
    assert sts(run(bucket={"PG_EXPOSE_PUBLIC": "yes"}))["ports"] == ["5432"]


def test_empty_image_means_default_image() -> None:
    assert sts(run({"image": ""}))["image"] == "postgres:latest"


def test_env_merges_per_key_operator_wins() -> None:
    env = sts(run({"env": {"TZ": "UTC", "POSTGRES_DB": "other"}}))["env"]
    assert env["TZ"] == "UTC" and env["POSTGRES_DB"] == "other" and env["PG_NAME"] == "db"


def test_volumes_merge_by_destination_in_place_without_resorting() -> None:
    vols = sts(run({"volumes": ["/srv/bk:/backups:rw", "/srv/extra:/extra:ro"]}))["volumes"]
    assert vols[4] == "/srv/bk:/backups:rw" and vols[5] == "/srv/extra:/extra:ro"
    assert vols[0].endswith(":/usr/local/bin/voodu-postgres-entrypoint:ro")
    assert len(vols) == 6


def test_empty_operator_volumes_keep_the_required_defaults() -> None:
    assert len(sts(run({"volumes": []}))["volumes"]) == 5


def test_other_passthrough_keys_flow_through() -> None:
    spec = sts(run({"resources": {"limits": {"cpu": "2", "memory": "4Gi"}}, "env_from": ["aws/cli"],
                    "health_check": "pg_isready"}))
    assert spec["resources"] == {"limits": {"cpu": "2", "memory": "4Gi"}}
    assert spec["env_from"] == ["aws/cli"] and spec["health_check"] == "pg_isready"


def test_overrides_file_follows_pg_config() -> None:
    files = run({"pg_config": {"max_connections": 200, "shared_buffers": "256MB"}})["manifests"][0]["spec"]["files"]
    assert "max_connections = 200\n" in files["pg_overrides_conf"]
    assert "shared_buffers = '256MB'\n" in files["pg_overrides_conf"]


def test_output_is_deterministic_for_same_input() -> None:
    bucket = seeded(run())
    assert run({"replicas": 2}, bucket=bucket) == run({"replicas": 2}, bucket=bucket)


def test_operator_volume_claims_merge_by_name_and_keep_data() -> None:
    claims = sts(run({"volume_claims": [{"name": "wal", "mount_path": "/wal"}]}))["volume_claims"]
    assert claims == [{"name": "data", "mount_path": "/var/lib/postgresql/data"}, {"name": "wal", "mount_path": "/wal"}]
