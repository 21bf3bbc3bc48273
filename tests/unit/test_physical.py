"""The physical pair without Docker: the pure decisions (:mod:`physical_model`), reading a backup
tar, the backup's write-check-rename pipeline against a fake container engine, the restore's
steps in order against a fake, and the refusals the commands make (no ``--yes``, under Voodu, an
unfinished restore's intent)."""

from __future__ import annotations

import argparse
import io
import os
import stat
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.tarfiles import tar_bytes
from tests.unit.fake_runtime import FakeRuntime
from voodu_postgres.adapters.docker import ContainerInfo, ExecResult, RuntimeFailure
from voodu_postgres.adapters.store import SqliteStore
from voodu_postgres.cli import main
from voodu_postgres.commands import cluster
from voodu_postgres.commands.base import Env
from voodu_postgres.commands.local import LocalMode
from voodu_postgres.domain import physical as pm
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.keys import INTENT_KEY, PASSWORD_KEY, REPLICATION_PASSWORD_KEY
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.reconciler import physical as fx
from voodu_postgres.reconciler.backups import PGPASS_MOUNT
from voodu_postgres.reconciler.desired import derive
from voodu_postgres.render import scram
from voodu_postgres.render.expansion import expand

REF = Ref("shop", "db")


# -- building backup files ------------------------------------------------------------------------




def base_tar(pg_version: bytes | None = b"15\n", prefix: str = "") -> bytes:
    files = {f"{prefix}backup_label": b"START WAL LOCATION: 0/2000028\n", f"{prefix}base/1/1259": b"\0" * 100,
             f"{prefix}global/pg_control": b"\1" * 64}
    if pg_version is not None:
        files[f"{prefix}PG_VERSION"] = pg_version
    return tar_bytes(files)


def wal_tar() -> bytes:
    return tar_bytes({"000000010000000000000002": b"\0" * 512})


def write_backup(path: Path, members: Mapping[str, bytes] | None = None) -> Path:
    members = members if members is not None else {"base.tar": base_tar(), "pg_wal.tar": wal_tar(),
                                                   "backup_manifest": b"{}"}
    path.write_bytes(tar_bytes(members))
    return path


# -- pure: arguments ---------------------------------------------------------------------------------


def test_destination_refuses_an_existing_file_unless_forced_and_always_a_directory() -> None:
    common = {"is_dir": False, "parent_is_dir": True}
    pm.check_destination("/b/x.tar", exists=False, force=False, **common)
    pm.check_destination("/b/x.tar", exists=True, force=True, **common)
    with pytest.raises(pm.PhysicalError, match="already exists.*--force"):
        pm.check_destination("/b/x.tar", exists=True, force=False, **common)
    with pytest.raises(UsageError, match="is a directory"):
        pm.check_destination("/b", exists=True, is_dir=True, parent_is_dir=True, force=True)
    with pytest.raises(UsageError, match="directory does not exist"):
        pm.check_destination("/nope/x.tar", exists=False, is_dir=False, parent_is_dir=False, force=False)
    with pytest.raises(UsageError, match="absolute path"):
        pm.check_destination("x.tar", exists=False, force=False, absolute_required=True, **common)


def test_the_source_is_the_primary_or_a_running_standby() -> None:
    roles = {0: PodRole.PRIMARY, 1: PodRole.STANDBY, 2: PodRole.BOOTSTRAPPING}
    pick = dict(replicas=3, primary=0, roles=roles, ref=REF)
    assert pm.choose_source(from_replica=None, **pick) == 0  # type: ignore[arg-type]
    assert pm.choose_source(from_replica=1, **pick) == 1  # type: ignore[arg-type]
    with pytest.raises(pm.PhysicalError, match="db-0 is the primary"):
        pm.choose_source(from_replica=0, **pick)  # type: ignore[arg-type]
    with pytest.raises(pm.PhysicalError, match="db-2 is bootstrapping, not a running standby"):
        pm.choose_source(from_replica=2, **pick)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"out of range \(valid: 0..2\)"):
        pm.choose_source(from_replica=3, **pick)  # type: ignore[arg-type]
    with pytest.raises(pm.PhysicalError, match="primary db-1 is not serving \\(down\\)"):
        pm.choose_source(replicas=2, primary=1, from_replica=None, roles={0: PodRole.STANDBY}, ref=REF)


