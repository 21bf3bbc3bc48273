"""The backups commands under Voodu (``vd pg:backups:…``) against the fake controller: capture as a
job manifest + ``run_job``, cancel/delete/prune as ``delete_manifest`` of that same job name, and
schedule as a printed cronjob block. The actions are applied by :class:`FakeController`, which
validates their exact wire shape; the job's run container is then simulated the way Voodu names
and labels it (``<scope>-<jobname>.<runid>``, ``voodu.kind=job``, ``voodu.name=<jobname>``)."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fake_controller import FakeController
from tests.fake_controller import dispatch as plugin_dispatch
from voodu_postgres.adapters.docker import ContainerInfo, RuntimeFailure
from voodu_postgres.commands import plugin as plugin_mod
from voodu_postgres.domain import backups as bm
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.reconciler import backups as fx
from voodu_postgres.render.expansion import expand

REF = Ref("shop", "db")
GOOD_LOG = ("@@vpg started 2026-05-05T02:00:00Z\n@@vpg toc ;     Dumped from database version: 15.5\n"
            "@@vpg toc 1; 1259 1 TABLE public items app\n@@vpg toc 2; 0 1 TABLE DATA public items app\n"
            "@@vpg rows public.items\t42\n@@vpg sha256 ab12\n@@vpg size 5\n@@vpg in_recovery f\n"
            "@@vpg finished 2026-05-05T02:00:07Z\ncapture complete\n")


@dataclass
class FakeDocker:
    """What the backups commands touch on the host's Docker: the pods' states and the capture
    containers (the job runs Voodu would create)."""

    pods: dict[str, str] = field(default_factory=lambda: {"shop-db.0": "running", "shop-db.1": "running"})
    containers: dict[str, ContainerInfo] = field(default_factory=dict)
    logs_of: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)

    def list_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        return [c for c in self.containers.values() if all(c.labels.get(k) == v for k, v in labels.items())]

    def container_state(self, name: str) -> str | None:
        info = self.containers.get(name)
        return info.state if info is not None else self.pods.get(name)

    def logs(self, name: str) -> str:
        if name not in self.logs_of:
            raise RuntimeFailure(f"container {name} not found")
        return self.logs_of[name]

    def remove_container(self, name: str, *, timeout: int = 30) -> None:
        self.removed.append(name)
        self.containers.pop(name, None)

    def host_port(self, name: str, container_port: int) -> int:
        assert self.pods.get(name) == "running", name
        return 40000 + int(name.rpartition(".")[2])

    def postgres(self) -> FakeDocker:
        return self

    def server_version_num(self, endpoint: Any) -> int:
        """Only what a restore asks before it touches anything: the server's version."""
        return 150005

    def stop_container(self, name: str, *, timeout: int = 30) -> int:  # pragma: no cover - plugin never stops
        raise AssertionError("under Voodu the controller stops a capture (delete_manifest), not the plugin")

    # -- what Voodu does with a job ----------------------------------------------------------

    def run_job(self, ctl: FakeController, scope: str, job: str, run_id: str, state: str = "running",
                exit_code: int = 0, log: str = "") -> str:
        manifest = ctl.manifest("job", scope, job)
        assert manifest is not None, f"job {scope}/{job} was never applied"
        name = f"{scope}-{job}.{run_id}" if scope else f"{job}.{run_id}"  # the job's AppID, then the run
        labels = {**manifest["spec"]["labels"], "createdby": "voodu", "voodu.kind": "job", "voodu.scope": scope,
                  "voodu.name": job, "voodu.replica_id": run_id}
        self.containers[name] = ContainerInfo(name=name, state=state, health=None, labels=labels, restart_count=0,
                                              exit_code=exit_code)
        self.logs_of[name] = log
        return name

    def delete_job(self, scope: str, job: str) -> None:
        """delete_manifest of a job: every run container goes, running or not."""
        for name in [n for n, c in self.containers.items() if c.labels.get("voodu.name") == job
                     and c.labels.get("voodu.scope") == scope]:
            self.remove_container(name)


@pytest.fixture
def backups_dir(tmp_path: Path) -> Path:
    return tmp_path / "backups"


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    fake = FakeDocker()
    monkeypatch.setattr(plugin_mod, "DockerRuntime", lambda: fake)
    return fake


