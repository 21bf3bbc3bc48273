"""The capture script, its log protocol, the pgpass file and where a cluster's backups live — the
parts of the backups commands that need no Docker (the rest runs in tests/integration/test_backups.py)."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from voodu_postgres.adapters.docker import ContainerInfo, RuntimeFailure
from voodu_postgres.cli import main
from voodu_postgres.commands import backups as cmd
from voodu_postgres.commands.backups import backups_dir_of
from voodu_postgres.commands.base import Env
from voodu_postgres.commands.facts import Facts
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.reconciler import backups as fx

REF = Ref("shop", "db")


def test_backups_dir_is_the_volume_mounted_at_backups() -> None:
    assert backups_dir_of({"volumes": ["x:/etc/a:ro", "/tmp/bk:/backups:rw"]}, REF) == Path("/tmp/bk")
    assert backups_dir_of({"volumes": ["x:/etc/a:ro"]}, REF) == Path("/opt/voodu/backups/shop/db")
    assert backups_dir_of({}, Ref("", "db")) == Path("/opt/voodu/backups/_unscoped/db")


def test_pgpass_is_0600_and_escapes_separators(tmp_path: Path) -> None:
    path = fx.write_pgpass(tmp_path, "app:user", r"p:a\ss")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "*:*:*:app\\:user:p\\:a\\\\ss\n"


def test_capture_script_is_valid_bash_quotes_names_and_renames_last() -> None:
    script = fx.capture_script(host="db-0.shop.voodu", port=5433, user="o'neil", database="appdata",
                               filename="b001-20260505T020000Z.dump")
    assert subprocess.run(["bash", "-n", "-c", script], check=False).returncode == 0
    assert "-U 'o'\"'\"'neil'" in script and "-p 5433" in script and " ".join(fx.DUMP_FLAGS) in script
    order = [script.index(s) for s in ("pg_export_snapshot", "pg_dump ", "pg_restore --list", "openssl dgst",
                                       'sync "$P"', 'mv "$P" "$F"', "sync /backups")]
    assert order == sorted(order)
    assert "pipefail" in script and "conflict with recovery" in script


# -- the capture script against stand-ins for psql, pg_dump and pg_restore ------------------------

SNAPSHOT = "00000003-0000001B-1"
_PSQL = r"""#!/bin/bash
# answers the snapshot session as `psql -XAtq` would; every step lands in $STUB/events
while IFS= read -r line; do
  case "$line" in
    "SELECT pg_export_snapshot()"*) echo "SNAPSHOT|${STUB_RECOVERY:-f}" ;;
    "WITH t AS"*)
      echo counting >>"$STUB/events"
      if [ "$(cat "$STUB/count_failures" 2>/dev/null || echo 0)" -gt 0 ]; then
        echo $(( $(cat "$STUB/count_failures") - 1 )) >"$STUB/count_failures"
        echo "ERROR:  canceling statement due to conflict with recovery" >&2; exit 3
      fi
      printf '@@bytes\t%s\n' "${STUB_TABLE_BYTES:-16384}"  # as the SQL: the size first, counts within budget
      [ "${STUB_TABLE_BYTES:-16384}" -le BUDGET ] && printf 'public.items\t42\npublic."odd name"\t0\n' ;;
    '\echo '*) echo "${line#\\echo }" ;;
    COMMIT*) echo commit >>"$STUB/events" ;;
  esac