# -- pure: what a backup must hold --------------------------------------------------------------------


def test_parts_are_base_and_wal_plus_an_optional_manifest_and_nothing_else() -> None:
    assert pm.check_parts(["pg_wal.tar", "backup_manifest", "base.tar"]) == ("base.tar", "pg_wal.tar",
                                                                            "backup_manifest")
    assert pm.check_parts(["pg_wal.tar", "base.tar"]) == ("base.tar", "pg_wal.tar")
    with pytest.raises(pm.PhysicalError, match="did not write pg_wal.tar"):
        pm.check_parts(["base.tar"])
    with pytest.raises(pm.PhysicalError, match="16385.tar.*tablespaces"):
        pm.check_parts(["base.tar", "pg_wal.tar", "16385.tar"])


def listing(**kw: Any) -> pm.TarListing:
    base = {"members": ("base.tar", "pg_wal.tar", "backup_manifest"),
            "base_members": ("backup_label", "PG_VERSION", "global/pg_control"), "pg_version": "15\n",
            "wal_members": 1}
    return pm.TarListing(**{**base, **kw})


def test_a_listing_gives_the_major_or_one_line_about_what_is_wrong() -> None:
    assert pm.check_listing(listing(), path="b.tar") == 15
    assert pm.check_listing(listing(members=("./base.tar", "./pg_wal.tar"),
                                    base_members=("./PG_VERSION", "./global/pg_control"), pg_version="9.6\n"),
                            path="b.tar") == 9
    cases = [
        (listing(problem="invalid header"), "b.tar is not a readable backup tar: invalid header"),
        (listing(members=("base.tar",)), "holds no pg_wal.tar"),
        (listing(members=("pg_wal.tar",)), "holds no base.tar"),
        (listing(members=("base.tar", "pg_wal.tar", "16385.tar")), "holds 16385.tar"),
        (listing(base_members=("global/pg_control",), pg_version=None), "holds no PG_VERSION"),
        (listing(base_members=("PG_VERSION",)), "no global/pg_control"),
        (listing(pg_version="junk"), "PG_VERSION reads 'junk'"),
    ]
    for bad, message in cases:
        with pytest.raises(pm.PhysicalError, match=message) as caught:
            pm.check_listing(bad, path="b.tar")
        assert "\n" not in str(caught.value)


def test_versions_and_the_same_major_rule() -> None:
    assert pm.parse_server_major("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n") == 15
    assert pm.parse_server_major("postgres (PostgreSQL) 16beta2") == 16
    with pytest.raises(pm.PhysicalError, match="cannot tell"):
        pm.parse_server_major("bash: postgres: command not found")
    pm.check_major(15, 15, path="b.tar", image="postgres:15")
    with pytest.raises(pm.PhysicalError, match="PostgreSQL 14 data directory but the cluster runs postgres:15"):
        pm.check_major(14, 15, path="b.tar", image="postgres:15")


# -- pure: the intent -----------------------------------------------------------------------------------


def test_an_unfinished_restore_makes_commands_refuse_with_the_command_to_finish_it() -> None:
    pm.refuse_while_restoring({}, REF, "apply")
    pm.refuse_while_restoring({INTENT_KEY: ""}, REF, "apply")
    with pytest.raises(pm.PhysicalError) as caught:
        pm.refuse_while_restoring({INTENT_KEY: "/srv/my db.tar"}, REF, "reconcile")
    text = str(caught.value)
    assert "reconcile is refused" in text and "\n" not in text
    assert text.endswith("run `voodu-postgres restore shop/db --from '/srv/my db.tar' --yes` again to finish it")