@pytest.fixture
def ctl(backups_dir: Path) -> Iterator[FakeController]:
    with FakeController() as controller:
        # the statefulset mounts a temporary host directory at /backups: the commands use it
        spec = load_spec("shop", "db", {"replicas": 2, "user": "app", "database": "data",
                                        "volumes": [f"{backups_dir}:/backups:rw"]})
        for action in expand(spec, {}).actions:
            controller.set_config(action.scope, action.name, action.kv or {})
        controller.put_manifest("statefulset", "shop", "db",
                                expand(spec, controller.resolve("shop", "db")).manifests[1]["spec"])
        yield controller


def dispatch(ctl: FakeController, tmp_path: Path, command: str, *args: str) -> tuple[int, dict[str, Any]]:
    return plugin_dispatch(ctl, command, *args, plugin_dir=str(tmp_path / "plugin"))


def ok(ctl: FakeController, tmp_path: Path, command: str, *args: str) -> tuple[str, list[dict[str, Any]]]:
    """Dispatch, check success, apply the actions like the controller; (message, actions)."""
    code, envelope = dispatch(ctl, tmp_path, command, *args)
    assert code == 0 and envelope["status"] == "ok", envelope
    actions = envelope["data"]["actions"]
    ctl.apply_actions(actions)
    return envelope["data"]["message"], actions


def listing(ctl: FakeController, tmp_path: Path) -> dict[str, dict[str, Any]]:
    message, _actions = ok(ctl, tmp_path, "backups", "shop/db", "-o", "json")
    return {row["id"]: row for row in json.loads(message)["backups"]}


def test_capture_emits_the_job_manifest_and_run_job(ctl: FakeController, docker: FakeDocker, tmp_path: Path,
                                                    backups_dir: Path) -> None:
    message, actions = ok(ctl, tmp_path, "backups:capture", "shop/db", "--from-replica", "1", "--keep", "2")
    assert [(a["type"], a["scope"], a["name"]) for a in actions] == [
        ("apply_manifest", "shop", "db"), ("run_job", "shop", "db.bk.b001")]
    manifest = actions[0]["manifest"]
    assert (manifest["kind"], manifest["scope"], manifest["name"]) == ("job", "shop", bm.job_name(REF, 1))
    spec = manifest["spec"]
    assert spec["command"][:2] == ["bash", "-c"] and "pg_dump -h db-1.shop.voodu" in spec["command"][2]
    assert 'mv "$P" "$F"' in spec["command"][2]  # the standalone pipeline: partial, checks, rename
    assert spec["image"] == load_spec("shop", "db", {}).image
    assert spec["volumes"][0] == f"{backups_dir}:/backups:rw"
    assert spec["successful_history_limit"] == 1 and spec["failed_history_limit"] == 1
    assert not any(k.startswith("voodu.") for k in spec["labels"])  # Voodu refuses voodu.* job labels
    assert spec["labels"]["voodu-postgres.role"] == "backup" and spec["labels"]["voodu-postgres.backup.keep"] == "2"
    # the password is nowhere in the manifest (nor its env): a 0600 pgpass file mounted read-only
    password = ctl.resolve("shop", "db")["POSTGRES_PASSWORD"]
    assert password not in json.dumps(actions) and spec["env"]["PGPASSFILE"] == fx.PGPASS_MOUNT
    pgpass = Path(spec["volumes"][1].split(":")[0])
    assert spec["volumes"][1] == f"{pgpass}:{fx.PGPASS_MOUNT}:ro"
    assert pgpass.is_relative_to(tmp_path / "plugin" / "state" / "shop" / "db")
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600 and password in pgpass.read_text()
    assert ctl.jobs_run == [("shop", "db.bk.b001")] and ctl.manifest("job", "shop", "db.bk.b001") is not None
    assert "capturing backup b001 in background (source: replica 1" in message
    assert "vd pg:backups shop/db" in message and "--follow" not in message and "retention (keep 2)" in message
    # the id is reserved until the job's container shows up: a second capture takes b002
    _message, again = ok(ctl, tmp_path, "backups:capture", "shop/db")
    assert again[1]["name"] == "db.bk.b002"


