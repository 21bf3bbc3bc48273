"""The effects of the physical pair: ``pg_basebackup`` into one tar file (``backup``), and that tar
replacing every pod's data (``restore``). The decisions — what a tar must hold, the scripts, the
roles SQL, the order of the restore's steps — are in :mod:`.physical_model`.

**Backup.** ``pg_basebackup -Ft -X stream`` runs in a sibling container of the cluster's image on
the cluster network, as the replication role, its password in a 0600 pgpass file mounted
read-only (``PGPASSFILE``: in no argv, not in ``docker inspect``). It writes into a hidden work
directory *next to* the destination (same file system, so the final rename is atomic), as the
calling user's uid, so every file it leaves is ours to remove. The parts are packed into one tar
(mode 0600: it holds password hashes), fsynced, read back (the outer tar lists, ``base.tar``
lists and holds ``PG_VERSION``), and only then linked into place — never over an existing file
unless ``--force`` — and the directory fsynced. Any failure, Ctrl-C included, removes the work
directory and the container, so nothing appears at the destination and no temp file stays.

**Restore.** Helper containers of the cluster's image with a data volume mounted do the work on
the volumes: wipe, extract (checked against ``backup_manifest`` with ``pg_verifybackup``), and
set the roles in single-user mode. The primary is then started as a normal pod and must accept
writes with the bucket's passwords before the intent is cleared and the reconciler re-clones the
standbys.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from voodu_postgres.adapters.docker import RuntimeFailure
from voodu_postgres.adapters.files import write_secret
from voodu_postgres.domain import physical as pm
from voodu_postgres.domain.intents import clear_switchover
from voodu_postgres.domain.keys import (
    INTENT_KEY,
    PASSWORD_KEY,
    REJOIN_KEY,
    REPLICATION_PASSWORD_KEY,
    SWITCHOVER_KEY,
)
from voodu_postgres.domain.model import Desired
from voodu_postgres.domain.naming import DATA_CLAIM, DATA_MOUNT, PGDATA
from voodu_postgres.domain.podspec import PodSpec
from voodu_postgres.domain.sql import literal
from voodu_postgres.reconciler.backups import (
    GONE,
    PGPASS_MOUNT,
    BackupRuntime,
    backup_labels,
    fsync_dir,
    run_helper,
    wait_or_gone,
)
from voodu_postgres.reconciler.credentials import write_replication_password
from voodu_postgres.reconciler.observe import run_sql
from voodu_postgres.render import scram

STOP_TIMEOUT = 60
#: ``voodu.role`` of the helper containers (never a pod's: observe finds pods by ``voodu.kind``)
BACKUP_ROLE, RESTORE_ROLE = "physical-backup", "physical-restore"
#: how long one helper may run: extracting (and checksumming) a large backup takes a while
HELPER_TIMEOUT = 24 * 3600.0
Progress = Callable[[str], None]


# -- helper containers ---------------------------------------------------------------------------


def _last_line(output: str, default: str) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else default


def image_major(runtime: BackupRuntime, image: str, *, name: str, labels: Mapping[str, str]) -> int:
    """The PostgreSQL major of the server binaries in ``image`` (``postgres -V``)."""
    result = run_helper(runtime, image=image, name=name, script="exec postgres -V", binds={}, labels=labels,
                        timeout=120)
    if result.exit_code != 0:
        raise pm.PhysicalError(f"cannot run `postgres -V` in {image}: {_last_line(result.output, 'no output')}")
    return pm.parse_server_major(result.output)


# -- reading a backup file ------------------------------------------------------------------------


def inspect_tar(path: Path) -> pm.TarListing:
    """List a backup file: its members, and ``base.tar``'s members and ``PG_VERSION`` (the nested
    tars are read in place: only headers are read, member data is skipped by seeking)."""
    where = path.name
    try:
        with tarfile.open(path, mode="r:") as outer:
            members = outer.getmembers()
            found = {m.name.removeprefix("./"): m for m in members if m.isfile()}
            base_names: list[str] = []
            pg_version: str | None = None
            wal = 0
            if pm.BASE_TAR in found:
                where = pm.BASE_TAR
                base_file = outer.extractfile(found[pm.BASE_TAR])
                assert base_file is not None
                with tarfile.open(fileobj=base_file, mode="r:") as base:
                    for member in base:
                        base_names.append(member.name)
                        if member.name.removeprefix("./") == "PG_VERSION" and member.isfile():
                            handle = base.extractfile(member)
                            assert handle is not None
                            pg_version = handle.read(64).decode("ascii", "replace")
            if pm.WAL_TAR in found:
                where = pm.WAL_TAR
                wal_file = outer.extractfile(found[pm.WAL_TAR])
                assert wal_file is not None
                with tarfile.open(fileobj=wal_file, mode="r:") as wal_tar:
                    wal = sum(1 for _member in wal_tar)
            return pm.TarListing(tuple(m.name for m in members), tuple(base_names), pg_version, wal)
    except (tarfile.TarError, OSError, EOFError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return pm.TarListing(problem=reason if where == path.name else f"{where}: {reason}")


# -- backup ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    major: int
    members: tuple[str, ...]
    elapsed_s: float


def _pgpass_field(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _tree_size(directory: Path) -> int:
    total = 0
    try:
        for entry in os.scandir(directory):
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    except FileNotFoundError:
        pass
    return total


def _pid_gone(pid: str) -> bool:
    return pid.isascii() and pid.isdigit() and not Path(f"/proc/{pid}").exists()


def remove_stale_containers(runtime: BackupRuntime, labels: Mapping[str, str]) -> None:
    """Backup containers (``….basebackup.<pid>``) whose CLI was killed: nobody will collect them."""
    for info in runtime.list_containers(labels):
        if _pid_gone(info.name.rsplit(".", 1)[-1]):
            runtime.remove_container(info.name, timeout=1)


def remove_stale_work(dest: Path) -> None:
    """Work directories a killed backup left next to ``dest`` (their pid is gone)."""
    prefix = f".{dest.name}{pm.WORK_MARK}"
    try:
        entries = list(os.scandir(dest.parent))
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        if _pid_gone(entry.name[len(prefix):].split("-")[0]):
            shutil.rmtree(entry.path, ignore_errors=True)


def assemble(parts: Path, names: Sequence[str], target: Path) -> None:
    """Pack the parts into one tar at ``target`` (created 0600, never over a file), fsynced."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                source = parts / name
                stat = source.stat()
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o600
                with open(source, "rb") as handle:
                    tar.addfile(info, handle)
        raw.flush()
        os.fsync(raw.fileno())