# -- pure: scripts and SQL ----------------------------------------------------------------------------


def test_the_basebackup_is_tar_format_with_streamed_wal_and_no_password_prompt() -> None:
    script = pm.basebackup_script(host="db-1.shop.voodu", port=5433, user="repl")
    assert "pg_basebackup -h db-1.shop.voodu -p 5433 -U repl -w -D /out/parts -Ft -X stream -c fast" in script
    assert script.startswith("set -euo pipefail")


def test_extraction_checks_every_stage_and_leaves_no_signal_file() -> None:
    script = pm.extract_script(manifest=True)
    assert script.startswith("set -euo pipefail")
    assert 'tar -xOf /run/voodu-restore/backup.tar base.tar | tar -xf - -C "$PGDATA"' in script
    assert 'tar -xOf /run/voodu-restore/backup.tar pg_wal.tar | tar -xf - -C "$PGDATA/pg_wal"' in script
    assert 'pg_verifybackup --quiet -m /tmp/backup_manifest "$PGDATA"' in script
    assert '"$PGDATA/standby.signal" "$PGDATA/recovery.signal"' in script
    assert 'chmod 0700 "$PGDATA"' in script and "chown -R postgres:postgres" in script
    assert "pg_verifybackup" not in pm.extract_script(manifest=False)
    # the manifest is checked before the files it lists are changed
    assert script.index("pg_verifybackup") < script.index("rm -f") < script.index("VPG_HBA")


def test_roles_sql_sets_verifiers_never_passwords_one_statement_per_line() -> None:
    sql = pm.roles_sql(superuser="app", superuser_verifier="SCRAM-SHA-256$4096:c2FsdA==$a:b",
                       replication_user='we"ird', replication_verifier="SCRAM-SHA-256$4096:eA==$c:d")
    lines = sql.strip().splitlines()
    assert all(line.endswith(";") for line in lines)
    assert "ALTER ROLE \"app\" WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b';" in lines
    assert 'ALTER ROLE "we""ird" WITH LOGIN REPLICATION PASSWORD' in sql
    assert "rolname = 'we\"ird') THEN CREATE ROLE \"we\"\"ird\"" in sql
    assert sum("GRANT EXECUTE" in line for line in lines) == 4
    assert lines[-1] == "ALTER SYSTEM RESET synchronous_standby_names;"


def test_the_replication_hba_line_is_quoted_like_the_initdb_hook() -> None:
    assert pm.hba_replication_line("replicator") == "host replication replicator all scram-sha-256"
    assert pm.hba_replication_line("Repl") == 'host replication "Repl" all scram-sha-256'
    assert pm.hba_replication_line("all") == 'host replication "all" all scram-sha-256'


def test_single_user_errors_are_found_in_its_output_not_its_exit_status() -> None:
    script = pm.roles_script()
    assert "postgres --single" in script and "template1" in script and "exit 3" in script
    assert "setpriv --reuid=postgres" in script


# -- pure: the restore's steps --------------------------------------------------------------------------


def test_the_intent_comes_first_the_primary_stops_last_and_the_intent_clears_after_the_roles() -> None:
    steps = pm.restore_steps(replicas=3, primary=1, containers=[0, 1, 2], volumes=[0, 1, 2, 4])
    described = [s.describe(REF) for s in steps]
    assert described == ["record intent", "remove helpers", "stop db-2", "stop db-0", "stop db-1",
                         "wipe db-0", "wipe db-2", "wipe db-4", "extract db-1", "set roles db-1", "start db-1",
                         "check roles db-1", "clear intent", "converge"]


def test_steps_skip_what_does_not_exist() -> None:
    steps = pm.restore_steps(replicas=2, primary=0, containers=[], volumes=[])
    assert [s.kind for s in steps] == [pm.StepKind.RECORD_INTENT, pm.StepKind.REMOVE_HELPERS, pm.StepKind.EXTRACT,
                                       pm.StepKind.SET_ROLES, pm.StepKind.START, pm.StepKind.CHECK_ROLES,
                                       pm.StepKind.CLEAR_INTENT, pm.StepKind.CONVERGE]


