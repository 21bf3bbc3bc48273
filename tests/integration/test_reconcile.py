"""``apply`` / ``reconcile`` / ``info`` / ``delete`` end to end, against real Docker and Postgres.

The product is driven in-process through ``voodu_postgres.cli.main`` exactly as a user would run
it; every assertion is checked against what Docker and Postgres report (container ids and
``StartedAt``, volumes, ``pg_stat_replication``, ``SHOW``), never against output text alone.

One 3-replica cluster (``cluster``, module scoped) is shared by the first tests, in a deliberate
order: boot → idempotent re-apply → dry runs → reload-only change → restart-needing changes (up,
then down) → drift repair → env change (rolling recreation) → scaling. Each of those tests
declares the full block it wants (``spec()``), so each apply is a real convergence from whatever
the previous test left. A second, 2-replica cluster with a custom port/user/database/replication
role serves the info and delete tests; a few small clusters cover the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.conftest import SESSION
from tests.integration.helpers_cli import Cluster, eventually, run_cli
from voodu_postgres.adapters.docker import DockerRuntime

pytestmark = pytest.mark.integration


def _cleanup(cluster: Cluster) -> None:
    """Free the cluster's containers and volumes early (the session fixture removes leftovers)."""
    cluster.cli("delete", cluster.ref, "--prune", "--yes")


@pytest.fixture(scope="module")
def cluster(runtime: DockerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("rc")
    c = Cluster(runtime=runtime, scope=f"r{SESSION}a", name="db", home=work / "home", workdir=work,
                network=f"vpg-{SESSION}-a")
    yield c
    _cleanup(c)


@pytest.fixture(scope="module")
def custom(runtime: DockerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """2 replicas on port 5433, superuser ``appuser``, database ``appdata``, replication role ``repl``."""
    work = tmp_path_factory.mktemp("rcc")
    c = Cluster(runtime=runtime, scope=f"r{SESSION}c", name="app", home=work / "home", workdir=work,
                network=f"vpg-{SESSION}-c", base={"port": 5433, "user": "appuser", "database": "appdata",
                                                          "replication_user": "repl"})
    c.apply(replicas=2).ok()
    yield c
    _cleanup(c)


# what the shared cluster currently runs with; each test that changes it updates these, and the
# later tests declare the same block through spec() so their applies change only what they mean to
CONFIG: dict[str, Any] = {}
ENV: dict[str, str] = {}


def spec(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"replicas": 3}
    if CONFIG:
        body["pg_config"] = dict(CONFIG)
    if ENV:
        body["env"] = dict(ENV)
    return {**body, **over}


def state(c: Cluster) -> dict[str, Any]:
    """Everything a dry run must leave untouched: Docker objects, the store, the asset files."""
    store = c.store
    assets = c.home / "assets" / c.scope / c.name
    runtime_dir = c.home / "runtime" / c.scope / c.name
    return {
        "pods": c.pods(),
        "volumes": c.volumes(),
        "own": store.own(c.scope, c.name),
        "resolved": store.resolve(c.scope, c.name),
        "resources": [(r.scope, r.name, r.body, r.network, r.applied_at) for r in store.resources()],
        "assets": _files(assets),
        "runtime": _files(runtime_dir),
    }


def _files(directory: Path) -> dict[str, tuple[bytes, int]]:
    if not directory.is_dir():
        return {}
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir()) if p.is_file()}


def assert_one_line_error(result: Any, code: int = 1) -> None:
    assert result.code == code, result
    assert result.err.count("\n") == 1 and result.err.strip(), result.err
    assert "Traceback" not in result.err + result.out


# ------------------------------------------------------------------------------------------
# 1. boot


def test_apply_three_replicas_streams_to_both_standbys(cluster: Cluster) -> None:
    first = cluster.apply(replicas=3)
    assert first.code == 0, first
    pods = cluster.pods()
    assert sorted(pods) == [cluster.container(o) for o in range(3)]
    assert {p.status for p in pods.values()} == {"running"}
    assert set(cluster.volumes()) == {cluster.volume(o) for o in range(3)}

    # apply only returns once converged: both standbys already stream from the primary
    assert cluster.replication() == [("db-1", "streaming"), ("db-2", "streaming")]
    assert cluster.query(0, "SELECT pg_is_in_recovery()") == [(False,)]
    for standby in (1, 2):
        assert cluster.query(standby, "SELECT pg_is_in_recovery()") == [(True,)]

    with cluster.connect(0) as primary:
        primary.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        primary.execute("INSERT INTO t VALUES (1, 'written on the primary')")
    for standby in (1, 2):
        eventually(partial(_assert_ids, cluster, standby, [1]), 15)