def commit(tmp: Path, dest: Path, *, force: bool) -> None:
    """Put the finished file in place: atomically over ``dest`` with ``force``, else by a hard link,
    which fails instead of replacing a file that appeared meanwhile. Then the directory is synced."""
    if force:
        os.replace(tmp, dest)
    else:
        try:
            os.link(tmp, dest)
        except FileExistsError as exc:
            raise pm.PhysicalError(f"{dest} appeared while the backup ran; not overwriting it (the new backup is "
                                   "discarded; pick another path, or --force)") from exc
        except OSError as exc:  # a file system without hard links: check, then rename
            if dest.exists():
                raise pm.PhysicalError(f"{dest} appeared while the backup ran; not overwriting it") from exc
            os.rename(tmp, dest)
        else:
            tmp.unlink()
    fsync_dir(dest.parent)


def take_backup(runtime: BackupRuntime, *, image: str, network: str, host: str, port: int, user: str,
                password: str, state_dir: Path, dest: Path, force: bool, name: str, labels: Mapping[str, str],
                progress: Callable[[int, float], None] = lambda _size, _elapsed: None,
                poll: float = 0.5) -> BackupResult:
    """``pg_basebackup`` from ``host`` into the one tar file ``dest`` (see the module docstring)."""
    started = time.monotonic()
    remove_stale_work(dest)
    remove_stale_containers(runtime, {k: v for k, v in labels.items() if k.startswith("voodu.")})
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}{pm.WORK_MARK}{os.getpid()}-"))
    pgpass_name = f".{pm.PGPASS_FILE}.{os.getpid()}"
    write_secret(state_dir, pgpass_name, f"*:*:*:{_pgpass_field(user)}:{_pgpass_field(password)}\n")
    pgpass = state_dir / pgpass_name
    parts = work / "parts"
    try:
        runtime.remove_container(name, timeout=1)
        runtime.run_detached(image, ["bash", "-c", pm.basebackup_script(host=host, port=port, user=user)],
                             name=name, network=network, user=f"{os.getuid()}:{os.getgid()}",
                             binds={str(work): (pm.OUT_MOUNT, "rw"), str(pgpass): (PGPASS_MOUNT, "ro")},
                             env={"PGPASSFILE": PGPASS_MOUNT, "PGCONNECT_TIMEOUT": "10"}, labels=labels)
        while True:
            code = wait_or_gone(runtime, name, poll)  # returns at the exit: poll only paces the progress
            progress(_tree_size(parts), time.monotonic() - started)
            if code is not None:
                break
        if code != 0:
            reason = _last_line(runtime.logs(name), "no output") if code != GONE else "its container disappeared"
            raise pm.PhysicalError(f"pg_basebackup from {host} failed (exit {code}): {reason}")
        names = pm.check_parts(p.name for p in parts.iterdir())
        tmp = work / dest.name
        assemble(parts, names, tmp)
        listing = inspect_tar(tmp)
        if listing.problem is None and not listing.wal_members:
            raise pm.PhysicalError("the backup's pg_wal.tar holds no WAL: it would not be self-consistent")
        major = pm.check_listing(listing, path=f"the new backup of {host}")
        size = tmp.stat().st_size
        commit(tmp, dest, force=force)
        return BackupResult(dest, size, major, names, time.monotonic() - started)
    finally:
        runtime.remove_container(name, timeout=1)
        shutil.rmtree(work, ignore_errors=True)
        pgpass.unlink(missing_ok=True)