def test_data_volume_ordinals() -> None:
    assert pm.data_volume_ordinal("voodu-shop-db-data-3", REF) == 3
    assert pm.data_volume_ordinal("voodu-shop-db-logs-3", REF) is None
    assert pm.data_volume_ordinal("voodu-shop-db2-data-3", REF) is None


# -- reading a backup file ---------------------------------------------------------------------------


def test_inspect_reads_the_nested_base_tar(tmp_path: Path) -> None:
    found = fx.inspect_tar(write_backup(tmp_path / "b.tar"))
    assert found.problem is None and found.members == ("base.tar", "pg_wal.tar", "backup_manifest")
    assert found.pg_version == "15\n" and "global/pg_control" in found.base_members and found.wal_members == 1
    assert pm.check_listing(found, path="b.tar") == 15


def test_garbage_an_empty_file_and_a_tar_of_something_else_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    other = write_backup(tmp_path / "other.tar", {"notes.txt": b"hello"})
    no_version = write_backup(tmp_path / "nov.tar", {"base.tar": base_tar(None), "pg_wal.tar": wal_tar()})
    for path, message in ((garbage, "not a readable backup tar"), (empty, "not a readable backup tar"),
                          (other, "holds no base.tar"), (no_version, "holds no PG_VERSION")):
        with pytest.raises(pm.PhysicalError, match=message):
            pm.check_listing(fx.inspect_tar(path), path=str(path))


# -- backup against a fake engine --------------------------------------------------------------------------


@dataclass
class BasebackupDocker:
    """What ``take_backup`` touches: one container whose "pg_basebackup" writes the parts."""

    exit_code: int = 0
    parts: Mapping[str, bytes] = field(default_factory=lambda: {"base.tar": base_tar(), "pg_wal.tar": wal_tar(),
                                                                "backup_manifest": b"{}"})
    log: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    exited: dict[str, int] = field(default_factory=dict)
    pgpass_seen: str = ""
    pgpass_mode: int = 0

    def run_detached(self, image: str, argv: list[str], *, name: str, network: str,
                     binds: Mapping[str, tuple[str, str]], env: Mapping[str, str] | None = None,
                     user: str = "postgres", labels: Mapping[str, str] | None = None) -> None:
        self.runs.append({"image": image, "argv": argv, "name": name, "network": network, "binds": dict(binds),
                          "env": dict(env or {}), "user": user, "labels": dict(labels or {})})
        out = next(src for src, (dst, _mode) in binds.items() if dst == pm.OUT_MOUNT)
        pgpass = next(src for src, (dst, _mode) in binds.items() if dst == PGPASS_MOUNT)
        self.pgpass_seen, self.pgpass_mode = Path(pgpass).read_text(), stat.S_IMODE(os.stat(pgpass).st_mode)
        (Path(out) / "parts").mkdir()
        for part, data in self.parts.items():
            (Path(out) / "parts" / part).write_bytes(data)
        self.exited[name] = self.exit_code

    def wait_exit(self, name: str, timeout: float) -> int | None:  # Docker's wait: the helpers exit at once here
        if name not in self.exited:
            raise RuntimeFailure(f"container {name} not found")
        return self.exited[name]

    def exit_code_of(self, name: str) -> int | None:
        return self.exited.get(name)

    def container_state(self, name: str) -> str | None:
        return "exited" if name in self.exited else None

    def logs(self, name: str) -> str:
        return self.log

    def remove_container(self, name: str, *, timeout: int = 30) -> None:
        self.removed.append(name)
        self.exited.pop(name, None)

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        return []