def test_capture_then_cancel_then_delete_target_one_job(ctl: FakeController, docker: FakeDocker,
                                                        tmp_path: Path, backups_dir: Path) -> None:
    _message, created = ok(ctl, tmp_path, "backups:capture", "shop/db")
    job = created[1]["name"]
    container = docker.run_job(ctl, "shop", job, "a1b2")
    filename = created[0]["manifest"]["spec"]["labels"]["voodu-postgres.backup.file"]
    (backups_dir / bm.partial_filename(filename)).write_bytes(b"half a dump")
    assert listing(ctl, tmp_path)["b001"]["status"] == "running"

    message, cancelled = ok(ctl, tmp_path, "backups:cancel", "shop/db")
    assert cancelled == [{"type": "delete_manifest", "scope": "shop", "name": job, "kind": "job"}]
    assert "cancelling 1 capture (b001)" in message
    assert ctl.manifest("job", "shop", job) is None  # applied: the job (and so its run container) is gone
    assert not (backups_dir / bm.partial_filename(filename)).exists()
    docker.delete_job("shop", job)  # what the controller does for delete_manifest
    assert container in docker.removed
    assert listing(ctl, tmp_path)["b001"]["status"] == "cancelled"

    code, envelope = dispatch(ctl, tmp_path, "backups:cancel", "shop/db", "b001")
    assert code == 1 and "not running" in envelope["error"]
    message, deleted = ok(ctl, tmp_path, "backups:delete", "shop/db", "b001", "--yes")
    assert deleted == [{"type": "delete_manifest", "scope": "shop", "name": job, "kind": "job"}]
    assert "b001" not in listing(ctl, tmp_path) and not any(backups_dir.iterdir())
    assert created[1]["name"] == cancelled[0]["name"] == deleted[0]["name"] == bm.job_name(REF, 1)


def test_a_completed_job_lists_complete_and_delete_removes_its_job(ctl: FakeController, docker: FakeDocker,
                                                                   tmp_path: Path, backups_dir: Path) -> None:
    _message, created = ok(ctl, tmp_path, "backups:capture", "shop/db")
    job = created[1]["name"]
    filename = created[0]["manifest"]["spec"]["labels"]["voodu-postgres.backup.file"]
    docker.run_job(ctl, "shop", job, "c3d4", state="exited", exit_code=0, log=GOOD_LOG)
    (backups_dir / filename).write_bytes(b"12345")
    sidecar = backups_dir / bm.metadata_filename(filename)
    reserved = sidecar.read_text()
    row = listing(ctl, tmp_path)["b001"]
    assert row["status"] == "complete" and row["size_bytes"] == 5
    assert sidecar.read_text() == reserved, "listing writes nothing"
    ok(ctl, tmp_path, "backups:download", "shop/db", "b001")  # a command that acts on it records it first
    meta = bm.BackupMetadata.from_json(sidecar.read_text())
    assert meta.status == "complete" and meta.table_rows == {"public.items": 42} and meta.source_ordinal == 0
    code, envelope = dispatch(ctl, tmp_path, "backups:delete", "shop/db", "b001")
    assert code == 1 and "refusing to delete without --yes" in envelope["error"]
    _message, deleted = ok(ctl, tmp_path, "backups:delete", "shop/db", "b001", "--yes")
    assert [(a["type"], a["name"]) for a in deleted] == [("delete_manifest", job)]
    assert ctl.manifest("job", "shop", job) is None and not (backups_dir / filename).exists()


def test_delete_of_a_running_capture_is_refused(ctl: FakeController, docker: FakeDocker, tmp_path: Path) -> None:
    _message, created = ok(ctl, tmp_path, "backups:capture", "shop/db")
    docker.run_job(ctl, "shop", created[1]["name"], "e5f6")
    code, envelope = dispatch(ctl, tmp_path, "backups:delete", "shop/db", "b001", "--yes")
    assert code == 1 and envelope["status"] == "error" and "cancel" in envelope["error"]
    assert ctl.manifest("job", "shop", created[1]["name"]) is not None