done
""".replace("SNAPSHOT", SNAPSHOT).replace("BUDGET", str(fx.ROW_COUNT_BUDGET))
_PG_DUMP = r"""#!/bin/bash
printf '%s\n' "$@" >"$STUB/pg_dump.argv"
echo dump-started >>"$STUB/events"
prev=""; for a in "$@"; do [ "$prev" = "-f" ] && out=$a; prev=$a; done
printf 'PGDMP a custom archive' >"$out"
sleep "${STUB_DUMP_SECONDS:-0.3}" >/dev/null 2>&1  # (not holding the test's pipes once killed)
echo dump-done >>"$STUB/events"
exit "${STUB_DUMP_RC:-0}"
"""
_PG_RESTORE = """#!/bin/bash
echo ";     Dumped from database version: 15.5"; echo "1; 0 1 TABLE DATA public items app"
"""


def run_capture(tmp_path: Path, *, count_failures: int = 0, sidecar: str | None = None,
                **stub_env: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """Run the real capture script with stand-ins first on PATH (the first ``count_failures``
    counts fail with a recovery conflict; ``sidecar``: the backup's metadata file already there);
    (result, backups dir, stub dir)."""
    stub, backups = tmp_path / "stub", tmp_path / "backups"
    stub.mkdir(parents=True)
    backups.mkdir()
    if sidecar is not None:
        (backups / f"{FILE}.json").write_text(sidecar)
    (stub / "count_failures").write_text(str(count_failures))
    for name, text in (("psql", _PSQL), ("pg_dump", _PG_DUMP), ("pg_restore", _PG_RESTORE)):
        (stub / name).write_text(text)
        (stub / name).chmod(0o755)
    script = fx.capture_script(host="db-1.shop.voodu", port=5432, user="app", database="data", filename=FILE,
                               directory=str(backups))
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "STUB": str(stub), **stub_env}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    return result, backups, stub


def test_capture_counts_rows_in_the_snapshot_it_exports_to_pg_dump(tmp_path: Path) -> None:
    import hashlib

    result, backups, stub = run_capture(tmp_path, STUB_RECOVERY="t")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(backups)) == [FILE]  # renamed into place, no .partial left
    argv = (stub / "pg_dump.argv").read_text().split()
    assert f"--snapshot={SNAPSHOT}" in argv and argv[-2:] == ["-f", f"{backups}/{FILE}.partial"]
    assert all(flag in argv for flag in fx.DUMP_FLAGS)
    # the counts run while pg_dump runs, and the snapshot is held until the dump has finished
    events = (stub / "events").read_text().split()
    assert sorted(events) == sorted(["dump-started", "counting", "dump-done", "commit"])
    assert events.index("dump-done") < events.index("commit")
    log = fx.parse_capture_log(result.stdout)
    assert log.rows == {"public.items": 42, 'public."odd name"': 0} and log.values["table_bytes"] == "16384"
    assert log.values["sha256"] == hashlib.sha256((backups / FILE).read_bytes()).hexdigest()
    assert log.values["in_recovery"] == "t" and log.values["size"] == str((backups / FILE).stat().st_size)
    assert log.toc[0].endswith("15.5") and "capture complete" in result.stdout


def test_tables_over_the_budget_are_dumped_without_counts_and_say_how_big_they_were(tmp_path: Path) -> None:
    over = str(fx.ROW_COUNT_BUDGET + 1)
    result, backups, stub = run_capture(tmp_path, STUB_TABLE_BYTES=over)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(backups)) == [FILE]
    log = fx.parse_capture_log(result.stdout)
    assert log.rows == {} and log.values["table_bytes"] == over
    assert log.values["row_budget"] == str(fx.ROW_COUNT_BUDGET)
    assert fx.rows_skipped_reason(int(over), fx.ROW_COUNT_BUDGET) is not None
    assert fx.rows_skipped_reason(fx.ROW_COUNT_BUDGET, fx.ROW_COUNT_BUDGET) is None


def test_a_failed_count_stops_pg_dump_and_leaves_no_file(tmp_path: Path) -> None:
    import time

    begun = time.monotonic()
    result, backups, stub = run_capture(tmp_path, count_failures=9, STUB_DUMP_SECONDS="20")
    assert time.monotonic() - begun < 15  # pg_dump was stopped, not waited for
    assert result.returncode != 0
    assert "capture failed: counting rows in the dump's snapshot failed: ERROR:  canceling statement" in result.stderr
    assert "retrying (2/2)" in result.stderr  # a recovery conflict is retried, a bounded number of times
    assert os.listdir(backups) == [] and "dump-done" not in (stub / "events").read_text()


def test_a_failed_pg_dump_leaves_no_file(tmp_path: Path) -> None:
    result, backups, _stub = run_capture(tmp_path, STUB_DUMP_RC="1")
    assert result.returncode == 1 and "capture failed: pg_dump exited 1" in result.stderr
    assert os.listdir(backups) == [] and "capture complete" not in result.stdout


def test_a_recovery_conflict_while_counting_is_retried(tmp_path: Path) -> None:
    result, backups, stub = run_capture(tmp_path, count_failures=1)
    assert result.returncode == 0, result.stderr
    assert "retrying (1/2)" in result.stderr and os.listdir(backups) == [FILE]
    events = (stub / "events").read_text().split()  # the first pg_dump was stopped with its session
    assert (events.count("counting"), events.count("dump-done"), events.count("commit")) == (2, 1, 1)


def test_capture_log_protocol() -> None:
    log = ("@@vpg started 2026-05-05T02:00:00Z\npg_dump: warning: x\n@@vpg toc ;  Format: CUSTOM\n"
           "@@vpg toc 215; 1259 16385 TABLE public items appuser\n@@vpg rows public.items\t5000\n"
           "@@vpg rows bad\tline\n@@vpg sha256 abc\n@@vpg size 1234\ncapture complete: /backups/x\n")
    parsed = fx.parse_capture_log(log)
    assert parsed.values == {"started": "2026-05-05T02:00:00Z", "sha256": "abc", "size": "1234"}
    assert parsed.rows == {"public.items": 5000}
    assert parsed.toc == [";  Format: CUSTOM", "215; 1259 16385 TABLE public items appuser"]
    assert fx.human_log(log) == "pg_dump: warning: x\ncapture complete: /backups/x\n"


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "b001.dump.json"
    fx.write_atomic(target, "one")
    fx.write_atomic(target, "two")
    assert target.read_text() == "two" and os.listdir(tmp_path) == ["b001.dump.json"]


def test_scan_ignores_directories_and_a_missing_dir(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b001-20260505T020000Z.dump").write_bytes(b"12345")
    assert fx.scan(tmp_path) == [("b001-20260505T020000Z.dump", 5)]
    assert fx.scan(tmp_path / "nope") == []


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = Env(stdin=io.StringIO(""), stdout=io.StringIO(), stderr=io.StringIO(), environ=environ or {})
    code = main(list(argv), env)
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    return int(code), env.stdout.getvalue(), env.stderr.getvalue()


@pytest.mark.parametrize("argv,text", [
    (["backups:restore", "shop/db", "b001"], "refusing to restore without --yes"),
    (["backups:delete", "shop/db", "b001"], "refusing to delete without --yes"),
])
def test_destructive_backup_commands_need_yes_before_anything_else(tmp_path: Path, argv: list[str],
                                                                   text: str) -> None:
    code, _out, err = run("--home", str(tmp_path), *argv)
    assert code == 2 and text in err


def test_backup_commands_under_voodu_fail_with_one_envelope_line() -> None:
    # (they work under Voodu — tests/unit/test_plugin_backups.py — but not without a controller)
    context = json.dumps({"controller_url": "http://127.0.0.1:9"})
    env = Env(stdin=io.StringIO(context), stdout=io.StringIO(), stderr=io.StringIO(),
              environ={"VOODU_PLUGIN_DIR": "/x"})
    code = main(["backups:capture", "shop/db"], env)
    assert isinstance(env.stdout, io.StringIO)
    out = env.stdout.getvalue()
    envelope = json.loads(out)
    assert code == 1 and out.count("\n") == 1 and envelope["status"] == "error" and "controller" in envelope["error"]


# -- finalising exited captures (a tiny fake runtime: only what observe() touches) -------------


FILE = "b001-20260505T020000Z.dump"


@dataclass
class FakeBackupRuntime:
    containers: dict[str, ContainerInfo] = field(default_factory=dict)
    logs_of: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def list_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        return [c for c in self.containers.values() if all(c.labels.get(k) == v for k, v in labels.items())]

    def logs(self, name: str) -> str:
        if name not in self.logs_of:
            raise RuntimeFailure(f"container {name} not found")
        return self.logs_of[name]

    def remove_container(self, name: str, *, timeout: int = 30) -> None:
        self.removed.append(name)
        self.containers.pop(name, None)


@dataclass
class StubMode:
    runtime: Any
    plugin: bool = False
    env: Env = field(default_factory=lambda: Env(stdout=io.StringIO(), stderr=io.StringIO(), environ={}))


def cluster(tmp_path: Path, runtime: FakeBackupRuntime, bucket: dict[str, str] | None = None) -> cmd.Cluster:
    spec = load_spec("shop", "db", {"replicas": 2, "database": "appdata", "user": "app"})
    facts = Facts(spec, bucket or {}, {"volumes": [f"{tmp_path}:/backups:rw"]})
    return cmd.Cluster(StubMode(runtime), facts, "net", tmp_path)  # type: ignore[arg-type]


def exited(backup_id: int, filename: str, code: int, **labels: str) -> ContainerInfo:
    name = f"shop-db.bk.b{backup_id:03d}"
    return ContainerInfo(name=name, state="exited", health=None, restart_count=0, exit_code=code,
                         labels={**fx.backup_labels(REF), cmd.L_ID: str(backup_id), cmd.L_FILE: filename,
                                 cmd.L_SOURCE: "1", **labels})


GOOD_LOG = ("@@vpg started 2026-05-05T02:00:00Z\n@@vpg toc ;     Dumped from database version: 15.5\n"
            "@@vpg toc 1; 1259 1 TABLE public items app\n@@vpg toc 2; 0 1 TABLE DATA public items app\n"
            "@@vpg rows public.items\t42\n@@vpg sha256 ab12\n@@vpg size 5\n@@vpg in_recovery t\n"
            "@@vpg finished 2026-05-05T02:00:07Z\ncapture complete\n")


def test_a_completed_capture_gets_its_sidecar_from_its_log(tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(b"12345")
    rt = FakeBackupRuntime({"shop-db.bk.b001": exited(1, FILE, 0)}, {"shop-db.bk.b001": GOOD_LOG})
    rows, pruned = cmd.observe(cluster(tmp_path, rt))
    assert [(r.ref, str(r.state)) for r in rows] == [("b001", "complete")] and pruned == []
    meta = json.loads((tmp_path / f"{FILE}.json").read_text())
    assert meta["status"] == "complete" and meta["table_rows"] == {"public.items": 42}
    assert meta["source"] == {"pod": "shop-db.1", "ordinal": 1, "role": "standby"}
    assert meta["server_version"] == "15.5" and meta["duration_s"] == 7.0 and meta["sha256"] == "ab12"
    assert meta["toc"] == {"table": 1, "table_data": 1}
    assert stat.S_IMODE((tmp_path / f"{FILE}.json").stat().st_mode) == 0o600


MIB = 1024 * 1024


@pytest.mark.parametrize(("head", "rows", "skipped"), [
    (f"@@vpg table_bytes {fx.ROW_COUNT_BUDGET + 1}\n", "",
     "not counted: 64.0 MiB of table data is over the 64 MiB budget for exact counts"),
    # the budget the capture ran with decides, not today's constant
    (f"@@vpg table_bytes {2 * MIB}\n@@vpg row_budget {MIB}\n", "",
     "not counted: 2.0 MiB of table data is over the 1 MiB budget for exact counts"),
    (f"@@vpg table_bytes {fx.ROW_COUNT_BUDGET}\n", "@@vpg rows public.items\t42\n", None),
    ("", "@@vpg rows public.items\t42\n", None),  # a log from before the budget
    ("@@vpg table_bytes 0\n", "", None),  # no tables at all: nothing to count
    ("", "", cmd.NO_COUNTS),  # no size and no counts (an unreadable or older log)
    ("@@vpg table_bytes 8192\n", "", cmd.NO_COUNTS),  # within budget yet no counts: never "they match"
])
def test_the_sidecar_says_why_row_counts_are_missing(tmp_path: Path, head: str, rows: str,
                                                     skipped: str | None) -> None:
    (tmp_path / FILE).write_bytes(b"12345")
    log = head + GOOD_LOG.replace("@@vpg rows public.items\t42\n", rows)
    rt = FakeBackupRuntime({"shop-db.bk.b001": exited(1, FILE, 0)}, {"shop-db.bk.b001": log})
    cmd.observe(cluster(tmp_path, rt))
    meta = json.loads((tmp_path / f"{FILE}.json").read_text())
    assert meta["status"] == "complete" and meta["table_rows_skipped"] == skipped
    assert meta["table_rows"] == ({"public.items": 42} if rows else {})


def test_a_failed_capture_is_recorded_failed_with_the_reason_and_its_partial_removed(tmp_path: Path) -> None:
    (tmp_path / f"{FILE}.partial").write_bytes(b"12")
    log = "@@vpg started 2026-05-05T02:00:00Z\npg_dump: error: boom\ncapture failed: pg_dump exited 1\n"
    rt = FakeBackupRuntime({"shop-db.bk.b001": exited(1, FILE, 1)}, {"shop-db.bk.b001": log})
    rows, _ = cmd.observe(cluster(tmp_path, rt))
    assert [(r.ref, str(r.state), r.reason) for r in rows] == [("b001", "failed", "pg_dump exited 1")]
    assert not (tmp_path / f"{FILE}.partial").exists()


def test_a_recorded_cancel_stays_cancelled(tmp_path: Path) -> None:
    from voodu_postgres.domain.backups import BackupMetadata

    (tmp_path / f"{FILE}.partial").write_bytes(b"12")
    fx.write_atomic(tmp_path / f"{FILE}.json", BackupMetadata(id=1, file=FILE, status="cancelled", reason="by me")
                    .to_json())
    rt = FakeBackupRuntime({"shop-db.bk.b001": exited(1, FILE, 137)}, {"shop-db.bk.b001": "killed\n"})
    rows, _ = cmd.observe(cluster(tmp_path, rt))
    assert [(r.ref, str(r.state), r.reason) for r in rows] == [("b001", "cancelled", "by me")]
    assert not (tmp_path / f"{FILE}.partial").exists()


def test_a_complete_backup_deleted_by_hand_is_not_rewritten_as_failed(tmp_path: Path) -> None:
    (tmp_path / FILE).write_bytes(b"12345")
    rt = FakeBackupRuntime({"shop-db.bk.b001": exited(1, FILE, 0)}, {"shop-db.bk.b001": GOOD_LOG})
    c = cluster(tmp_path, rt)
    cmd.observe(c)
    (tmp_path / FILE).unlink()
    rows, _ = cmd.observe(c)
    assert rows == [] and json.loads((tmp_path / f"{FILE}.json").read_text())["status"] == "complete"


def test_the_captures_own_keep_is_applied_once_counting_it(tmp_path: Path) -> None:
    older = ["b001-20260501T020000Z.dump", "b002-20260502T020000Z.dump"]
    for name in older:
        (tmp_path / name).write_bytes(b"1")
    new = "b003-20260503T020000Z.dump"
    (tmp_path / new).write_bytes(b"12345")
    rt = FakeBackupRuntime({"shop-db.bk.b003": exited(3, new, 0, **{cmd.L_KEEP: "2"})},
                           {"shop-db.bk.b003": GOOD_LOG})
    rows, pruned = cmd.observe(cluster(tmp_path, rt, {"BACKUP_KEEP": "30"}))
    assert pruned == ["b001"] and [r.ref for r in rows] == ["b002", "b003"]
    rows, pruned = cmd.observe(cluster(tmp_path, rt, {"BACKUP_KEEP": "30"}))
    assert pruned == [] and [r.ref for r in rows] == ["b002", "b003"]


def test_a_bare_word_lists_that_scope_and_the_unscoped_cluster_of_that_name(tmp_path: Path) -> None:
    from voodu_postgres.adapters.store import SqliteStore
    from voodu_postgres.commands.local import LocalMode
    from voodu_postgres.render.expansion import expand

    store = SqliteStore(tmp_path / "home")
    for scope, name in (("db", "main"), ("", "db"), ("other", "x")):
        body = {"replicas": 1, "volumes": [f"{tmp_path / (scope or '_') / name}:/backups:rw"]}
        store.record_resource(scope, name, body, "net")
        for action in expand(load_spec(scope, name, body), {}).actions:
            store.patch(action.scope, action.name, action.kv or {})
    out = io.StringIO()
    mode = LocalMode(Env(stdout=out, stderr=io.StringIO(), environ={}), store, tmp_path / "home",
                     runtime=FakeBackupRuntime())  # type: ignore[arg-type]
    assert cmd.cmd_list(argparse.Namespace(target="db", output="json"), mode) == 0
    assert sorted(json.loads(out.getvalue())) == ["db", "db/main"]  # not other/x


def test_a_capture_cancelled_before_it_started_dumps_nothing(tmp_path: Path) -> None:
    from voodu_postgres.domain.backups import BackupMetadata

    result, backups, stub = run_capture(tmp_path, sidecar=BackupMetadata(id=1, file=FILE, status="cancelled").to_json())
    assert result.returncode == 10 and "capture failed: cancelled before it started" in result.stderr
    assert os.listdir(backups) == [f"{FILE}.json"] and not (stub / "pg_dump.argv").exists()
    # a record of the job being dispatched (running) does not stop it
    result, backups, _stub = run_capture(tmp_path / "again", sidecar=BackupMetadata(id=1, file=FILE).to_json()
                                         .replace('"complete"', '"running"'))
    assert result.returncode == 0 and FILE in os.listdir(backups), result.stderr