def backup(docker: BasebackupDocker, tmp_path: Path, dest: Path, *, force: bool = False) -> fx.BackupResult:
    return fx.take_backup(docker, image="postgres:15", network="net", host="db-0.shop.voodu",  # type: ignore[arg-type]
                          port=5432, user="replicator", password="s3:cr\\et", state_dir=tmp_path / "state",
                          dest=dest, force=force, name="shop-db.basebackup.1", labels={"voodu.role": "x"}, poll=0)


def left_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_backup_is_one_0600_tar_with_the_parts_and_leaves_nothing_else(tmp_path: Path) -> None:
    docker = BasebackupDocker()
    out = tmp_path / "out"
    out.mkdir()
    result = backup(docker, tmp_path, out / "db.tar")
    assert left_in(out) == ["db.tar"]
    assert stat.S_IMODE((out / "db.tar").stat().st_mode) == 0o600
    assert result.major == 15 and result.members == ("base.tar", "pg_wal.tar", "backup_manifest")
    with tarfile.open(out / "db.tar") as tar:
        assert tar.getnames() == ["base.tar", "pg_wal.tar", "backup_manifest"]
        handle = tar.extractfile("base.tar")
        assert handle is not None and handle.read() == base_tar()
    run = docker.runs[0]
    assert run["user"] == f"{os.getuid()}:{os.getgid()}" and run["network"] == "net"
    assert "-Ft -X stream" in run["argv"][2]
    # the password only in the 0600 pgpass file (escaped), which is gone afterwards
    assert docker.pgpass_seen == "*:*:*:replicator:s3\\:cr\\\\et\n" and docker.pgpass_mode == 0o600
    assert "s3:cr" not in repr(run["env"]) + repr(run["argv"])
    assert not [p for p in (tmp_path / "state").iterdir()]
    assert docker.removed[-1] == "shop-db.basebackup.1"