def _assert_ids(c: Cluster, ordinal: int, want: list[int], **kwargs: Any) -> None:
    rows = c.query(ordinal, "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM t", **kwargs)
    assert rows == [(want,)], (ordinal, rows)


# ------------------------------------------------------------------------------------------
# 2. idempotence


def test_reapply_same_file_changes_nothing(cluster: Cluster) -> None:
    before = state(cluster)
    again = cluster.apply(replicas=3)
    assert again.code == 0, again
    after = state(cluster)
    assert after["pods"] == before["pods"], "a no-op apply recreated or restarted a pod"
    assert after["volumes"] == before["volumes"]
    assert after["assets"] == before["assets"], "a no-op apply rewrote asset files"
    assert after["own"] == before["own"], "a no-op apply changed the config bucket"
    assert cluster.replication() == [("db-1", "streaming"), ("db-2", "streaming")]


# ------------------------------------------------------------------------------------------
# 3. dry runs


def test_dry_run_prints_a_plan_and_changes_nothing(cluster: Cluster) -> None:
    before = state(cluster)
    work_mem = cluster.show(0, "work_mem")

    # scale up + an env change (pod hash) + a pg_config change (asset rewrite and reload)
    text = cluster.apply("--dry-run", replicas=4, env={"VPG_DRY_RUN_PROBE": "1"}, pg_config={"work_mem": "48MB"})
    assert text.code == 0, text
    assert "dry run" in text.out and "create pod 3" in text.out and "write assets" in text.out, text.out

    as_json = cluster.apply("--dry-run", "-o", "json", replicas=4, env={"VPG_DRY_RUN_PROBE": "1"},
                            pg_config={"work_mem": "48MB"})
    assert as_json.code == 0, as_json
    (report,) = json.loads(as_json.out)
    assert report["ref"] == cluster.ref and report["converged"] is False and report["outcomes"] == []
    assert any(s.startswith("create pod 3") for s in report["steps"]), report["steps"]

    # the recorded spec is still the applied one, so reconcile's dry run has nothing to do
    for argv in (["reconcile", "--dry-run"], ["reconcile", cluster.ref, "--dry-run"]):
        result = cluster.cli(*argv)
        assert result.code == 0, result
        assert "nothing to do" in result.out, result.out

    assert state(cluster) == before, "a dry run changed Docker, the store or the asset files"
    assert cluster.volume(3) not in cluster.volumes()
    assert cluster.show(0, "work_mem") == work_mem
    assert not cluster.query(0, "SELECT 1 FROM pg_settings WHERE pending_restart")
    cluster.write(replicas=3)  # leave the file as applied


def test_dry_run_of_a_never_applied_cluster_seeds_nothing(runtime: DockerRuntime, tmp_path: Path) -> None:
    fresh = Cluster(runtime=runtime, scope=f"r{SESSION}f", name="db", home=tmp_path / "home", workdir=tmp_path,
                    network=f"vpg-{SESSION}-f")
    result = fresh.apply("--dry-run", replicas=2)
    assert result.code == 0, result
    assert "create pod 0" in result.out and "POSTGRES_PASSWORD" in result.out, result.out
    store = fresh.store
    assert store.own(fresh.scope, fresh.name) == {} and store.resources() == []
    assert fresh.pods() == {} and fresh.volumes() == {}
    assert not runtime.network_exists(fresh.network)
    assert not (fresh.home / "assets").exists() and not (fresh.home / "runtime").exists()


# ------------------------------------------------------------------------------------------
# 5. reload-only pg_config change


def test_reload_only_pg_config_change_restarts_nothing(cluster: Cluster) -> None:
    before = cluster.pods()
    assert cluster.show(0, "work_mem") == "4MB"
    result = cluster.apply(replicas=3, pg_config={"work_mem": "24MB", "random_page_cost": 1.7})
    assert result.code == 0, result
    for ordinal in (0, 1, 2):
        eventually(partial(_assert_show, cluster, ordinal, "work_mem", "24MB"), 15)
        eventually(partial(_assert_show, cluster, ordinal, "random_page_cost", "1.7"), 15)
    assert cluster.pods() == before, "a reload-only change restarted or recreated a pod"

    # removing the key reverts to the default, again without a restart
    result = cluster.apply(replicas=3, pg_config={"random_page_cost": 1.7})
    assert result.code == 0, result
    for ordinal in (0, 2):
        eventually(partial(_assert_show, cluster, ordinal, "work_mem", "4MB"), 15)
    assert cluster.show(1, "random_page_cost") == "1.7"
    assert cluster.pods() == before
    CONFIG.clear()
    CONFIG.update({"random_page_cost": 1.7})