def test_prune_deletes_files_and_the_pruned_backups_jobs(ctl: FakeController, docker: FakeDocker,
                                                         tmp_path: Path, backups_dir: Path) -> None:
    jobs = []
    for run_id in ("0001", "0002", "0003"):
        _message, created = ok(ctl, tmp_path, "backups:capture", "shop/db")
        job = created[1]["name"]
        filename = created[0]["manifest"]["spec"]["labels"]["voodu-postgres.backup.file"]
        docker.run_job(ctl, "shop", job, run_id, state="exited", exit_code=0, log=GOOD_LOG)
        (backups_dir / filename).write_bytes(b"12345")
        jobs.append(job)
    _message, dry = ok(ctl, tmp_path, "backups:prune", "shop/db", "--keep", "1", "--dry-run")
    assert dry == [] and len(listing(ctl, tmp_path)) == 3
    code, envelope = dispatch(ctl, tmp_path, "backups:prune", "shop/db", "--keep", "1")
    assert code == 1 and "without --yes" in envelope["error"]
    message, pruned = ok(ctl, tmp_path, "backups:prune", "shop/db", "--keep", "1", "--yes")
    assert "pruned 2 backup(s)" in message
    assert sorted((a["type"], a["name"]) for a in pruned) == [("delete_manifest", j) for j in jobs[:2]]
    assert list(listing(ctl, tmp_path)) == ["b003"]
    assert ctl.manifest("job", "shop", jobs[2]) is not None
    assert all(ctl.manifest("job", "shop", j) is None for j in jobs[:2])


def test_capture_refuses_follow_and_verify_under_voodu(ctl: FakeController, docker: FakeDocker,
                                                       tmp_path: Path) -> None:
    for flag in ("--follow", "--verify"):
        code, envelope = dispatch(ctl, tmp_path, "backups:capture", "shop/db", flag)
        assert code == 1 and flag in envelope["error"] and "vd pg:backups shop/db" in envelope["error"]
    assert ctl.jobs_run == []


def test_capture_needs_a_running_source_pod(ctl: FakeController, docker: FakeDocker, tmp_path: Path) -> None:
    docker.pods["shop-db.1"] = "exited"
    code, envelope = dispatch(ctl, tmp_path, "backups:capture", "shop/db", "--from-replica", "1")
    assert code == 1 and "not running" in envelope["error"]
    code, envelope = dispatch(ctl, tmp_path, "backups:capture", "shop/db", "--from-replica", "5")
    assert code == 1 and "out of range" in envelope["error"]


def test_schedule_prints_the_cronjob_block_and_no_actions(ctl: FakeController, tmp_path: Path) -> None:
    message, actions = ok(ctl, tmp_path, "backups:schedule", "shop/db", "--at", "30 2 * * *", "--keep", "7")
    assert actions == []
    assert 'cronjob "shop" "db-backup" {' in message and 'schedule = "30 2 * * *"' in message
    assert "vd pg:backups:capture shop/db --keep 7" in message
    message, _actions = ok(ctl, tmp_path, "backups:schedule", "db")
    assert 'cronjob "db-backup" {' in message  # unscoped: one label, not cronjob ""
    message, actions = ok(ctl, tmp_path, "backups:schedule", "shop/db", "--remove")
    assert actions == [] and "vd apply --prune" in message


def test_an_unscoped_cluster_s_job_is_unscoped_from_capture_to_delete(docker: FakeDocker, tmp_path: Path,
                                                                        backups_dir: Path) -> None:
    """Voodu keeps an unscoped resource under scope "" and names its containers by the AppID
    (``<name>``): the capture job is ``db.bk.bNNN`` in scope "" — its run ``db.bk.bNNN.<runid>``,
    which the listing finds — and nothing says ``-db``, ``/db.bk…`` or ``cronjob ""``."""
    docker.pods = {"db.0": "running", "db.1": "running"}
    with FakeController() as ctl:
        spec = load_spec("", "db", {"replicas": 2, "volumes": [f"{backups_dir}:/backups:rw"]})
        for action in expand(spec, {}).actions:
            ctl.set_config(action.scope, action.name, action.kv or {})
        ctl.put_manifest("statefulset", "", "db", expand(spec, ctl.resolve("", "db")).manifests[1]["spec"])

        message, created = ok(ctl, tmp_path, "backups:capture", "db", "-o", "json")
        assert [(a["type"], a["scope"], a["name"]) for a in created] == [
            ("apply_manifest", "", "db"), ("run_job", "", "db.bk.b001")]
        manifest = created[0]["manifest"]
        assert (manifest["scope"], manifest["name"]) == ("", "db.bk.b001")
        assert "pg_dump -h db-0.voodu " in manifest["spec"]["command"][2]
        assert json.loads(message)["job"] == "db.bk.b001" and created[0]["summary"].endswith(": db.bk.b001")
        assert manifest["spec"]["labels"]["voodu-postgres.scope"] == ""
        pgpass = Path(manifest["spec"]["volumes"][1].split(":")[0])
        assert pgpass.is_relative_to(tmp_path / "plugin" / "state" / "_unscoped" / "db")
        everything = json.dumps(created) + message
        assert '"-db' not in everything and "/db.bk" not in everything

        run = docker.run_job(ctl, "", "db.bk.b001", "a1b2")
        assert run == "db.bk.b001.a1b2"
        filename = manifest["spec"]["labels"]["voodu-postgres.backup.file"]
        (backups_dir / bm.partial_filename(filename)).write_bytes(b"half a dump")
        message, _actions = ok(ctl, tmp_path, "backups", "db", "-o", "json")
        assert [(r["id"], r["status"]) for r in json.loads(message)["backups"]] == [("b001", "running")]
        _message, cancelled = ok(ctl, tmp_path, "backups:cancel", "db", "b001")
        assert cancelled == [{"type": "delete_manifest", "scope": "", "name": "db.bk.b001", "kind": "job"}]
        assert ctl.manifest("job", "", "db.bk.b001") is None
        docker.delete_job("", "db.bk.b001")
        _message, deleted = ok(ctl, tmp_path, "backups:delete", "db", "b001", "--yes")
        assert deleted == [{"type": "delete_manifest", "scope": "", "name": "db.bk.b001", "kind": "job"}]

        message, _actions = ok(ctl, tmp_path, "backups:schedule", "db", "--at", "0 4 * * *")
        assert 'cronjob "db-backup" {' in message and 'cronjob ""' not in message
        assert "vd pg:backups:capture db" in message and "capture /db" not in message