@pytest.mark.parametrize("docker, message", [
    (BasebackupDocker(exit_code=1, log="pg_basebackup: error: connection refused\n"),
     "pg_basebackup from db-0.shop.voodu failed \\(exit 1\\): pg_basebackup: error: connection refused"),
    (BasebackupDocker(parts={"base.tar": base_tar()}), "did not write pg_wal.tar"),
    (BasebackupDocker(parts={"base.tar": base_tar(), "pg_wal.tar": wal_tar(), "16400.tar": b""}), "tablespaces"),
    (BasebackupDocker(parts={"base.tar": base_tar(None), "pg_wal.tar": wal_tar()}), "no PG_VERSION"),
    (BasebackupDocker(parts={"base.tar": b"not a tar" * 100, "pg_wal.tar": wal_tar()}),
     "not a readable backup tar: base.tar: invalid header"),
    (BasebackupDocker(parts={"base.tar": base_tar(), "pg_wal.tar": tar_bytes({})}), "holds no WAL"),
])
def test_a_failed_stage_leaves_nothing_at_the_destination_and_no_temp_file(
        tmp_path: Path, docker: BasebackupDocker, message: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(pm.PhysicalError, match=message) as caught:
        backup(docker, tmp_path, out / "db.tar")
    assert "\n" not in str(caught.value)
    assert left_in(out) == []
    assert "shop-db.basebackup.1" in docker.removed


def test_ctrl_c_during_the_copy_cleans_up(tmp_path: Path) -> None:
    docker = BasebackupDocker()
    out = tmp_path / "out"
    out.mkdir()

    def interrupt(_size: int, _elapsed: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fx.take_backup(docker, image="i", network="n", host="h", port=5432, user="u",  # type: ignore[arg-type]
                       password="p", state_dir=tmp_path / "state", dest=out / "db.tar", force=False, name="c",
                       labels={}, progress=interrupt, poll=0)
    assert left_in(out) == [] and docker.removed[-1] == "c"


def test_a_file_that_appears_meanwhile_is_kept_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "db.tar"
    dest.write_text("precious")
    with pytest.raises(pm.PhysicalError, match="appeared while the backup ran"):
        backup(BasebackupDocker(), tmp_path, dest)
    assert dest.read_text() == "precious" and left_in(out) == ["db.tar"]
    backup(BasebackupDocker(), tmp_path, dest, force=True)
    assert tarfile.is_tarfile(dest) and left_in(out) == ["db.tar"]


def test_work_left_by_a_killed_backup_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = out / f".db.tar{pm.WORK_MARK}999999999-abc"
    live = out / f".db.tar{pm.WORK_MARK}{os.getpid()}-abc"
    dead.mkdir()
    live.mkdir()
    fx.remove_stale_work(out / "db.tar")
    assert not dead.exists() and live.exists()


# -- restore against a fake engine ------------------------------------------------------------------------


@dataclass
class RestoreDocker:
    """Pods that stop and start, helpers that "run" (recorded, exit 0 unless told), SQL answers."""

    bucket: Mapping[str, str]
    pods: dict[str, str] = field(default_factory=lambda: {"shop-db.0": "running", "shop-db.1": "running"})
    leftovers: list[str] = field(default_factory=list)
    fail_helper: str | None = None
    events: list[str] = field(default_factory=list)
    helpers: dict[str, dict[str, Any]] = field(default_factory=dict)
    exited: dict[str, int] = field(default_factory=dict)

    def run_detached(self, image: str, argv: list[str], *, name: str, network: str,
                     binds: Mapping[str, tuple[str, str]], env: Mapping[str, str] | None = None,
                     user: str = "postgres", labels: Mapping[str, str] | None = None) -> None:
        what = name.rsplit(".", 1)[-1]
        sql = next((Path(src) for src, (dst, _m) in binds.items() if dst == pm.SQL_MOUNT), None)
        self.helpers[what] = {"script": argv[2], "binds": dict(binds), "env": dict(env or {}), "network": network,
                              "sql": sql.read_text() if sql else None,
                              "sql_mode": stat.S_IMODE(sql.stat().st_mode) if sql else None}
        self.events.append(f"helper {what}")
        self.exited[name] = 2 if what == self.fail_helper else 0

    def wait_exit(self, name: str, timeout: float) -> int | None:  # Docker's wait: the helpers exit at once here
        if name not in self.exited:
            raise RuntimeFailure(f"container {name} not found")
        return self.exited[name]

    def exit_code_of(self, name: str) -> int | None:
        return self.exited.get(name)

    def container_state(self, name: str) -> str | None:
        return "exited" if name in self.exited else self.pods.get(name)

    def logs(self, name: str) -> str:
        return "tar: Unexpected EOF in archive\n" if self.exited.get(name) else "done\n"

    def logs_tail(self, name: str, lines: int = 20) -> str:
        return ""

    def remove_container(self, name: str, *, timeout: int = 30) -> None:
        if name in self.leftovers:
            self.events.append(f"remove {name}")
            self.leftovers.remove(name)
        self.exited.pop(name, None)

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        assert labels["voodu.role"] == fx.RESTORE_ROLE
        return [ContainerInfo(n, "running", None, {}, 0, 0) for n in self.leftovers]

    def stop_container(self, name: str, *, timeout: int = 30) -> int:
        self.events.append(f"stop {name}")
        self.pods[name] = "exited"
        return 0

    def start_container(self, name: str) -> None:
        self.events.append(f"start {name}")
        self.pods[name] = "running"

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        self.events.append(f"volume {name}")

    def exec(self, name: str, argv: list[str], *, user: str = "postgres",
             env: Mapping[str, str] | None = None) -> ExecResult:
        sql = argv[-1]
        assert argv[argv.index("-d") + 1] == "template1"
        if "pg_is_in_recovery" in sql:
            return ExecResult(0, "f\n")
        if "pg_authid" in sql:
            key = PASSWORD_KEY if "'app'" in sql else REPLICATION_PASSWORD_KEY
            return ExecResult(0, f"t|{scram.verifier(self.bucket[key])}\n")
        if "pg_database" in sql:
            return ExecResult(0, "1\n")
        return ExecResult(1, f"ERROR: unexpected {sql}")


@pytest.fixture
def restore_env(tmp_path: Path) -> tuple[RestoreDocker, fx.RestoreContext, list[Mapping[str, str]]]:
    spec = load_spec("shop", "db", {"replicas": 2, "user": "app", "database": "data"})
    bucket: dict[str, str] = {}
    for action in expand(spec, {}).actions:
        bucket.update(action.kv or {})
    desired = derive(spec, bucket, assets_dir=tmp_path / "assets", network="net", state_dir=tmp_path / "state")
    docker = RestoreDocker(bucket, leftovers=["shop-db.restore.roles"])
    records: list[Mapping[str, str]] = []
    work = tmp_path / "work"
    work.mkdir()
    tar = write_backup(tmp_path / "b.tar")

    def record(kv: Mapping[str, str]) -> None:
        records.append(dict(kv))
        docker.events.append(f"record {dict(kv)}")

    def converge() -> str:
        docker.events.append("converge")
        return "converged"

    ctx = fx.RestoreContext(runtime=docker, desired=desired, bucket=bucket,  # type: ignore[arg-type]
                            replication_user=spec.replication_user, tar=tar, manifest=True, labels={"l": "1"},
                            workdir=work, state_dir=tmp_path / "state", record=record, converge=converge)
    return docker, ctx, records


def test_a_restore_runs_its_steps_in_order(restore_env: tuple[RestoreDocker, fx.RestoreContext, Any],
                                           tmp_path: Path) -> None:
    docker, ctx, records = restore_env
    lines: list[str] = []
    steps = pm.restore_steps(replicas=2, primary=0, containers=[0, 1], volumes=[0, 1])
    fx.run_restore(steps, ctx, lines.append)
    intent = {INTENT_KEY: str(tmp_path / "b.tar")}
    cleared = {INTENT_KEY: "", "PG_SWITCHOVER_TO": "", "PG_SWITCHOVER_REQUEST": "", "PG_REJOIN": ""}  # with a dead promote's intents
    assert docker.events == [f"record {intent}", "remove shop-db.restore.roles", "stop shop-db.1", "stop shop-db.0",
                             "helper wipe-1", "volume voodu-shop-db-data-0", "helper extract", "helper roles",
                             "start shop-db.0", f"record {cleared}", "converge"]
    assert records == [intent, cleared]
    assert len(lines) == len(steps) and lines[-1] == "converge: converged"

    extract = docker.helpers["extract"]
    assert extract["network"] == "none"
    assert extract["binds"][str(tmp_path / "b.tar")] == (pm.TAR_MOUNT, "ro")
    assert extract["binds"]["voodu-shop-db-data-0"] == ("/var/lib/postgresql/data", "rw")
    assert extract["env"] == {"VPG_MOUNT": "/var/lib/postgresql/data", "PGDATA": "/var/lib/postgresql/data/pgdata",
                              "VPG_HBA": "host replication replicator all scram-sha-256"}
    assert docker.helpers["wipe-1"]["binds"] == {"voodu-shop-db-data-1": ("/var/lib/postgresql/data", "rw")}

    roles = docker.helpers["roles"]
    assert roles["sql_mode"] == 0o600 and "PASSWORD 'SCRAM-SHA-256$" in roles["sql"]
    for key in (PASSWORD_KEY, REPLICATION_PASSWORD_KEY):  # verifiers only, never a password
        assert ctx.bucket[key] not in roles["sql"] + repr(roles["env"]) + roles["script"]
    assert not list((tmp_path / "work").iterdir()), "the SQL file is removed after use"
    # the pod's conf files are mounted (postgresql.conf includes them), read-only
    assert any(target.startswith("/etc/postgresql/conf.d/") and mode == "ro"
               for target, mode in roles["binds"].values())
    assert (tmp_path / "state" / "replication_password").read_text() == ctx.bucket[REPLICATION_PASSWORD_KEY]


def test_a_failed_step_stops_the_restore_with_its_intent_still_recorded(
        restore_env: tuple[RestoreDocker, fx.RestoreContext, Any]) -> None:
    docker, ctx, records = restore_env
    docker.fail_helper = "extract"
    with pytest.raises(pm.PhysicalError) as caught:
        fx.run_restore(pm.restore_steps(replicas=2, primary=0, containers=[0, 1], volumes=[0, 1]), ctx,
                       lambda _line: None)
    assert str(caught.value) == ("extracting b.tar into voodu-shop-db-data-0 failed (exit 2): tar: Unexpected EOF "
                                 "in archive")
    assert records == [{INTENT_KEY: str(ctx.tar)}] and "converge" not in docker.events


def test_roles_that_did_not_take_the_passwords_fail_the_restore(
        restore_env: tuple[RestoreDocker, fx.RestoreContext, Any]) -> None:
    docker, ctx, records = restore_env
    ctx.bucket = {**ctx.bucket, PASSWORD_KEY: "something else"}
    docker.bucket = {**docker.bucket}  # the server still holds the old verifier
    with pytest.raises(pm.PhysicalError, match="role app on the restored primary does not have the bucket's "
                                               "POSTGRES_PASSWORD"):
        fx.run_restore(pm.restore_steps(replicas=2, primary=0, containers=[0, 1], volumes=[0, 1]), ctx,
                       lambda _line: None)
    assert records[-1] == {INTENT_KEY: str(ctx.tar)}


# -- the commands' refusals -----------------------------------------------------------------------------


def run(argv: list[str], environ: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    env = Env(stdin=io.StringIO(""), stdout=io.StringIO(), stderr=io.StringIO(), environ=dict(environ or {}))
    code = main(argv, env)
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


def test_restore_without_yes_says_what_to_run(tmp_path: Path) -> None:
    code, _out, err = run(["--home", str(tmp_path), "restore", "shop/db", "--from", "/srv/db.tar"])
    assert code == 2 and err.count("\n") == 1
    assert "run `voodu-postgres restore shop/db --from /srv/db.tar --yes`" in err


def test_under_voodu_restore_refuses_in_one_line_and_backup_is_declared() -> None:
    code, out, _err = run(["restore", "shop/db", "--from", "/srv/db.tar", "--yes"],
                          {"VOODU_PLUGIN_DIR": "/opt/voodu/plugins/postgres"})
    assert code == 1 and out.count("\n") == 1
    assert "standalone-only" in out and "vd pg:backups:restore" in out
    from voodu_postgres.cli import PLUGIN_COMMANDS

    assert "backup" in PLUGIN_COMMANDS and "restore" not in PLUGIN_COMMANDS


def test_backup_refuses_an_existing_destination_before_touching_the_cluster(tmp_path: Path) -> None:
    dest = tmp_path / "db.tar"
    dest.write_text("x")
    code, _out, err = run(["--home", str(tmp_path / "home"), "backup", "shop/db", "--destination", str(dest)])
    assert code == 1 and err == f"{dest} already exists; not overwriting it (pick another path, or --force)\n"


def test_reconcile_refuses_while_a_restore_intent_is_recorded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = SqliteStore(home)
    store.record_resource("shop", "db", {"replicas": 2}, "net")
    store.patch("shop", "db", {INTENT_KEY: "/srv/db.tar"})
    env = Env(stdin=io.StringIO(""), stdout=io.StringIO(), stderr=io.StringIO(), environ={})
    runtime = FakeRuntime()
    mode = LocalMode(env, store, home, runtime=runtime)  # type: ignore[arg-type]
    args = argparse.Namespace(refs=["shop/db"], dry_run=False, watch=False, interval=1.0, output="text",
                              command="reconcile")
    with pytest.raises(CommandError, match="reconcile is refused; run `voodu-postgres restore shop/db --from "
                                           "/srv/db.tar --yes` again"):
        cluster.cmd_reconcile(args, mode)
    assert not runtime.events, "nothing was touched"
