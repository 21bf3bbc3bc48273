"""Backups end to end on a real 2-pod cluster (standalone): capture (detached and --follow), the
listing, a restore round trip checked by a checksum of the data on the primary and on the
standby, a capture from the standby, exact ``--keep`` retention, a capture whose pg_dump fails
(listed failed, with its log), cancel in the middle of a multi-second dump (nothing partial left),
verify catching a corrupted file, and the password kept out of ``docker inspect``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SESSION, TEST_LABEL
from tests.integration.helpers_cli import Cluster, eventually, standing_cluster
from voodu_postgres.adapters.docker import DockerRuntime

pytestmark = pytest.mark.integration

USER, DB = "appuser", "appdata"
CHECKSUM = "SELECT md5(coalesce(string_agg(id::text || ':' || v, ',' ORDER BY id), '')) FROM items"


@pytest.fixture(scope="module")
def c(runtime: DockerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("backups")
    cluster = standing_cluster(runtime, work, f"b{SESSION}", f"vpg-{SESSION}-bk",
                               {"user": USER, "database": DB, "replicas": 2}, [1], user=USER, dbname=DB)
    sql(cluster, "CREATE TABLE items (id bigint PRIMARY KEY, v text NOT NULL)",
        "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
        "CREATE TABLE other (k int)", "INSERT INTO other VALUES (1), (2), (3)")
    yield cluster
    cluster.cli("delete", cluster.ref, "--prune", "--yes")


def sql(c: Cluster, *statements: str, ordinal: int = 0) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    with c.connect(ordinal, user=USER, dbname=DB) as conn:
        for statement in statements:
            cur = conn.execute(statement)
            rows = cur.fetchall() if cur.description else []
    return rows


def listing(c: Cluster) -> dict[str, dict[str, Any]]:
    data = json.loads(c.cli("backups", c.ref, "-o", "json").ok().out)
    return {row["id"]: row for row in data["backups"]}


def capture(c: Cluster, *extra: str) -> dict[str, Any]:
    run = c.cli("backups:capture", c.ref, "--follow", "-o", "json", *extra).ok()
    return dict(json.loads(run.out))


def metadata(c: Cluster, file: str) -> dict[str, Any]:
    return dict(json.loads((c.workdir / "backups" / f"{file}.json").read_text()))


def backup_files(c: Cluster) -> list[str]:
    return sorted(p.name for p in (c.workdir / "backups").iterdir())


def test_round_trip_restores_the_data_on_the_primary_and_the_standby(c: Cluster) -> None:
    before = sql(c, CHECKSUM)[0][0]
    result = capture(c)
    assert result["status"] == "complete" and result["source"] == "primary"
    meta = metadata(c, result["file"])
    assert meta["status"] == "complete" and meta["source"]["role"] == "primary"
    assert meta["table_rows"] == {"public.items": 5000, "public.other": 3}
    assert meta["toc"]["table_data"] == 2 and meta["server_version"].startswith("15")
    assert meta["size_bytes"] == (c.workdir / "backups" / result["file"]).stat().st_size
    assert not any(n.endswith(".partial") for n in backup_files(c))

    # the password is in no argv and no environment Docker shows
    attrs = c.runtime.client.containers.get(result["container"]).attrs
    assert c.password not in json.dumps(attrs)

    sql(c, "UPDATE items SET v = 'changed' WHERE id % 7 = 0", "DELETE FROM items WHERE id > 4000",
        "DROP TABLE other", "CREATE TABLE stray (x int)")
    assert sql(c, CHECKSUM)[0][0] != before

    refused = c.cli("backups:restore", c.ref, result["id"])
    assert refused.code == 2 and "--yes" in refused.err
    run = c.cli("backups:restore", c.ref, result["id"], "--yes").ok()
    assert "dump TOC: 2 table data block(s), 2 table(s)" in run.out + run.err

    assert sql(c, CHECKSUM)[0][0] == before
    assert sql(c, "SELECT count(*) FROM other")[0][0] == 3

    def standby_caught_up() -> None:
        assert sql(c, CHECKSUM, ordinal=1)[0][0] == before

    eventually(standby_caught_up, 30)
    assert listing(c)[result["id"]]["status"] == "complete"


def test_restore_from_an_http_url_served_on_loopback(c: Cluster) -> None:
    import functools
    import http.server
    import threading

    before = sql(c, CHECKSUM)[0][0]
    result = capture(c)
    served = c.workdir / "served"
    served.mkdir()
    (served / "dump").write_bytes((c.workdir / "backups" / result["file"]).read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        sql(c, "DELETE FROM items WHERE id <= 10")
        c.cli("backups:restore", c.ref, f"{base}/dump", "--yes").ok()
        assert sql(c, CHECKSUM)[0][0] == before
        missing = c.cli("backups:restore", c.ref, f"{base}/nope", "--yes")
        assert missing.code == 1 and missing.err.splitlines()[-1].endswith("HTTP 404 File not found")
    finally:
        server.shutdown()
    assert not [n for n in backup_files(c) if n.startswith(".vdrestore")]


def test_capture_from_the_standby(c: Cluster) -> None:
    result = capture(c, "--from-replica", "1")
    assert result["source"] == "replica 1"
    meta = metadata(c, result["file"])
    assert meta["source"]["role"] == "standby" and meta["source"]["ordinal"] == 1
    assert meta["table_rows"]["public.items"] == sql(c, "SELECT count(*) FROM items")[0][0]


def test_detached_capture_then_keep_leaves_exactly_n(c: Cluster) -> None:
    run = c.cli("backups:capture", c.ref).ok()
    assert "in background" in run.out and "backups:logs" in run.out
    bid = run.out.split("capturing backup ")[1].split()[0]

    def landed() -> None:
        assert listing(c)[bid]["status"] == "complete"

    eventually(landed, 60)
    followed = c.cli("backups:logs", c.ref, bid, "--follow").ok()
    assert "capture complete" in followed.out and "@@vpg" not in followed.out
    capture(c)
    result = capture(c, "--keep", "2")
    rows = listing(c)
    complete = sorted(b for b, row in rows.items() if row["status"] == "complete")
    assert len(complete) == 2 and result["id"] in complete, rows
    assert result["pruned"]


def test_failed_pg_dump_is_listed_failed_with_its_log(c: Cluster) -> None:
    with c.connect(0, user=USER, dbname="postgres") as conn:
        conn.execute(f"ALTER DATABASE {DB} ALLOW_CONNECTIONS false")
        try:
            run = c.cli("backups:capture", c.ref, "--follow")
        finally:
            conn.execute(f"ALTER DATABASE {DB} ALLOW_CONNECTIONS true")
    assert run.code == 1 and "failed" in run.err, run
    bid = run.err.split("backup ")[1].split()[0]
    row = listing(c)[bid]
    assert row["status"] == "failed" and "filename" not in row
    assert not any(n.startswith(bid) and n.endswith((".dump", ".partial")) for n in backup_files(c))
    logs = c.cli("backups:logs", c.ref, bid).ok()
    assert "not currently accepting connections" in logs.out
    refused = c.cli("backups:restore", c.ref, bid, "--yes")
    assert refused.code == 1 and "failed" in refused.err and "only a complete backup" in refused.err
    c.cli("backups:delete", c.ref, bid, "--yes").ok()
    assert bid not in listing(c)


def test_verify_passes_then_detects_a_corrupted_file(c: Cluster) -> None:
    result = capture(c, "--verify")
    assert result["verified"] is True
    assert listing(c)[result["id"]]["verified"] is True
    path = c.workdir / "backups" / result["file"]
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))
    run = c.cli("backups:verify", c.ref, result["id"])
    assert run.code == 1 and "FAILED" in run.out, run
    assert listing(c)[result["id"]]["verified"] is False
    assert metadata(c, result["file"])["verification"]["ok"] is False


def test_cancel_during_a_long_capture_leaves_nothing_partial(c: Cluster) -> None:
    sql(c, "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS t "
           "FROM generate_series(1, 1500000) g")
    try:
        run = c.cli("backups:capture", c.ref, "-o", "json").ok()
        started = json.loads(run.out)
        partial = c.workdir / "backups" / (started["file"] + ".partial")

        def writing() -> None:
            assert partial.exists() and partial.stat().st_size > 0

        eventually(writing, 30)
        begun = time.monotonic()
        cancelled = c.cli("backups:cancel", c.ref, started["id"], "-o", "json").ok()
        assert json.loads(cancelled.out)["states"] == {started["id"]: "cancelled"}
        assert time.monotonic() - begun < 15
        assert not partial.exists()
        assert not (c.workdir / "backups" / started["file"]).exists()
        row = listing(c)[started["id"]]
        assert row["status"] == "cancelled" and "filename" not in row
        again = c.cli("backups:cancel", c.ref, started["id"])
        assert again.code == 1 and "not running" in again.err
    finally:
        sql(c, "DROP TABLE big")


def test_tables_over_the_row_count_budget_are_not_counted_and_the_backup_still_verifies(c: Cluster) -> None:
    # ~110 MB of heap: over the 64 MiB budget, so the capture must not scan it a second time
    sql(c, "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS t "
           "FROM generate_series(1, 1000000) g")
    try:
        result = capture(c, "--verify")
        meta = metadata(c, result["file"])
        assert meta["table_rows"] == {}
        assert meta["table_rows_skipped"].startswith("not counted: ") and "64 MiB budget" in meta["table_rows_skipped"]
        assert result["verified"] is True
        assert "row counts not compared" in meta["verification"]["detail"], meta["verification"]
        c.cli("backups:delete", c.ref, result["id"], "--yes").ok()
    finally:
        sql(c, "DROP TABLE big")
    # back under the budget: exact counts again, a name holding a newline on one line of the log
    sql(c, 'CREATE TABLE "odd\nname" (x int)', 'INSERT INTO "odd\nname" VALUES (1), (2)')
    try:
        again = capture(c, "--verify")
    finally:
        sql(c, 'DROP TABLE "odd\nname"')
    small = metadata(c, again["file"])
    assert small["table_rows"]["public.other"] == 3 and small["table_rows_skipped"] is None
    assert small["table_rows"]['public."odd\\nname"'] == 2, small["table_rows"]
    assert again["verified"] is True and "row counts match" in small["verification"]["detail"]
    c.cli("backups:delete", c.ref, again["id"], "--yes").ok()


def test_listing_every_cluster_and_bad_ids(c: Cluster, tmp_path: Path) -> None:
    text = c.cli("backups").ok().out
    assert f"=== Backups for {c.ref}" in text and "complete" in text
    bad = c.cli("backups:restore", c.ref, "x1", "--yes")
    assert bad.code == 1 and "must start with 'b'" in bad.err
    missing = c.cli("backups:delete", c.ref, "b999", "--yes")
    assert missing.code == 1 and "not found (available:" in missing.err
    first = sorted(b for b, r in listing(c).items() if r["status"] == "complete")[0]
    dest = tmp_path / "copy.dump"
    c.cli("backups:download", c.ref, first, "--to", str(dest)).ok()
    assert dest.stat().st_size > 0
    again = c.cli("backups:download", c.ref, first, "--to", str(dest))
    assert again.code == 1 and "already exists" in again.err
    sidecar = c.workdir / "backups" / f"{listing(c)[first]['filename']}.json"
    original = sidecar.read_text()
    sidecar.write_text(json.dumps({**json.loads(original), "server_version": "99.1"}))
    try:
        newer = c.cli("backups:restore", c.ref, first, "--yes")
        assert newer.code == 1 and "dumped from PostgreSQL 99, newer than the target's 15" in newer.err
        assert newer.err.count("\n") == 1
    finally:
        sidecar.write_text(original)
    dry = c.cli("backups:prune", c.ref, "--keep", "1", "--dry-run").ok()
    assert "would prune" in dry.out
    assert c.cli("backups:prune", c.ref, "--keep", "1").code == 2
    c.cli("backups:prune", c.ref, "--keep", "1", "--yes").ok()
    assert [r["status"] for r in listing(c).values()].count("complete") == 1


def test_schedule_is_recorded_shown_by_info_and_started_when_due(c: Cluster) -> None:
    from datetime import UTC, datetime, timedelta

    from voodu_postgres.adapters.store import SqliteStore
    from voodu_postgres.commands.backups import run_due
    from voodu_postgres.commands.base import Env
    from voodu_postgres.commands.local import LocalMode
    from voodu_postgres.domain.naming import Ref
    from voodu_postgres.domain.schedule import next_fire

    bad = c.cli("backups:schedule", c.ref, "--at", "0 3 * *")
    assert bad.code == 2 and "need 5 fields" in bad.err
    c.cli("backups:schedule", c.ref, "--at", "0 3 * * *", "--keep", "5").ok()
    assert "scheduled '0 3 * * *' UTC, keep 5" in c.cli("info", c.ref).ok().out
    env = Env(environ={"VOODU_POSTGRES_LABELS": f"{TEST_LABEL}={SESSION}"})
    mode = LocalMode(env, SqliteStore(c.home), c.home)
    ref = Ref(c.scope, c.name)
    now = datetime.now(UTC)
    assert run_due(mode, ref, now) is None  # a new schedule waits for its first slot
    slot_passed = next_fire("0 3 * * *", now) + timedelta(minutes=1)
    started = run_due(mode, ref, slot_passed)
    assert started is not None and "scheduled capture" in started, started
    assert run_due(mode, ref, slot_passed) is None  # one at a time: it is still running
    bid = started.split("capture ")[1].split()[0]

    def landed() -> None:
        assert listing(c)[bid]["status"] == "complete"

    eventually(landed, 60)
    c.cli("backups:schedule", c.ref, "--remove").ok()
    assert "scheduled" not in c.cli("info", c.ref).ok().out


def test_a_schedule_is_run_by_a_real_reconcile_watch_process(c: Cluster) -> None:
    """``backups:schedule --at '* * * * *'``, then ``reconcile --watch`` as its own process: the next
    minute's slot starts one capture — one only, however many passes follow in that minute — which
    lands complete; SIGTERM (what systemd sends) stops the watcher cleanly: no traceback, the
    cluster's lease released, the process ended by that signal."""
    import os
    import re
    import signal
    import subprocess
    import sys
    from datetime import UTC, datetime, timedelta

    from tests.integration.helpers_cli import LABELS_ENV

    before = set(listing(c))
    c.cli("backups:schedule", c.ref, "--at", "* * * * *", "--keep", "2").ok()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "voodu_postgres", "--home", str(c.home), "reconcile", c.ref, "--watch", "--interval", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, LABELS_ENV: f"{TEST_LABEL}={SESSION}"})
    try:
        deadline = time.monotonic() + 150  # the next minute, then a small dump
        done: list[str] = []
        while not done and time.monotonic() < deadline:
            assert watcher.poll() is None, watcher.communicate()
            rows = listing(c)
            done = [b for b, row in rows.items() if b not in before and row["status"] == "complete"]
            time.sleep(1)
        assert done, f"no scheduled capture completed within 150s: {listing(c)}"
        time.sleep(4)  # four more passes (--interval 1), still in the slot's minute
        assert watcher.poll() is None
    finally:
        stopped = datetime.now(UTC)
        watcher.send_signal(signal.SIGTERM)
        out, err = watcher.communicate(timeout=60)
        c.cli("backups:schedule", c.ref, "--remove").ok()
    assert watcher.returncode == -signal.SIGTERM, (watcher.returncode, err)
    assert "Traceback" not in err and err.rstrip().endswith("interrupted"), err
    assert c.store.lease(c.scope, c.name) is None
    started = re.findall(r"scheduled capture (b\d+) started \(slot (\S+)\)", out)
    slots = [slot for _bid, slot in started]
    assert started and len(slots) == len(set(slots)), out  # never two captures for one slot
    # the passes after the capture fell in its slot's minute (so the check above means something)
    first_slot = datetime.fromisoformat(slots[0].replace("Z", "+00:00"))
    assert stopped - first_slot < timedelta(minutes=1), (stopped, out)
    new = {b for b in listing(c) if b not in before}
    assert new == {bid for bid, _slot in started}, (new, out)  # each new backup is a slot's