def test_cancel_of_a_job_still_queued_ends_it_cancelled_with_nothing_left(ctl: FakeController, docker: FakeDocker,
                                                                          tmp_path: Path, backups_dir: Path) -> None:
    """run_job was emitted but Voodu has not created the job's container yet: the backup lists as
    running (it is not lost), cancel finds it by its record, deletes that same job, and the
    backup ends cancelled — and if the controller starts the job after all, the script refuses
    to dump (tests/unit/test_backups_effects.py)."""
    _message, created = ok(ctl, tmp_path, "backups:capture", "shop/db")
    job = created[1]["name"]
    assert ctl.jobs_run == [("shop", job)] and not docker.containers  # queued, no container
    assert listing(ctl, tmp_path)["b001"]["status"] == "running"
    message, cancelled = ok(ctl, tmp_path, "backups:cancel", "shop/db", "b001")
    assert cancelled == [{"type": "delete_manifest", "scope": "shop", "name": job, "kind": "job"}]
    assert ctl.manifest("job", "shop", job) is None and "cancelling 1 capture (b001)" in message
    assert listing(ctl, tmp_path)["b001"]["status"] == "cancelled"
    filename = created[0]["manifest"]["spec"]["labels"]["voodu-postgres.backup.file"]
    assert sorted(p.name for p in backups_dir.iterdir()) == [bm.metadata_filename(filename)]
    _message, deleted = ok(ctl, tmp_path, "backups:delete", "shop/db", "b001", "--yes")
    assert deleted[0]["name"] == job and not any(backups_dir.iterdir())