# -- restore -----------------------------------------------------------------------------------------


@dataclass
class RestoreContext:
    """Everything a restore's steps touch. ``record`` writes the bucket at once (the intent);
    ``converge`` runs the reconciler until the cluster is whole again and says how it went."""

    runtime: BackupRuntime
    desired: Desired
    bucket: Mapping[str, str]
    replication_user: str
    tar: Path
    manifest: bool
    labels: Mapping[str, str]
    workdir: Path
    state_dir: Path | None
    record: Callable[[Mapping[str, str]], None]
    converge: Callable[[], str]
    start_timeout: float = 180.0

    @property
    def primary(self) -> PodSpec:
        return self.desired.pod(self.desired.target_primary)

    def helper_name(self, what: str) -> str:
        return f"{self.desired.ref.app_id}.restore.{what}"


def _data_volume(pod: PodSpec) -> tuple[str, str]:
    """The pod's data volume and where it is mounted."""
    name = pod.ref.volume(pod.ordinal, DATA_CLAIM)
    return name, pod.volumes.get(name, DATA_MOUNT)


def _pgdata(pod: PodSpec) -> str:
    return pod.env.get("PGDATA") or PGDATA


def _helper(ctx: RestoreContext, what: str, script: str, binds: Mapping[str, tuple[str, str]],
            env: Mapping[str, str], failure: str) -> str:
    result = run_helper(ctx.runtime, image=ctx.primary.image, name=ctx.helper_name(what), script=script,
                        binds=binds, env=env, labels=ctx.labels, timeout=HELPER_TIMEOUT)
    if result.exit_code != 0:
        raise pm.PhysicalError(f"{failure} (exit {result.exit_code}): {_last_line(result.output, 'no output')}")
    return _last_line(result.output, "done")