def _assert_show(c: Cluster, ordinal: int, setting: str, want: str, **kwargs: Any) -> None:
    got = c.show(ordinal, setting, **kwargs)
    assert got == want, (c.app(ordinal), setting, got)


# ------------------------------------------------------------------------------------------
# 6. restart-needing pg_config change


def test_restart_needing_change_rolls_standbys_first_then_primary(cluster: Cluster) -> None:
    before = cluster.pods()
    result = cluster.apply(replicas=3, pg_config={**CONFIG, "max_connections": 150})
    assert result.code == 0, result
    after = cluster.pods()
    for ordinal in (0, 1, 2):
        _assert_show(cluster, ordinal, "max_connections", "150")
    assert not cluster.query(0, "SELECT name FROM pg_settings WHERE pending_restart")
    for name, pod in after.items():
        assert pod.id == before[name].id, f"{name} was recreated; a restart was enough"
        assert pod.started > before[name].started, f"{name} was not restarted"
    p0, p1, p2 = (after[cluster.container(o)].started for o in (0, 1, 2))
    # standbys first (highest ordinal first), the primary last
    assert p2 < p1 < p0, {cluster.app(o): after[cluster.container(o)].started for o in (0, 1, 2)}
    cluster.wait_streaming([1, 2], timeout=30)
    CONFIG["max_connections"] = 150


def test_lowering_a_standby_minimum_restarts_the_primary_first(cluster: Cluster) -> None:
    before = cluster.pods()
    result = cluster.apply(replicas=3, pg_config={**CONFIG, "max_connections": 120})
    assert result.code == 0, result
    after = cluster.pods()
    for ordinal in (0, 1, 2):
        _assert_show(cluster, ordinal, "max_connections", "120")
    for name, pod in after.items():
        assert pod.started > before[name].started, f"{name} was not restarted"
    p0, p1, p2 = (after[cluster.container(o)].started for o in (0, 1, 2))
    assert p0 < p2 and p0 < p1, "standbys must not run with a lower max_connections than the primary"
    cluster.wait_streaming([1, 2], timeout=30)
    CONFIG["max_connections"] = 120


# ------------------------------------------------------------------------------------------
# 7. drift repair with `reconcile`


def test_reconcile_restarts_a_stopped_standby(cluster: Cluster) -> None:
    name = cluster.container(1)
    before = cluster.pods()[name]
    cluster.runtime.client.containers.get(name).stop(timeout=10)

    planned = cluster.cli("reconcile", cluster.ref, "--dry-run")
    assert planned.code == 0 and "start pod 1" in planned.out, planned
    assert cluster.pods()[name].status == "exited", "reconcile --dry-run started the pod"

    result = cluster.cli("reconcile", cluster.ref)
    assert result.code == 0, result
    after = cluster.pods()[name]
    assert after.id == before.id and after.started > before.started
    cluster.wait_streaming([1, 2], timeout=60)


def test_reconcile_recreates_a_removed_standby_on_its_kept_volume(cluster: Cluster) -> None:
    name = cluster.container(2)
    old = cluster.pods()[name]
    volume_created = cluster.volumes()[cluster.volume(2)]
    cluster.runtime.client.containers.get(name).remove(force=True)
    with cluster.connect(0) as primary:
        primary.execute("INSERT INTO t VALUES (2, 'written while db-2 was gone')")

    result = cluster.cli("reconcile", cluster.ref)
    assert result.code == 0, result
    new = cluster.pods()[name]
    assert new.id != old.id
    assert cluster.volumes()[cluster.volume(2)] == volume_created, "the kept data volume was replaced"
    cluster.wait_streaming([1, 2], timeout=60)
    eventually(partial(_assert_ids, cluster, 2, [1, 2]), 15)


