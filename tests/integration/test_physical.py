"""The physical pair end to end on a real 2-pod cluster (standalone): ``backup`` from the primary and
from the standby into one tar file each, ``restore`` of the first after the data changed (the
checksum equals the backed-up state on the primary and, once the reconciler has re-cloned it, on
the standby, which streams again), tars that must be refused with nothing changed (garbage, the
wrong major, no WAL), a restore killed with SIGKILL in the middle of its extraction (``reconcile``
and ``apply`` refuse until the same restore is run again, which finishes it), and ``backup`` under
Voodu against the fake controller (``restore`` refuses there).

The interruption is a real ``kill -9`` of a CLI process rather than a hand-set intent key: that
also leaves what a real crash leaves — a lease held by a dead process, a helper container still
extracting into the primary's volume, half-written data — and the second run has to cope with all
of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import IMAGE, SESSION, TEST_LABEL
from tests.integration.helpers_cli import Cluster, eventually, standing_cluster
from tests.tarfiles import tar_bytes
from voodu_postgres.adapters.docker import DockerRuntime
from voodu_postgres.domain.keys import INTENT_KEY

pytestmark = pytest.mark.integration

USER, DB = "appuser", "appdata"
CHECKSUM = "SELECT md5(coalesce(string_agg(id::text || ':' || v, ',' ORDER BY id), '')) FROM items"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def c(runtime: DockerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("physical")
    (work / "out").mkdir()
    cluster = standing_cluster(runtime, work, f"p{SESSION}", f"vpg-{SESSION}-ph",
                               {"user": USER, "database": DB, "replicas": 2}, [1], user=USER, dbname=DB)
    sql(cluster, "CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL)",
        "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 20000) g")
    yield cluster
    cluster.cli("delete", cluster.ref, "--prune", "--yes")


@pytest.fixture(scope="module")
def backups(c: Cluster) -> dict[str, Any]:
    """One backup from the primary and one from the standby, of the same data."""
    before = sql(c, CHECKSUM)[0][0]
    primary = json.loads(c.cli("backup", c.ref, "--destination", str(out(c, "primary.tar")), "-o", "json").ok().out)
    standby = json.loads(c.cli("backup", c.ref, "--destination", str(out(c, "standby.tar")), "--from-replica", "1",
                               "-o", "json").ok().out)
    return {"checksum": before, "primary": primary, "standby": standby}


def out(c: Cluster, name: str) -> Path:
    return c.workdir / "out" / name


def sql(c: Cluster, *statements: str, ordinal: int = 0) -> list[tuple[Any, ...]]:
    return c.statements(*statements, ordinal=ordinal, user=USER, dbname=DB)


def helpers_left(c: Cluster) -> list[str]:
    found = c.runtime.client.containers.list(all=True, filters={"label": [f"voodu.scope={c.scope}",
                                                                         f"voodu.name={c.name}"]})
    return [x.name for x in found if x.labels.get("voodu.role", "").startswith("physical-")]


def converged(c: Cluster, checksum: str) -> None:
    """Both pods hold ``checksum``, the standby streams from the primary, reconcile has nothing to do."""
    assert sql(c, CHECKSUM)[0][0] == checksum
    c.wait_streaming([1], user=USER, dbname=DB, timeout=60)

    def standby_has_it() -> None:
        assert sql(c, CHECKSUM, ordinal=1)[0][0] == checksum

    eventually(standby_has_it, 30)
    assert "no action" in c.cli("reconcile", c.ref).ok().out
    assert INTENT_KEY not in c.store.resolve(c.scope, c.name)
    assert helpers_left(c) == []


def test_backup_writes_one_private_tar_from_the_primary_and_from_the_standby(c: Cluster,
                                                                             backups: dict[str, Any]) -> None:
    for kind, source in (("primary", "primary"), ("standby", "replica 1")):
        result = backups[kind]
        path = Path(result["path"])
        assert result["source"] == source and result["pg_major"] == 15
        assert result["members"] == ["base.tar", "pg_wal.tar", "backup_manifest"]
        assert path.stat().st_mode & 0o777 == 0o600 and path.stat().st_size == result["size_bytes"]
        with tarfile.open(path) as tar:
            assert tar.getnames() == ["base.tar", "pg_wal.tar", "backup_manifest"]
    assert sorted(p.name for p in (c.workdir / "out").iterdir()) == ["primary.tar", "standby.tar"]  # no temp left
    assert helpers_left(c) == []
    state = c.home / "runtime" / c.scope / c.name
    assert not [p.name for p in state.iterdir() if "pgpass" in p.name], "the pgpass file goes with the backup"

    again = c.cli("backup", c.ref, "--destination", backups["primary"]["path"])
    assert again.code == 1 and "already exists" in again.err and again.err.count("\n") == 1
    not_standby = c.cli("backup", c.ref, "--destination", str(out(c, "x.tar")), "--from-replica", "0")
    assert not_standby.code == 1 and "db-0 is the primary" in not_standby.err
    assert not out(c, "x.tar").exists()


def test_restore_brings_back_the_backed_up_state_on_both_pods(c: Cluster, backups: dict[str, Any]) -> None:
    sql(c, "UPDATE items SET v = 'changed' WHERE id % 7 = 0", "DELETE FROM items WHERE id > 15000",
        "CREATE TABLE stray (x int)")
    assert sql(c, CHECKSUM)[0][0] != backups["checksum"]

    refused = c.cli("restore", c.ref, "--from", backups["primary"]["path"])
    assert refused.code == 2 and "--yes" in refused.err
    run = c.cli("restore", c.ref, "--from", backups["primary"]["path"], "--yes", "-o", "json").ok()
    report = json.loads(run.out)
    # one line per step (the reconciler's own lines, indented, come inside "converge")
    steps = [text.split(":")[0] for line in report["steps"] if not (text := line.split("] ", 1)[1]).startswith(" ")]
    assert steps[:4] == ["record intent", "remove helpers", "stop db-1", "stop db-0"]
    assert "extract db-0" in steps and steps[-2:] == ["clear intent", "converge"]

    converged(c, backups["checksum"])
    assert sql(c, "SELECT to_regclass('stray') IS NULL")[0][0] is True
    sql(c, "INSERT INTO items VALUES (999999, 'after the restore')")  # writable, and it streams

    def replicated() -> None:
        assert sql(c, "SELECT v FROM items WHERE id = 999999", ordinal=1) == [("after the restore",)]

    eventually(replicated, 30)
    sql(c, "DELETE FROM items WHERE id = 999999")


def _tiny_backup(path: Path, *, pg_version: bytes, wal: bool = True) -> Path:
    members = {"base.tar": tar_bytes({"PG_VERSION": pg_version, "global/pg_control": b"\0" * 64})}
    if wal:
        members["pg_wal.tar"] = tar_bytes({"000000010000000000000001": b"\0" * 64})
    path.write_bytes(tar_bytes(members))
    return path


def test_a_wrong_tar_is_refused_in_one_line_and_nothing_changes(c: Cluster) -> None:
    before = sql(c, CHECKSUM)[0][0]
    pods = c.pods()
    garbage = out(c, "garbage.tar")
    garbage.write_bytes(os.urandom(200_000))
    cases = [
        (garbage, "is not a readable backup tar"),
        (_tiny_backup(out(c, "pg14.tar"), pg_version=b"14\n"),
         "is a PostgreSQL 14 data directory but the cluster runs voodu-postgres-local:15 (PostgreSQL 15)"),
        (_tiny_backup(out(c, "nowal.tar"), pg_version=b"15\n", wal=False), "holds no pg_wal.tar"),
        (out(c, "missing.tar"), "no such file"),
    ]
    for path, message in cases:
        run = c.cli("restore", c.ref, "--from", str(path), "--yes")
        assert run.code == 1 and message in run.err and run.err.count("\n") == 1, run.err
    assert c.pods() == pods, "no pod was stopped or restarted"
    assert INTENT_KEY not in c.store.resolve(c.scope, c.name)
    assert sql(c, CHECKSUM)[0][0] == before and helpers_left(c) == []


def _restore_process(c: Cluster, path: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VOODU_POSTGRES_LABELS": f"{TEST_LABEL}={SESSION}"}
    return subprocess.Popen([sys.executable, "-m", "voodu_postgres", "--home", str(c.home), "restore", c.ref,
                             "--from", path, "--yes"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_restore_killed_midway_blocks_reconcile_until_it_is_run_again(c: Cluster,
                                                                        backups: dict[str, Any]) -> None:
    sql(c, "DELETE FROM items WHERE id <= 100")
    path = backups["standby"]["path"]  # the standby's copy: its standby.signal must not survive either
    proc = _restore_process(c, path)
    extract = f"{c.scope}-{c.name}.restore.extract"
    try:
        deadline = time.monotonic() + 60
        # the low-level listing: the high-level one inspects each container it lists, and raises
        # NotFound when the extraction ends (and its container goes) in between
        while not c.runtime.client.api.containers(all=True, filters={"name": extract}):
            assert proc.poll() is None, "the restore ended before its extraction started"
            assert time.monotonic() < deadline, "no extraction within 60s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert c.store.resolve(c.scope, c.name)[INTENT_KEY] == path

    for argv in (("reconcile", c.ref), ("apply", "-f", str(c.hcl), "--network", c.network, "--timeout", "30")):
        refused = c.cli(*argv)
        assert refused.code == 1 and refused.err.count("\n") == 1, refused.err
        assert f"run `voodu-postgres restore {c.ref} --from {path} --yes` again" in refused.err
    assert c.pods()[c.container(0)].status == "exited", "nothing started the half-restored primary"
    shown = c.cli("info", c.ref).ok().out  # info still answers, and says what to run
    assert f"a physical restore from {path} did not finish" in shown and \
        f"finish it: voodu-postgres restore {c.ref} --from {path} --yes" in shown, shown

    run = c.cli("restore", c.ref, "--from", path, "--yes").ok()
    assert f"an earlier restore (from {path}) did not finish" in run.out
    converged(c, backups["checksum"])


def test_under_voodu_backup_writes_on_the_host_and_restore_refuses(c: Cluster) -> None:
    from tests.fake_controller import FakeController, dispatch
    from voodu_postgres.domain.spec import load_spec
    from voodu_postgres.render.expansion import expand

    spec = load_spec(c.scope, c.name, {**c.base, "image": IMAGE})
    with FakeController() as ctl:
        ctl.set_config(c.scope, c.name, c.store.resolve(c.scope, c.name))
        statefulset = expand(spec, ctl.resolve(c.scope, c.name)).manifests[1]["spec"]
        ctl.put_manifest("statefulset", c.scope, c.name, {**statefulset, "network": c.network})
        plugin_dir = str(c.workdir / "plugin")
        code, envelope = dispatch(ctl, "backup", c.ref, "--destination", str(out(c, "voodu.tar")), "-o", "json",
                                  plugin_dir=plugin_dir)
        assert code == 0 and envelope["status"] == "ok", envelope
        data = json.loads(envelope["data"]["message"])
        assert data["source"] == "primary" and data["pg_major"] == 15 and envelope["data"]["actions"] == []
        assert out(c, "voodu.tar").stat().st_mode & 0o777 == 0o600
        code, envelope = dispatch(ctl, "backup", c.ref, "--destination", "relative.tar", plugin_dir=plugin_dir)
        assert code == 1 and "absolute path" in envelope["error"]
        code, envelope = dispatch(ctl, "restore", c.ref, "--from", str(out(c, "voodu.tar")), "--yes",
                                  plugin_dir=plugin_dir)
        assert code == 1 and "standalone-only" in envelope["error"]
