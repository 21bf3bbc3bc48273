"""Apps and credentials end to end on a real 3-pod cluster: ``link``/``unlink`` with URLs used by a
real libpq 15 client, ``new-password`` under a write load with a session held open (and its
resume after an interruption), ``--replication`` rotation, ``expose``/``unexpose`` checked through
Docker, ``psql`` without a terminal, and the plugin-mode envelopes of the commands that need
Docker (``info``, ``psql``, ``new-password``) against a fake controller.

The cluster runs with a custom port, superuser and database, and with ``log_statement = all`` so
that the server log would show any password sent as SQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fake_controller import FakeController, dispatch
from tests.integration.conftest import IMAGE, SESSION, TEST_LABEL
from tests.integration.helpers_cli import LABELS_ENV, Cluster, eventually, standing_cluster
from voodu_postgres.adapters.docker import DockerRuntime
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.render.expansion import expand

pytestmark = pytest.mark.integration

PORT, USER, DB = 5433, "appuser", "appdata"


@pytest.fixture(scope="module")
def c(runtime: DockerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("apps")
    cluster = standing_cluster(runtime, work, f"a{SESSION}", f"vpg-{SESSION}-apps",
                               {"port": PORT, "user": USER, "database": DB, "replicas": 3,
                                "pg_config": {"log_statement": "all"}}, [1, 2], port=PORT, user=USER, dbname=DB)
    with cluster.connect(0, port=PORT, user=USER, dbname=DB) as conn:
        conn.execute("CREATE TABLE t (id bigint PRIMARY KEY)")
    yield cluster
    cluster.cli("delete", cluster.ref, "--prune", "--yes")


def bucket(c: Cluster, ref: str | None = None) -> dict[str, str]:
    scope, _, name = (ref or c.ref).partition("/")
    return c.store.resolve(scope, name)


def dial(c: Cluster, ordinal: int, password: str, *, user: str = USER) -> psycopg.Connection[Any]:
    port = c.runtime.host_port(c.container(ordinal), PORT)
    return psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname=DB,
                           autocommit=True, connect_timeout=3)


def refused(c: Cluster, ordinal: int, password: str, *, user: str = USER) -> bool:
    try:
        dial(c, ordinal, password, user=user).close()
    except psycopg.OperationalError as exc:
        assert "password authentication failed" in str(exc), exc
        return True
    return False


def primary(c: Cluster) -> int:
    return int(bucket(c)["PG_PRIMARY_ORDINAL"])


def started(c: Cluster) -> dict[str, tuple[str, int]]:
    return {name: (p.id, p.started) for name, p in c.pods().items()}


def libpq_client(c: Cluster, env: dict[str, str], script: str) -> str:
    """Run ``script`` in a throw-away container of the image (psql/libpq 15) on the cluster network;
    the URLs travel as environment, not argv."""
    container = c.runtime.client.containers.run(IMAGE, ["bash", "-c", script], environment=env,
                                                network=c.network, labels={TEST_LABEL: SESSION}, detach=True)
    try:
        code = container.wait(timeout=60)["StatusCode"]
        out = container.logs(stdout=True, stderr=True).decode()
        assert code == 0, out
        return out
    finally:
        container.remove(force=True, v=True)  # and the anonymous volume of the image's VOLUME line


PROBE = ('psql "$DATABASE_URL" -XAtc "SELECT pg_is_in_recovery()"; '
         'psql "$DATABASE_READ_URL" -XAtc "SELECT pg_is_in_recovery()"')


def test_link_urls_reach_the_writer_and_a_standby_with_libpq_15_and_follow_a_promote(c: Cluster) -> None:
    c.cli("link", c.ref, f"{c.scope}/web", "--reads").ok()
    c.cli("link", c.ref, f"{c.scope}/worker").ok()
    web = bucket(c, f"{c.scope}/web")
    assert web["DATABASE_URL"].startswith(f"postgres://{USER}:") and f"@db-0.{c.scope}.voodu:{PORT}/{DB}" in \
        web["DATABASE_URL"]
    assert libpq_client(c, web, PROBE).split() == ["f", "t"]
    assert "DATABASE_READ_URL" not in bucket(c, f"{c.scope}/worker")
    assert bucket(c)["POSTGRES_LINKED_CONSUMERS"] == f"{c.scope}/web,{c.scope}/worker"

    c.cli("promote", c.ref, "--replica", "1").ok()
    web = bucket(c, f"{c.scope}/web")
    assert f"@db-1.{c.scope}.voodu:{PORT}/" in web["DATABASE_URL"]
    assert f"db-1.{c.scope}.voodu" not in web["DATABASE_READ_URL"]
    assert libpq_client(c, web, PROBE).split() == ["f", "t"]
    worker = bucket(c, f"{c.scope}/worker")
    assert f"@db-1.{c.scope}.voodu" in worker["DATABASE_URL"] and "DATABASE_READ_URL" not in worker

    out = c.cli("unlink", c.ref, f"{c.scope}/worker").ok().out
    assert "unlinked" in out
    assert "DATABASE_URL" not in bucket(c, f"{c.scope}/worker")
    assert bucket(c)["POSTGRES_LINKED_CONSUMERS"] == f"{c.scope}/web"
    again = c.cli("unlink", c.ref, f"{c.scope}/worker").ok()
    assert "not linked" in again.out


class BucketWriter(threading.Thread):
    """Inserts through a fresh connection each time, with whatever password the bucket holds
    then — an app that reconnects with the current credentials. ``failed`` counts INSERTs that
    did not commit; ``auth_retries`` counts logins refused (then retried)."""

    def __init__(self, c: Cluster) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.acked: list[int] = []
        self.failed = 0
        self.auth_retries = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        next_id = 10_000
        p = primary(self.c)
        while not self.stop_event.is_set():
            try:
                conn = dial(self.c, p, bucket(self.c)["POSTGRES_PASSWORD"])
            except psycopg.OperationalError:
                self.auth_retries += 1
                time.sleep(0.01)
                continue
            try:
                conn.execute("INSERT INTO t(id) VALUES (%s)", (next_id,))
                self.acked.append(next_id)
            except psycopg.Error:
                self.failed += 1
            finally:
                conn.close()
            next_id += 1


def test_new_password_rotates_with_no_failed_write_no_restart_and_nothing_in_logs(c: Cluster) -> None:
    p = primary(c)
    old = bucket(c)["POSTGRES_PASSWORD"]
    held = dial(c, p, old)
    before = started(c)
    writer = BucketWriter(c)
    writer.start()
    eventually(lambda: len(writer.acked) > 20 or None, 30)
    t0 = time.monotonic()
    run = c.cli("new-password", c.ref).ok()
    took = time.monotonic() - t0
    time.sleep(0.5)
    writer.stop_event.set()
    writer.join(10)
    new = bucket(c)["POSTGRES_PASSWORD"]
    print(f"rotation: {took:.2f}s CLI wall time, {len(writer.acked)} writes, {writer.failed} failed, "
          f"{writer.auth_retries} refused logins retried")

    assert new != old and len(new) == 64 and "POSTGRES_PASSWORD_NEXT" not in bucket(c)
    assert held.execute("SELECT 1").fetchone() == (1,)  # the open session survived
    held.close()
    assert refused(c, p, old) and not refused(c, p, new)
    assert writer.failed == 0
    with dial(c, p, new) as conn:
        present = {r[0] for r in conn.execute("SELECT id FROM t WHERE id >= 10000")}
    assert set(writer.acked) <= present
    c.wait_streaming([o for o in range(3) if o != p], primary=p, port=PORT, user=USER, dbname=DB)
    assert started(c) == before, "no pod may restart"
    assert new in bucket(c, f"{c.scope}/web")["DATABASE_URL"], "linked apps follow"
    assert new not in run.out and old not in run.out
    for name in c.pods():
        logs = c.runtime.client.containers.get(name).logs().decode()
        assert new not in logs and old not in logs, f"a password reached the log of {name}"
    # the rotation is invisible to the reconciler: nothing to roll
    c.cli("reconcile", c.ref).ok()
    assert started(c) == before


def test_an_interrupted_rotation_is_finished_by_running_it_again(c: Cluster) -> None:
    p = primary(c)
    current = bucket(c)["POSTGRES_PASSWORD"]
    # killed after recording the intent, before the role changed: the current password still works
    c.store.patch(c.scope, c.name, {"POSTGRES_PASSWORD_NEXT": "a" * 64})
    assert not refused(c, p, current)
    c.cli("new-password", c.ref).ok()
    assert bucket(c)["POSTGRES_PASSWORD"] == "a" * 64 and "POSTGRES_PASSWORD_NEXT" not in bucket(c)
    assert not refused(c, p, "a" * 64) and refused(c, p, current)

    # killed after the role changed, before the bucket swap: the recorded _NEXT is the one that works
    c.store.patch(c.scope, c.name, {"POSTGRES_PASSWORD_NEXT": "b" * 64})
    with dial(c, p, "a" * 64) as conn:
        conn.execute(f"ALTER ROLE {USER} PASSWORD '{'b' * 64}'")
    assert refused(c, p, bucket(c)["POSTGRES_PASSWORD"]) and not refused(c, p, bucket(c)["POSTGRES_PASSWORD_NEXT"])
    info = c.cli("info", c.ref).ok().out
    assert "rotation was interrupted" in info and "b" * 64 not in info
    out = c.cli("new-password", c.ref).ok().out
    assert "resuming" in out
    assert bucket(c)["POSTGRES_PASSWORD"] == "b" * 64 and "POSTGRES_PASSWORD_NEXT" not in bucket(c)
    assert not refused(c, p, "b" * 64)


def test_replication_rotation_keeps_standbys_streaming_without_and_after_a_restart(c: Cluster) -> None:
    p = primary(c)
    standbys = [o for o in range(3) if o != p]
    old = bucket(c)["POSTGRES_REPLICATION_PASSWORD"]
    before = started(c)
    c.cli("new-password", c.ref, "--replication").ok()
    new = bucket(c)["POSTGRES_REPLICATION_PASSWORD"]
    assert new != old
    assert refused(c, p, old, user="replicator") and not refused(c, p, new, user="replicator")
    c.wait_streaming(standbys, primary=p, port=PORT, user=USER, dbname=DB)
    assert started(c) == before, "no pod may restart"
    # the WAL receivers reconnected with the new password: a restart of one re-reads it too
    c.runtime.client.containers.get(c.container(standbys[0])).restart(timeout=30)
    c.wait_streaming(standbys, primary=p, port=PORT, user=USER, dbname=DB, timeout=120)
    state = c.home / "runtime" / c.scope / c.name / "replication_password"
    assert state.stat().st_mode & 0o777 == 0o600


def test_psql_runs_without_a_terminal_and_returns_psqls_exit_code(c: Cluster) -> None:
    def psql(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, LABELS_ENV: f"{TEST_LABEL}={SESSION}"}
        return subprocess.run([sys.executable, "-m", "voodu_postgres", "--home", str(c.home), "psql", c.ref, *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=60)

    ok = psql("-c", "SELECT 40 + 2", "--", "-At")
    assert (ok.returncode, ok.stdout) == (0, "42\n"), ok
    standby = next(o for o in range(3) if o != primary(c))
    assert psql("--replica", str(standby), "-c", "SELECT pg_is_in_recovery()", "--", "-At").stdout == "t\n"
    bad = psql("-c", "SELECT 1/0")
    assert bad.returncode == 1 and "division by zero" in bad.stderr
    missing = psql("--replica", "7", "-c", "SELECT 1")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "out of range" in missing.stderr


def bindings(c: Cluster) -> dict[int, tuple[str, str]]:
    out = {}
    for o in range(3):
        attrs = c.runtime.client.containers.get(c.container(o)).attrs
        first = attrs["HostConfig"]["PortBindings"][f"{PORT}/tcp"][0]
        out[o] = (first["HostIp"], first["HostPort"])
    return out


def test_expose_publishes_each_pod_on_its_own_port_and_unexpose_returns_to_loopback(c: Cluster) -> None:
    p = primary(c)
    with dial(c, p, bucket(c)["POSTGRES_PASSWORD"]) as conn:
        conn.execute("INSERT INTO t(id) VALUES (-42)")
    run = c.cli("expose", c.ref).ok()
    assert "every interface" in run.out
    assert bindings(c) == {o: ("0.0.0.0", str(PORT + o)) for o in range(3)}
    assert bucket(c)["PG_EXPOSE_PUBLIC"] == "true"
    info = json.loads(c.cli("info", c.ref, "-o", "json").ok().out)
    assert [pod["published"] for pod in info["pods"]] == [f"0.0.0.0:{PORT + o}" for o in range(3)]
    assert info["exposed"] is True
    assert primary(c) == p
    with dial(c, p, bucket(c)["POSTGRES_PASSWORD"]) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE id = -42").fetchone() == (1,)
    # a later apply keeps it published
    c.apply().ok()
    assert bindings(c)[0][0] == "0.0.0.0"
    c.cli("unexpose", c.ref).ok()
    assert {ip for ip, _ in bindings(c).values()} == {"127.0.0.1"}
    assert "PG_EXPOSE_PUBLIC" not in bucket(c)
    c.wait_streaming([o for o in range(3) if o != p], primary=p, port=PORT, user=USER, dbname=DB)


# -- plugin mode, with Docker ------------------------------------------------------------------


@pytest.fixture
def ctl(c: Cluster) -> Iterator[FakeController]:
    """A fake controller holding what Voodu would for this cluster: its statefulset and bucket."""
    with FakeController() as controller:
        spec = load_spec(c.scope, c.name, {k: v for k, v in c.base.items() if k != "pg_config"} | {"image": IMAGE})
        controller.set_config(c.scope, c.name, bucket(c))
        controller.put_manifest("statefulset", c.scope, c.name,
                                expand(spec, controller.resolve(c.scope, c.name)).manifests[1]["spec"])
        yield controller


def test_plugin_mode_info_psql_and_new_password(c: Cluster, ctl: FakeController) -> None:
    p = primary(c)
    code, env = dispatch(ctl, "info", c.ref)
    assert code == 0 and env["data"]["actions"] == []
    assert f"db-{p}.{c.scope}.voodu:{PORT}" in env["data"]["message"]
    assert bucket(c)["POSTGRES_PASSWORD"] not in env["data"]["message"]
    code, env = dispatch(ctl, "info", c.ref, "-o", "json")
    snap = json.loads(env["data"]["message"])
    assert [pod["role"] for pod in snap["pods"]] == ["primary" if o == p else "standby" for o in range(3)]

    code, env = dispatch(ctl, "psql", c.ref, "-c", "SELECT 1")
    (action,) = env["data"]["actions"]
    assert action["type"] == "exec_local" and action["command"][:4] == ["docker", "exec", "-i", c.container(p)]
    assert ctl.apply_actions(env["data"]["actions"]) and ctl.exec_local

    old = bucket(c)["POSTGRES_PASSWORD"]
    code, env = dispatch(ctl, "new-password", c.ref)
    assert code == 0, env
    # the intent was recorded at once, without a restart, before the role changed
    assert ("POST", f"/config?scope={c.scope}&name={c.name}&restart=false") in ctl.requests
    ctl.apply_actions(env["data"]["actions"])
    new = ctl.resolve(c.scope, c.name)["POSTGRES_PASSWORD"]
    assert new != old and "POSTGRES_PASSWORD_NEXT" not in ctl.resolve(c.scope, c.name)
    assert (c.scope, c.name) not in ctl.restarts, "the database must not be restarted"
    assert refused(c, p, old) and not refused(c, p, new)
    c.store.patch(c.scope, c.name, {"POSTGRES_PASSWORD": new})  # keep the standalone view in step


def test_secrets_never_leave_a_file_readable_by_others(c: Cluster) -> None:
    db = Path(c.home) / "state.db"
    assert db.stat().st_mode & 0o777 == 0o600