def test_reconcile_reclones_a_standby_whose_volume_was_removed(cluster: Cluster) -> None:
    name, volume = cluster.container(1), cluster.volume(1)
    cluster.runtime.client.containers.get(name).remove(force=True)
    cluster.runtime.client.volumes.get(volume).remove(force=True)
    assert volume not in cluster.volumes()

    result = cluster.cli("reconcile", cluster.ref)
    assert result.code == 0, result
    assert volume in cluster.volumes() and name in cluster.pods()
    cluster.wait_streaming([1, 2], timeout=90)
    eventually(partial(_assert_ids, cluster, 1, [1, 2]), 15)
    assert cluster.query(1, "SELECT pg_is_in_recovery()") == [(True,)]


def test_reconcile_recreates_a_removed_primary_and_standbys_follow(cluster: Cluster) -> None:
    name = cluster.container(0)
    old = cluster.pods()[name]
    cluster.runtime.client.containers.get(name).remove(force=True)

    result = cluster.cli("reconcile", cluster.ref)
    assert result.code == 0, result
    assert cluster.pods()[name].id != old.id
    _assert_ids(cluster, 0, [1, 2])  # the primary's data volume was kept
    assert cluster.query(0, "SELECT pg_is_in_recovery()") == [(False,)]
    cluster.wait_streaming([1, 2], timeout=60)
    with cluster.connect(0) as primary:
        primary.execute("INSERT INTO t VALUES (3, 'after the primary came back')")
    for standby in (1, 2):
        eventually(partial(_assert_ids, cluster, standby, [1, 2, 3]), 15)


# ------------------------------------------------------------------------------------------
# pod-hash change: rolling recreation


def test_env_change_recreates_pods_standbys_first_primary_last(cluster: Cluster) -> None:
    before, volumes = cluster.pods(), cluster.volumes()
    ENV["VPG_ROLL_PROBE"] = "1"
    result = cluster.apply(**spec())
    assert result.code == 0, result
    after = cluster.pods()
    assert sorted(after) == sorted(before)
    for name, pod in after.items():
        assert pod.id != before[name].id, f"{name} still runs the old spec"
        env = cluster.runtime.client.containers.get(name).attrs["Config"]["Env"]
        assert "VPG_ROLL_PROBE=1" in env, name
    p0, p1, p2 = (after[cluster.container(o)].started for o in (0, 1, 2))
    assert p2 < p1 < p0, "pods must roll standbys first (highest ordinal first), the primary last"
    assert cluster.volumes() == volumes, "a recreation must reuse the data volumes"
    cluster.wait_streaming([1, 2], timeout=30)
    for ordinal in (0, 1, 2):
        eventually(partial(_assert_ids, cluster, ordinal, [1, 2, 3]), 15)
    again = cluster.pods()
    assert cluster.apply(**spec()).code == 0 and cluster.pods() == again, "the roll did not converge"


# ------------------------------------------------------------------------------------------
# 4. scaling


def test_scale_up_to_five_then_down_to_two_then_back_to_three(cluster: Cluster) -> None:
    original = cluster.pods()
    up = cluster.apply(**spec(replicas=5))
    assert up.code == 0, up
    pods = cluster.pods()
    assert sorted(pods) == [cluster.container(o) for o in range(5)]
    assert {n: pods[n] for n in original} == original, "scaling up touched the existing pods"
    cluster.wait_streaming([1, 2, 3, 4], timeout=30)
    for standby in (3, 4):
        _assert_ids(cluster, standby, [1, 2, 3])
        _assert_show(cluster, standby, "max_connections", str(CONFIG["max_connections"]))

    volumes_at_five = cluster.volumes()
    down = cluster.apply(**spec(replicas=2))
    assert down.code == 0, down
    pods = cluster.pods()
    assert sorted(pods) == [cluster.container(0), cluster.container(1)]
    assert {n: original[n] for n in pods} == pods, "scaling down touched the remaining pods"
    assert cluster.volumes() == volumes_at_five, "scale-down must keep every data volume"
    cluster.wait_streaming([1], timeout=30)
    with cluster.connect(0) as primary:
        primary.execute("INSERT INTO t VALUES (4, 'written at two replicas')")
    eventually(partial(_assert_ids, cluster, 1, [1, 2, 3, 4]), 15)

    # back to 3: db-2 starts on its kept (now stale) volume and catches up by streaming
    again = cluster.apply(**spec(replicas=3))
    assert again.code == 0, again
    assert cluster.volumes() == volumes_at_five
    cluster.wait_streaming([1, 2], timeout=30)
    eventually(partial(_assert_ids, cluster, 2, [1, 2, 3, 4]), 15)