def _stop(ctx: RestoreContext, ordinal: int) -> str:
    container = ctx.desired.ref.container(ordinal)
    state = ctx.runtime.container_state(container)
    if state is None:
        return "no container"
    if state in ("exited", "created", "dead"):
        return "already stopped"
    code = ctx.runtime.stop_container(container, timeout=STOP_TIMEOUT)
    return f"stopped (exit {code})"


def _wipe(ctx: RestoreContext, ordinal: int) -> str:
    volume = ctx.desired.ref.volume(ordinal, DATA_CLAIM)
    _name, mount = _data_volume(ctx.primary)  # every pod mounts its data claim at the same path
    _helper(ctx, f"wipe-{ordinal}", pm.wipe_script(), {volume: (mount, "rw")}, {"VPG_MOUNT": mount},
            f"wiping {volume} failed")
    return f"emptied {volume}; it clones from the primary when it starts"


def _extract(ctx: RestoreContext) -> str:
    pod = ctx.primary
    volume, mount = _data_volume(pod)
    ctx.runtime.ensure_volume(volume, pod.volume_labels.get(volume, {}))
    started = time.monotonic()
    _helper(ctx, "extract", pm.extract_script(manifest=ctx.manifest),
            {volume: (mount, "rw"), str(ctx.tar): (pm.TAR_MOUNT, "ro")},
            {"VPG_MOUNT": mount, "PGDATA": _pgdata(pod), "VPG_HBA": pm.hba_replication_line(ctx.replication_user)},
            f"extracting {ctx.tar.name} into {volume} failed")
    checked = ", every file matches backup_manifest" if ctx.manifest else " (no backup_manifest to check against)"
    return (f"base.tar and pg_wal.tar unpacked into {volume}{checked}; no signal file left, owner postgres, "
            f"mode 0700 ({time.monotonic() - started:.1f}s)")


def _set_roles(ctx: RestoreContext) -> str:
    pod = ctx.primary
    volume, mount = _data_volume(pod)
    password, replication = ctx.bucket.get(PASSWORD_KEY, ""), ctx.bucket.get(REPLICATION_PASSWORD_KEY, "")
    if not password or not replication:
        raise pm.PhysicalError(f"postgres {ctx.desired.ref}: the bucket lacks {PASSWORD_KEY} or "
                               f"{REPLICATION_PASSWORD_KEY}; cannot set the restored roles' passwords")
    sql = pm.roles_sql(superuser=ctx.desired.user, superuser_verifier=scram.verifier(password),
                       replication_user=ctx.replication_user, replication_verifier=scram.verifier(replication))
    write_secret(ctx.workdir, "roles.sql", sql)  # verifiers, not passwords; still 0600 and off any argv
    sql_file = ctx.workdir / "roles.sql"
    binds = {b.source: (b.target, "ro") for b in pod.binds}  # the pod's conf files: postgresql.conf includes them
    binds.update({volume: (mount, "rw"), str(sql_file): (pm.SQL_MOUNT, "ro")})
    try:
        _helper(ctx, "roles", pm.roles_script(), binds, {"PGDATA": _pgdata(pod)},
                "setting the roles in single-user mode failed")
    finally:
        sql_file.unlink(missing_ok=True)
    return (f"replayed the backup's WAL in single-user mode, then gave {ctx.desired.user} (superuser) and "
            f"{ctx.replication_user} (replication) the bucket's passwords as SCRAM verifiers")


def _sql(ctx: RestoreContext, statement: str) -> str:
    # template1: always there, even when the backup comes from a cluster without this one's database
    return run_sql(ctx.runtime, ctx.primary.container, port=ctx.desired.port, user=ctx.desired.user,
                   database="template1", sql=statement)


def _start(ctx: RestoreContext) -> str:
    pod = ctx.primary
    runtime = ctx.runtime
    if runtime.container_state(pod.container) is None:
        runtime.run_pod(pod)
    else:
        runtime.start_container(pod.container)
    started = time.monotonic()
    while True:
        try:
            if _sql(ctx, "SELECT pg_is_in_recovery()") == "f":
                return f"{ctx.desired.app_name(pod.ordinal)} accepts writes ({time.monotonic() - started:.1f}s)"
        except RuntimeFailure:
            pass
        state = runtime.container_state(pod.container)
        if state in ("exited", "dead") or time.monotonic() - started > ctx.start_timeout:
            tail = _last_line(runtime.logs_tail(pod.container, 10), state or "absent")
            raise pm.PhysicalError(f"{pod.container} did not come up as a writable primary ({state}): {tail}")
        time.sleep(0.25)