def test_plugin_mode_lists_fetches_shows_logs_and_restores(c: Cluster) -> None:
    from tests.fake_controller import FakeController
    from tests.fake_controller import dispatch as plugin_dispatch
    from tests.integration.conftest import IMAGE
    from voodu_postgres.domain.spec import load_spec
    from voodu_postgres.render.expansion import expand

    before = sql(c, CHECKSUM)[0][0]
    result = capture(c)
    with FakeController() as ctl:
        spec = load_spec(c.scope, c.name, {**c.base, "image": IMAGE,
                                           "volumes": [f"{c.workdir / 'backups'}:/backups:rw"]})
        ctl.set_config(c.scope, c.name, c.store.resolve(c.scope, c.name))
        ctl.put_manifest("statefulset", c.scope, c.name, expand(spec, ctl.resolve(c.scope, c.name)).manifests[1]["spec"])

        def dispatch(command: str, *args: str) -> tuple[int, dict[str, Any]]:
            # the plugin_dir in the invocation is where plugin-mode state (the job's pgpass) lives
            return plugin_dispatch(ctl, command, *args, plugin_dir=str(c.workdir / "plugin"))

        code, env = dispatch("backups", c.ref)
        assert code == 0 and f"=== Backups for {c.ref}" in env["data"]["message"]
        assert result["id"] in env["data"]["message"]
        code, env = dispatch("backups:download", c.ref, result["id"], "--to", "/tmp/x.dump")
        (fetch,) = env["data"]["actions"]
        assert fetch["type"] == "fetch_file" and fetch["dest_path"] == "/tmp/x.dump"
        assert fetch["remote_path"] == str(c.workdir / "backups" / result["file"])
        code, env = dispatch("backups:logs", c.ref, result["id"])
        assert code == 0 and "capture complete" in env["data"]["message"]
        sql(c, "DELETE FROM items WHERE id <= 3")
        code, env = dispatch("backups:restore", c.ref, result["id"], "--yes")
        assert code == 0 and env["status"] == "ok", env
        assert sql(c, CHECKSUM)[0][0] == before
        code, env = dispatch("backups:capture", c.ref)  # a Voodu job (the fake controller runs none)
        assert code == 0, env
        apply, run = env["data"]["actions"]
        assert (apply["type"], apply["manifest"]["kind"], run["type"]) == ("apply_manifest", "job", "run_job")
        assert run["name"] == apply["manifest"]["name"] and run["name"].startswith(f"{c.name}.bk.b")
        assert c.store.resolve(c.scope, c.name)["POSTGRES_PASSWORD"] not in json.dumps(env)