def test_scale_down_while_dropping_max_connections_restarts_primary_first(cluster: Cluster) -> None:
    before = cluster.pods()
    CONFIG.pop("max_connections")  # back to the default (100): a decrease from 120
    result = cluster.apply(**spec(replicas=2))
    assert result.code == 0, result
    after = cluster.pods()
    assert sorted(after) == [cluster.container(0), cluster.container(1)]
    assert cluster.volume(2) in cluster.volumes()
    for ordinal in (0, 1):
        _assert_show(cluster, ordinal, "max_connections", "100")
    p0, p1 = after[cluster.container(0)], after[cluster.container(1)]
    assert p0.started > before[cluster.container(0)].started and p1.started > before[cluster.container(1)].started
    assert p0.started < p1.started, "a decrease must restart the primary first"
    cluster.wait_streaming([1], timeout=30)


def test_standby_on_a_kept_volume_starts_after_max_connections_was_lowered(cluster: Cluster) -> None:
    # db-2's volume was last used while the cluster ran max_connections = 120; it is now 100. Its
    # control file still records the primary's old, higher value, which a hot standby refuses to
    # start below: the entrypoint boots it once on the recorded value, and once it has replayed
    # the primary's newer WAL the reconciler restarts it on the configured one.
    result = cluster.apply(**spec(replicas=3), timeout=60)
    assert result.code == 0, result
    cluster.wait_streaming([1, 2], timeout=30)
    _assert_show(cluster, 2, "max_connections", "100")
    eventually(partial(_assert_ids, cluster, 2, [1, 2, 3, 4]), 15)


# ------------------------------------------------------------------------------------------
# 8. custom port, user and database; info


def test_custom_port_user_and_database_end_to_end(custom: Cluster) -> None:
    kw: dict[str, Any] = {"user": "appuser", "dbname": "appdata"}
    assert custom.query(0, "SELECT current_user, current_database(), current_setting('port')", **kw) == [
        ("appuser", "appdata", "5433")]
    custom.wait_streaming([1], timeout=30, **kw)
    assert custom.query(0, "SELECT usename FROM pg_stat_replication", **kw) == [("repl",)]
    assert custom.query(1, "SELECT pg_is_in_recovery(), current_setting('port')", **kw) == [(True, "5433")]
    # the default user and database were not created
    assert custom.query(0, "SELECT count(*) FROM pg_roles WHERE rolname = 'postgres'", **kw) == [(0,)]

    password = custom.cli("config", "get", custom.ref, "POSTGRES_PASSWORD")
    assert password.code == 0 and password.out.strip() == custom.password and len(custom.password) == 64

    info = custom.cli("info", custom.ref, "-o", "json")
    assert info.code == 0, info
    snap = json.loads(info.out)
    assert (snap["port"], snap["super_user"], snap["database"], snap["replication_user"]) == (
        5433, "appuser", "appdata", "repl")
    assert snap["replicas"] == 2 and snap["primary_ordinal"] == 0
    assert [p["role"] for p in snap["pods"]] == ["primary", "standby"]
    assert snap["pods"][1]["streaming_from_primary"] is True
    assert "streaming_from_primary" not in snap["pods"][0]
    assert custom.password not in info.out  # never printed
    text = custom.cli("info", custom.ref)
    assert text.code == 0 and custom.password not in text.out, text


# ------------------------------------------------------------------------------------------
# 9. delete


def test_delete_keeps_data_and_bucket_and_prune_removes_them(custom: Cluster) -> None:
    kw: dict[str, Any] = {"user": "appuser", "dbname": "appdata"}
    with custom.connect(0, **kw) as primary:
        primary.execute("CREATE TABLE IF NOT EXISTS keep (v text)")
        primary.execute("INSERT INTO keep VALUES ('survives delete')")
    password = custom.password
    pods, volumes = custom.pods(), custom.volumes()
    assert len(pods) == 2 and len(volumes) == 2

    refused = custom.cli("delete", custom.ref)
    assert_one_line_error(refused)
    assert custom.pods() == pods and custom.volumes() == volumes
    assert custom.store.resource(custom.scope, custom.name) is not None

    deleted = custom.cli("delete", custom.ref, "--yes")
    assert deleted.code == 0, deleted
    assert custom.pods() == {}
    assert custom.volumes() == volumes, "delete without --prune must keep the data volumes"
    assert custom.store.own(custom.scope, custom.name)["POSTGRES_PASSWORD"] == password
    # a reconcile pass (say, from a timer) must not undo the delete
    assert custom.cli("reconcile").code == 0
    assert custom.pods() == {}

    back = custom.apply(replicas=2)
    assert back.code == 0, back
    assert custom.password == password
    assert custom.volumes() == volumes
    assert custom.query(0, "SELECT v FROM keep", **kw) == [("survives delete",)]
    custom.wait_streaming([1], timeout=30, **kw)
    eventually(partial(_assert_rows, custom, 1, "SELECT v FROM keep", [("survives delete",)], **kw), 15)

    pruned = custom.cli("delete", custom.ref, "--prune", "--yes")
    assert pruned.code == 0, pruned
    assert custom.pods() == {} and custom.volumes() == {}
    assert custom.store.own(custom.scope, custom.name) == {}
    assert custom.store.resource(custom.scope, custom.name) is None
    assert not (custom.home / "assets" / custom.scope / custom.name).exists()
    assert not (custom.home / "runtime" / custom.scope / custom.name).exists()
    assert_one_line_error(custom.cli("info", custom.ref))