def _check_roles(ctx: RestoreContext) -> str:
    """The postcondition of the roles step, checked on the live primary: both roles log in with the
    bucket's passwords and have their attributes."""
    checks = ((ctx.desired.user, PASSWORD_KEY, "rolsuper"), (ctx.replication_user, REPLICATION_PASSWORD_KEY,
                                                            "rolreplication"))
    for role, key, attribute in checks:
        row = _sql(ctx, f"SELECT {attribute} AND rolcanlogin, coalesce(rolpassword, '') FROM pg_authid "
                        f"WHERE rolname = {literal(role)}")
        flag, _, stored = row.partition("|")
        if flag != "t" or not scram.matches(ctx.bucket.get(key, ""), stored):
            raise pm.PhysicalError(f"role {role} on the restored primary does not have the bucket's {key} "
                                   f"(or lacks {attribute}); re-run the restore")
    if ctx.state_dir is not None:  # the file every pod's entrypoint prefers to its creation-time env
        write_replication_password(ctx.state_dir, ctx.bucket[REPLICATION_PASSWORD_KEY])
    note = ""
    if _sql(ctx, f"SELECT count(*) FROM pg_database WHERE datname = {literal(ctx.desired.database)}") != "1":
        note = f"; ⚠ the backup has no database {ctx.desired.database} (apps linked to it will fail)"
    return f"{ctx.desired.user} and {ctx.replication_user} log in with the bucket's passwords{note}"


def _remove_helpers(ctx: RestoreContext) -> str:
    ref = ctx.desired.ref
    left = ctx.runtime.list_containers(backup_labels(ref, RESTORE_ROLE))
    for info in left:
        ctx.runtime.remove_container(info.name, timeout=1)
    return f"removed {', '.join(sorted(i.name for i in left))}" if left else "none left by an earlier run"


def run_step(step: pm.RestoreStep, ctx: RestoreContext) -> str:
    """Carry out one restore step; a line saying what it did."""
    kind = step.kind
    if kind is pm.StepKind.RECORD_INTENT:
        ctx.record({INTENT_KEY: str(ctx.tar)})
        return f"{INTENT_KEY} recorded: apply and reconcile refuse until this restore finishes"
    if kind is pm.StepKind.REMOVE_HELPERS:
        return _remove_helpers(ctx)
    if kind is pm.StepKind.STOP:
        assert step.ordinal is not None
        return _stop(ctx, step.ordinal)
    if kind is pm.StepKind.WIPE:
        assert step.ordinal is not None
        return _wipe(ctx, step.ordinal)
    if kind is pm.StepKind.EXTRACT:
        return _extract(ctx)
    if kind is pm.StepKind.SET_ROLES:
        return _set_roles(ctx)
    if kind is pm.StepKind.START:
        return _start(ctx)
    if kind is pm.StepKind.CHECK_ROLES:
        return _check_roles(ctx)
    if kind is pm.StepKind.CLEAR_INTENT:
        # an unfinished promote's or rejoin's intents described pods whose data is gone now
        stale = [k for k in (SWITCHOVER_KEY, REJOIN_KEY) if ctx.bucket.get(k, "").strip()]
        ctx.record({INTENT_KEY: "", **clear_switchover(), REJOIN_KEY: ""})
        return f"{INTENT_KEY} cleared" + (f" (and the stale {', '.join(stale)})" if stale else "")
    return ctx.converge()


def run_restore(steps: Sequence[pm.RestoreStep], ctx: RestoreContext, progress: Progress) -> None:
    for step in steps:
        progress(f"{step.describe(ctx.desired.ref)}: {run_step(step, ctx)}")