def test_a_job_that_never_starts_is_failed_after_the_start_timeout(ctl: FakeController, docker: FakeDocker,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from voodu_postgres.commands import backups as cmd

    ok(ctl, tmp_path, "backups:capture", "shop/db")
    assert listing(ctl, tmp_path)["b001"]["status"] == "running"
    later = datetime.now(UTC) + bm.JOB_START_TIMEOUT - timedelta(minutes=1)
    monkeypatch.setattr(cmd, "_now", lambda: later)  # not yet past the timeout
    assert listing(ctl, tmp_path)["b001"]["status"] == "running"
    monkeypatch.setattr(cmd, "_now", lambda: later + timedelta(minutes=2))
    row = listing(ctl, tmp_path)["b001"]
    assert row["status"] == "failed", row
    code, envelope = dispatch(ctl, tmp_path, "backups:cancel", "shop/db", "b001")
    assert code == 1 and "not running" in envelope["error"]


# -- the backup machine drives: each row of its table is the only thing allowing its behaviour ----


def _captured(ctl: FakeController, docker: FakeDocker, tmp_path: Path, backups_dir: Path, *, state: str,
              exit_code: int = 0, landed: bool = True) -> tuple[str, str]:
    """One capture dispatched and run as Voodu would: (its job, its dump file name)."""
    _message, created = ok(ctl, tmp_path, "backups:capture", "shop/db")
    job = created[1]["name"]
    filename = created[0]["manifest"]["spec"]["labels"]["voodu-postgres.backup.file"]
    docker.run_job(ctl, "shop", job, "r1", state=state, exit_code=exit_code,
                   log=GOOD_LOG if landed else "capture failed: pg_dump exited 1\n")
    if landed:
        (backups_dir / filename).write_bytes(b"12345")
    return job, filename


def _without(monkeypatch: pytest.MonkeyPatch, trigger: str, source: str) -> None:
    from voodu_postgres.states import backup as machine

    rows = [r for r in machine.BACKUP_TRANSITIONS
            if not (r["trigger"] == trigger and source in (r["source"] if isinstance(r["source"], list)
                                                             else [r["source"]]))]
    assert len(rows) == len(machine.BACKUP_TRANSITIONS) - 1
    monkeypatch.setattr(machine, "BACKUP_TRANSITIONS", rows)


@pytest.mark.parametrize("trigger,source", [
    ("finish", "running"), ("fail", "running"), ("cancel", "running"), ("delete", "complete"),
    ("download", "complete"), ("verify", "complete"), ("restore", "complete")])
def test_removing_a_backup_table_row_refuses_its_behaviour(trigger: str, source: str, ctl: FakeController,
                                                           docker: FakeDocker, tmp_path: Path, backups_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    landed = trigger != "fail"
    job, filename = _captured(ctl, docker, tmp_path, backups_dir, state="running" if trigger == "cancel" else "exited",
                              exit_code=0 if landed else 1, landed=landed and trigger != "cancel")
    if source == "complete":
        assert listing(ctl, tmp_path)["b001"]["status"] == "complete"  # finalised with the whole table
    _without(monkeypatch, trigger, source)
    argv = {"finish": ["backups", "shop/db"], "fail": ["backups", "shop/db"], "cancel": ["backups:cancel", "shop/db"],
            "delete": ["backups:delete", "shop/db", "b001", "--yes"], "download": ["backups:download", "shop/db", "b001"],
            "verify": ["backups:verify", "shop/db", "b001"],
            "restore": ["backups:restore", "shop/db", "b001", "--yes"]}[trigger]
    code, envelope = dispatch(ctl, tmp_path, argv[0], *argv[1:])
    assert code == 1 and envelope["status"] == "error", envelope
    assert envelope["error"] == f"backup b001 is {source}: the backup machine has no {trigger!r} move from there"
    sidecar = backups_dir / bm.metadata_filename(filename)
    if trigger in ("finish", "fail"):  # the capture's outcome is not recorded by any other means
        assert bm.BackupMetadata.from_json(sidecar.read_text()).status == "running"
    if trigger == "cancel":
        assert ctl.manifest("job", "shop", job) is not None
    if trigger == "delete":
        assert (backups_dir / filename).exists() and ctl.manifest("job", "shop", job) is not None


def test_listing_backups_never_changes_them(ctl: FakeController, docker: FakeDocker, tmp_path: Path,
                                            backups_dir: Path) -> None:
    """A failed capture's leftovers, a completed one's retention (--keep 1) and a finished job whose
    backup is gone all stay as they are while the operator only looks."""
    jobs = []
    for run_id, keep in (("0001", []), ("0002", ["--keep", "1"])):
        _message, created = ok(ctl, tmp_path, "backups:capture", "shop/db", *keep)
        job = created[1]["name"]
        filename = created[0]["manifest"]["spec"]["labels"]["voodu-postgres.backup.file"]
        docker.run_job(ctl, "shop", job, run_id, state="exited", exit_code=0, log=GOOD_LOG)
        (backups_dir / filename).write_bytes(b"12345")
        jobs.append(job)
    before = {p.name: p.read_bytes() for p in backups_dir.iterdir()}
    for _ in range(2):
        code, envelope = dispatch(ctl, tmp_path, "backups", "shop/db", "-o", "json")
        assert code == 0 and envelope["data"]["actions"] in (None, []), envelope
        rows = {r["id"]: r["status"] for r in json.loads(envelope["data"]["message"])["backups"]}
        assert rows == {"b001": "complete", "b002": "complete"}
    assert {p.name: p.read_bytes() for p in backups_dir.iterdir()} == before and docker.removed == []
    # the next command that acts applies the capture's own retention
    ok(ctl, tmp_path, "backups:download", "shop/db", "b002")
    assert list(listing(ctl, tmp_path)) == ["b002"]