def _assert_rows(c: Cluster, ordinal: int, sql: str, want: list[tuple[Any, ...]], **kwargs: Any) -> None:
    rows = c.query(ordinal, sql, **kwargs)
    assert rows == want, rows


# ------------------------------------------------------------------------------------------
# a password from the HCL, and a port change


def test_hcl_password_is_used_verbatim_and_never_recorded(runtime: DockerRuntime, tmp_path: Path) -> None:
    c = Cluster(runtime=runtime, scope=f"r{SESSION}w", name="db", home=tmp_path / "home", workdir=tmp_path,
                network=f"vpg-{SESSION}-w")
    secret = "p'ss w\"rd\\x"  # a quote, a space, a double quote and a backslash
    try:
        result = c.apply(replicas=1, password=secret)
        assert result.code == 0, result
        assert secret not in result.out + result.err
        assert c.password == secret
        assert c.query(0, "SELECT current_user") == [("postgres",)]  # connects with exactly that password
        port = runtime.host_port(c.container(0), 5432)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=port, user="postgres", password="p'ss w", dbname="postgres",
                            connect_timeout=3)
        recorded = c.store.resource(c.scope, c.name)
        assert recorded is not None and "password" not in recorded.body
    finally:
        _cleanup(c)


def test_changing_the_port_of_a_running_cluster_converges(runtime: DockerRuntime, tmp_path: Path) -> None:
    c = Cluster(runtime=runtime, scope=f"r{SESSION}p", name="db", home=tmp_path / "home", workdir=tmp_path,
                network=f"vpg-{SESSION}-p", base={"port": 5433})
    try:
        c.apply(replicas=2).ok()
        with c.connect(0) as primary:
            primary.execute("CREATE TABLE moved (v int)")
            primary.execute("INSERT INTO moved VALUES (1)")
        before = c.pods()
        c.base["port"] = 5434
        result = c.apply(replicas=2, timeout=60)
        assert result.code == 0, result
        after = c.pods()
        assert all(after[name].id != pod.id for name, pod in before.items()), "pods must be recreated"
        assert c.show(0, "port") == "5434"
        c.wait_streaming([1], timeout=30)
        assert c.query(1, "SELECT v FROM moved") == [(1,)]
    finally:
        _cleanup(c)


# ------------------------------------------------------------------------------------------
# 10. bad input


def test_bad_input_is_one_line_and_creates_nothing(runtime: DockerRuntime, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert_one_line_error(run_cli("info", f"r{SESSION}x/nope", home=home))
    assert_one_line_error(run_cli("reconcile", f"r{SESSION}x/nope", home=home))
    assert_one_line_error(run_cli("delete", f"r{SESSION}x/nope", "--yes", home=home))
    assert_one_line_error(run_cli("info", "a/b/c", home=home), code=2)

    bad = Cluster(runtime=runtime, scope=f"r{SESSION}x", name="db", home=home, workdir=tmp_path,
                  network=f"vpg-{SESSION}-x")
    result = bad.apply(replicas=0)
    assert result.code == 1 and "replicas" in result.err and "Traceback" not in result.err, result
    assert_one_line_error(bad.apply("--timeout", "0", replicas=1), code=2)
    assert bad.pods() == {} and bad.volumes() == {}
    assert not runtime.network_exists(bad.network)
    assert bad.store.resources() == [] and bad.store.own(bad.scope, bad.name) == {}
