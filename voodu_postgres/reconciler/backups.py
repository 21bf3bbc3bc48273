"""The effects behind the ``backups`` commands: the capture container, the files in the backups host
directory, and the restores (into the primary, or into a throw-away server to verify a dump).

A capture is one detached container of the cluster's image on the cluster network, named
``<scope>-<name>.bk.bNNN``. Its script runs every stage with its exit status checked — a session
exports its snapshot and counts every table's rows in it (when that is cheap: see
:data:`ROW_COUNT_BUDGET`) while ``pg_dump --snapshot`` writes
``<file>.partial`` from that same snapshot (both retried a bounded number of times after a recovery
conflict on a standby), ``pg_restore --list`` (the archive must be readable), the SHA-256 — and
only then fsyncs the file, renames it to its final name and fsyncs the directory: the rename is
the commit point, so a dump under its final name is whole, and a cancel recorded before it wins.
What it learned goes to its log as ``@@vpg <key> <value>`` lines, from which the caller writes the
metadata sidecar once the container has exited (so a detached capture needs no process watching it).

The password reaches the container as a 0600 pgpass file bind-mounted read-only (``PGPASSFILE``):
never an argv, never the container's environment (``docker inspect`` shows both).

Under Voodu the same script runs as a Voodu *job* (:func:`capture_job_spec`): Voodu names its run
containers ``<scope>-<name>.bk.bNNN.<runid>`` and sets its own ``voodu.scope``/``voodu.name``
labels on them (the job's, not the cluster's) and may refuse ``voodu.*`` keys in a job's labels,
so the job carries our labels under :data:`JOB_LABEL_PREFIX` instead; :func:`list_capture_containers`
finds both kinds and hands them back with the standard keys.
"""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from voodu_postgres.adapters.docker import ContainerInfo, ExecResult, Runtime, RuntimeFailure
from voodu_postgres.adapters.files import write_secret
from voodu_postgres.domain.naming import Ref

MARK = "@@vpg "
PGPASS_FILE = "backup.pgpass"
PGPASS_MOUNT = "/run/voodu-backup/pgpass"
BACKUPS_MOUNT = "/backups"
ROLE_LABEL = "voodu.role"
CONFLICT_RETRIES = 3
#: where a Voodu capture job carries our ``voodu.*`` labels (``voodu-postgres.role=backup``, …)
JOB_LABEL_PREFIX = "voodu-postgres."

#: The dump's format and compression level: the one place they are chosen (the flags and the
#: metadata's ``compression`` derive from it; the measurement behind the level is in
#: bench/backups.py and the README's Backups section). Always ``-Fc``: one file per backup.
DUMP_LEVEL = 1
DUMP_FLAGS: tuple[str, ...] = ("-Fc", f"-Z{DUMP_LEVEL}")
DUMP_COMPRESSION = f"gzip:{DUMP_LEVEL}" if DUMP_LEVEL else "none"

#: Exact row counts are taken only when they are cheap: when the tables to count hold at most this
#: many bytes of heap (``pg_relation_size``, summed). Counting is a full scan of every table on the
#: server, concurrent with pg_dump's own scan; on 1.1 GB of pgbench tables it slowed the dump by 10%
#: on a 2-core host (this script in a container, with and without the count: 7.98 s vs 7.23 s). Under the budget it costs well under a
#: tenth of a second. Above it the metadata says why there are no counts, and verify still restores
#: the whole archive (``--exit-on-error``: one bad row or truncated stream fails it) and lists the
#: tables it restored.
ROW_COUNT_BUDGET = 64 * 1024 * 1024

#: The tables whose data pg_dump writes: ordinary tables (partitions included, partitioned parents
#: hold no rows of their own), not the catalogs, not other sessions' temporary tables, not extension
#: members (pg_dump leaves their data to CREATE EXTENSION), and unlogged tables only on a primary —
#: on a standby pg_dump skips their data, which cannot be read there.
_DUMPED_TABLES = (
    "SELECT n.nspname, c.relname, pg_relation_size(c.oid) AS bytes FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND (c.relpersistence = 'p' OR (c.relpersistence = 'u' AND NOT pg_is_in_recovery())) "
    "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
    "AND d.objid = c.oid AND d.deptype = 'e')")

#: ``schema.table`` as pg_dump quotes names, on one line whatever the name holds (quote_ident keeps
#: a newline, which would split the line-based log: it becomes the two characters ``\n``).
def _qualified(schema: str, table: str) -> str:
    return (f"replace(replace(quote_ident({schema}) || '.' || quote_ident({table}), chr(10), '\\n'), "
            "chr(13), '\\r')")


def _row_line(schema: str, table: str) -> str:
    """The SQL of one ``schema.table<TAB>count`` line: the exact count of that table's rows."""
    return (f"{_qualified(schema, table)} || chr(9) || (xpath('/row/c/text()', query_to_xml(format("
            f"'SELECT count(*) AS c FROM %I.%I', {schema}, {table}), false, true, '')))[1]::text")


#: One statement in the dump's snapshot: first ``@@bytes<TAB>N`` (the heap bytes of those tables:
#: main fork only — count(*) reads neither TOAST nor indexes), then — only when N is within
#: :data:`ROW_COUNT_BUDGET` — ``schema.table<TAB>count`` for each. The budget test is an InitPlan
#: evaluated once, before any table is scanned; over budget no count runs at all.
SNAPSHOT_COUNT_SQL = (
    f"WITH t AS MATERIALIZED ({_DUMPED_TABLES}), total AS (SELECT coalesce(sum(bytes), 0) AS bytes FROM t) "
    f"SELECT '@@bytes' || chr(9) || bytes FROM total UNION ALL (SELECT {_row_line('nspname', 'relname')} FROM t "
    f"WHERE (SELECT bytes FROM total) <= {ROW_COUNT_BUDGET} ORDER BY 1);")


def rows_skipped_reason(table_bytes: int, budget: int) -> str | None:
    """Why a capture recorded no row counts (None when it counted them): its tables' size and the
    budget its script ran with (both from its log, so a later change of the constant does not
    re-decide an old capture)."""
    if table_bytes <= budget:
        return None
    mib = 1024 * 1024
    return (f"not counted: {table_bytes / mib:,.1f} MiB of table data is over the "
            f"{budget / mib:g} MiB budget for exact counts")


class BackupRuntime(Runtime, Protocol):
    """The runtime operations captures, restores and verifications need beyond the reconciler's."""

    def run_detached(self, image: str, argv: list[str], *, name: str, network: str,
                     binds: Mapping[str, tuple[str, str]], env: Mapping[str, str] | None = None,
                     user: str = "postgres", labels: Mapping[str, str] | None = None) -> None: ...

    def logs(self, name: str) -> str: ...

    def follow_logs(self, name: str) -> Iterator[str]: ...

    def exit_code_of(self, name: str) -> int | None: ...

    def wait_exit(self, name: str, timeout: float) -> int | None: ...


def backup_labels(ref: Ref, role: str = "backup") -> dict[str, str]:
    """What a helper container of ``ref`` is (``voodu.role``) and whose (never a pod's ``voodu.kind``)."""
    return {ROLE_LABEL: role, "voodu.scope": ref.scope, "voodu.name": ref.name}


def job_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``voodu.X`` → ``voodu-postgres.X`` (other keys unchanged): the labels of a capture job."""
    return {(JOB_LABEL_PREFIX + k.removeprefix("voodu.") if k.startswith("voodu.") else k): v
            for k, v in labels.items()}


def _standard_labels(info: ContainerInfo) -> ContainerInfo:
    ours = {"voodu." + k.removeprefix(JOB_LABEL_PREFIX): v for k, v in info.labels.items()
            if k.startswith(JOB_LABEL_PREFIX)}
    return replace(info, labels={**info.labels, **ours})


def is_job_run(info: ContainerInfo) -> bool:
    """A Voodu job run of a capture (its labels under :data:`JOB_LABEL_PREFIX`)."""
    return any(k.startswith(JOB_LABEL_PREFIX) for k in info.labels)


def list_capture_containers(runtime: Runtime, ref: Ref) -> list[ContainerInfo]:
    """The cluster's capture containers: direct (standalone) ones and Voodu job runs, the latter
    with their labels mapped back to the standard keys."""
    found = {info.name: info for info in runtime.list_containers(backup_labels(ref))}
    for info in runtime.list_containers(job_labels(backup_labels(ref))):
        found.setdefault(info.name, _standard_labels(info))
    return list(found.values())


def _pgpass_field(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def write_pgpass(state_dir: Path, user: str, password: str) -> Path:
    """The 0600 pgpass file captures mount read-only (any host, port and database; this user)."""
    write_secret(state_dir, PGPASS_FILE, f"*:*:*:{_pgpass_field(user)}:{_pgpass_field(password)}\n")
    return state_dir / PGPASS_FILE


def capture_script(*, host: str, port: int, user: str, database: str, filename: str,
                   dump_flags: tuple[str, ...] = DUMP_FLAGS, directory: str = BACKUPS_MOUNT) -> str:
    """The bash the capture container runs (every stage checked; rename last).

    The row counts come from a second session that exports its snapshot to pg_dump
    (``pg_export_snapshot()`` in a REPEATABLE READ transaction, ``pg_dump --snapshot``): both see
    exactly the same data, so the counts are the dump's own, and they are taken on the server while
    pg_dump is still compressing instead of by decompressing the whole archive afterwards (which cost
    more than a third of the dump's time) — and only when the tables are small enough for that to
    be cheap (:data:`ROW_COUNT_BUDGET`). The session holds its transaction — and so the snapshot —
    open until pg_dump has finished. It works on a standby too."""
    final = shlex.quote(f"{directory}/{filename}")
    conn = f"-h {shlex.quote(host)} -p {port} -U {shlex.quote(user)} -d {shlex.quote(database)}"
    flags = " ".join(dump_flags)
    opening = ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;",
               # counting is a side job: keep it to one core, the dump's compression needs the others
               "SET max_parallel_workers_per_gather = 0;",
               "SELECT pg_export_snapshot() || '|' || left(pg_is_in_recovery()::text, 1);")
    return f"""set -uo pipefail
trap '' PIPE
umask 077
F={final}; P="$F.partial"
say() {{ echo "{MARK}$*"; }}
die() {{ rm -f "$P"; echo "capture failed: $1" >&2; exit "$2"; }}
last() {{ tail -n1 "$1" 2>/dev/null; }}
conflict() {{ grep -qs 'conflict with recovery' "$W/pg_dump.err" "$W/snap.err"; }}
say started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
W=$(mktemp -d) || die "cannot make a work directory" 9
trap 'rm -rf "$W"' EXIT
mkfifo "$W/snap.in" "$W/snap.out" || die "cannot make the session's pipes" 9
# a cancel recorded before this container started (a Voodu job cancelled while queued) wins
cancelled() {{ grep -qs '"status": "cancelled"' "$F.json"; }}
cancelled && die "cancelled before it started" 10
n=0
while :; do
  n=$((n + 1)); rc=0; why=""; : >"$W/rows"; : >"$W/bytes"; : >"$W/pg_dump.err"
  psql -XAtq {conn} -v ON_ERROR_STOP=1 <"$W/snap.in" >"$W/snap.out" 2>"$W/snap.err" &
  sp=$!
  exec 3>"$W/snap.in" 4<"$W/snap.out"
  printf '%s\\n' {" ".join(shlex.quote(line) for line in opening)} >&3
  if IFS='|' read -r snap rec <&4 && [ -n "$snap" ]; then
    pg_dump {conn} --snapshot="$snap" {flags} -f "$P" 2>"$W/pg_dump.err" &
    dp=$!
    printf '%s\\n' {shlex.quote(SNAPSHOT_COUNT_SQL)} '\\echo @@counted' >&3
    counted=""
    while IFS= read -r line <&4; do
      case "$line" in
        @@counted) counted=1; break ;;
        @@bytes$'\\t'*) printf '%s' "${{line#*$'\\t'}}" >"$W/bytes" || break ;;
        *) printf '%s\\n' "$line" >>"$W/rows" || break ;;  # a full disk: not counted, so it fails
      esac
    done
    [ -n "$counted" ] || {{ kill "$dp" 2>/dev/null; why="counting rows in the dump's snapshot failed: $(last "$W/snap.err")"; }}
    wait "$dp"; rc=$?
    [ -n "$why" ] || [ "$rc" -eq 0 ] || why="pg_dump exited $rc"
  else
    why="cannot open the snapshot session: $(last "$W/snap.err")"
  fi
  printf 'COMMIT;\\n' >&3
  exec 3>&- 4<&-
  wait "$sp" || [ -n "$why" ] || why="the snapshot session failed: $(last "$W/snap.err")"
  cat "$W/pg_dump.err" >&2
  [ -z "$why" ] && break
  [ "$rc" -eq 0 ] && rc=2
  if [ "$n" -lt {CONFLICT_RETRIES} ] && conflict; then
    echo "$why: a recovery conflict on the standby; retrying ($n/{CONFLICT_RETRIES - 1})" >&2
    rm -f "$P"; sleep 2; continue
  fi
  die "$why" "$rc"
done
say in_recovery "$rec"
pg_restore --list "$P" >"$W/toc" 2>"$W/toc.err" || die "pg_restore --list cannot read the dump: $(last "$W/toc.err")" 3
sed 's/^/{MARK}toc /' "$W/toc"
sed 's/^/{MARK}rows /' "$W/rows" || die "cannot read back the row counts" 4
[ -s "$W/bytes" ] && say table_bytes "$(cat "$W/bytes")" && say row_budget {ROW_COUNT_BUDGET}
# openssl's SHA-256 uses the CPU's SHA extensions (several times coreutils' speed); an image without it falls back
hash=sha256sum; command -v openssl >/dev/null && hash="openssl dgst -sha256 -r"
sum=$($hash "$P") || die "sha256 of the dump failed" 5
say sha256 "${{sum%% *}}"
say size "$(stat -c %s "$P")"
sync "$P" || die "fsync of the dump failed" 6
cancelled && die "cancelled" 10  # the rename is the commit point: a recorded cancel must win before it
mv "$P" "$F" || die "rename into place failed" 7
sync {shlex.quote(directory)} || die "fsync of the backups directory failed" 8
say finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "capture complete: $F"
"""


def start_capture(runtime: BackupRuntime, *, image: str, name: str, network: str, backups_dir: Path,
                  pgpass: Path, script: str, labels: Mapping[str, str]) -> None:
    backups_dir.mkdir(parents=True, exist_ok=True)
    runtime.run_detached(image, ["bash", "-c", script], name=name, network=network, user="root",
                         binds={str(backups_dir): (BACKUPS_MOUNT, "rw"), str(pgpass): (PGPASS_MOUNT, "ro")},
                         env={"PGPASSFILE": PGPASS_MOUNT, "PGCONNECT_TIMEOUT": "10"}, labels=labels)


def capture_job_spec(*, image: str, network: str, backups_dir: Path, pgpass: Path, script: str,
                     labels: Mapping[str, str]) -> dict[str, object]:
    """The Voodu job spec of a capture (voodu-platform.md §3.8): the same script, the same mounts
    and env as :func:`start_capture` — the password in a read-only pgpass file, never in ``env``
    (which Voodu writes to the job's env file and Docker shows in ``inspect``). Each backup is its
    own job, so the history limits of 1 keep exactly its one run (its log) until it is deleted."""
    return {
        "image": image,
        "command": ["bash", "-c", script],
        "env": {"PGPASSFILE": PGPASS_MOUNT, "PGCONNECT_TIMEOUT": "10"},
        "volumes": [f"{backups_dir}:{BACKUPS_MOUNT}:rw", f"{pgpass}:{PGPASS_MOUNT}:ro"],
        "networks": [network],
        "labels": job_labels(labels),
        "docker_options": ["--user=0:0"],  # as start_capture: read the 0600 pgpass, write 0600 dumps
        "successful_history_limit": 1,
        "failed_history_limit": 1,
    }


@dataclass
class CaptureLog:
    """What a capture's ``@@vpg`` lines said, and the rest of its log (for people)."""

    values: dict[str, str] = field(default_factory=dict)
    toc: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)


def parse_capture_log(log: str) -> CaptureLog:
    out = CaptureLog()
    for line in log.splitlines():
        if not line.startswith(MARK):
            out.text.append(line)
            continue
        key, _, value = line[len(MARK):].partition(" ")
        if key == "toc":
            out.toc.append(value)
        elif key == "rows":
            table, _, count = value.rpartition("\t")
            if table and (count.isascii() and count.isdigit()):
                out.rows[table] = int(count)
        else:
            out.values[key] = value
    return out


def human_log(log: str) -> str:
    """The log without the machine lines."""
    return "".join(line for line in log.splitlines(keepends=True) if not line.startswith(MARK))


# -- files ------------------------------------------------------------------------------------


def scan(directory: Path) -> list[tuple[str, int]]:
    """``(name, size)`` of every regular file in the backups directory (none when it is missing)."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False):
                out.append((entry.name, entry.stat(follow_symlinks=False).st_size))
        except FileNotFoundError:
            continue
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write a file by rename, synced (the metadata sidecar)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_files(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


#: What :func:`wait_or_gone` returns for a container removed under the caller (a cancel, a delete).
GONE = -1


def wait_or_gone(runtime: BackupRuntime, name: str, timeout: float) -> int | None:
    """The container's exit code once it has stopped, None while it still runs after ``timeout``,
    :data:`GONE` when it was removed. One blocking request (Docker's wait), not polling: the caller
    learns of the exit at once and asks Docker nothing meanwhile."""
    try:
        return runtime.wait_exit(name, timeout)
    except RuntimeFailure:
        if runtime.container_state(name) is not None:
            raise
        return GONE


def wait_exited(runtime: BackupRuntime, name: str, timeout: float = 60) -> int | None:
    """The container's exit code once it has stopped (None when it is gone); RuntimeFailure when
    it still runs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        code = wait_or_gone(runtime, name, min(left, 30))
        if code is not None:
            return None if code == GONE else code
    raise RuntimeFailure(f"{name} did not stop within {timeout:.0f}s")


# -- restores ---------------------------------------------------------------------------------


def toc_in(runtime: Runtime, container: str, path: str) -> ExecResult:
    return runtime.exec(container, ["pg_restore", "--list", path], user="root")


def restore_into(runtime: Runtime, container: str, *, port: int, user: str, database: str,
                 path: str) -> ExecResult:
    """``pg_restore`` in one transaction into a running pod over its trusted loopback (as root, so
    it can read the 0600 dump): a failure changes nothing."""
    return runtime.exec(container, ["pg_restore", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", database,
                                    "--clean", "--if-exists", "--no-owner", "--no-privileges",
                                    "--single-transaction", "--exit-on-error", path], user="root")


COUNT_SQL = (f"SELECT {_row_line('n.nspname', 'c.relname')} FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
             "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
             "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1")


def verify_script(filename: str) -> str:
    """Restore a dump into a fresh, private server (no network, unix socket in /tmp) and print the
    per-table row counts as ``@@vpg rows`` lines. Runs as root; the server as ``postgres``."""
    path = shlex.quote(f"{BACKUPS_MOUNT}/{filename}")
    as_pg = "setpriv --reuid=postgres --regid=postgres --init-groups"
    return f"""set -uo pipefail
D=/tmp/verify; mkdir -p $D && chown postgres:postgres $D
{as_pg} initdb -D $D/data -U postgres --auth=trust >/tmp/initdb.log 2>&1 || {{ cat /tmp/initdb.log >&2; exit 2; }}
{as_pg} pg_ctl -D $D/data -o "-c listen_addresses='' -k $D -c fsync=off" -w -l $D/log start >/dev/null \\
  || {{ cat $D/log >&2; exit 3; }}
{as_pg} createdb -h $D -U postgres verify || exit 4
cat {path} | {as_pg} pg_restore -h $D -U postgres -d verify --no-owner --no-privileges --exit-on-error \\
  || {{ echo "pg_restore failed" >&2; exit 5; }}
{as_pg} psql -XAtq -h $D -U postgres -d verify -v ON_ERROR_STOP=1 -c {shlex.quote(COUNT_SQL)} >/tmp/counts || exit 6
sed 's/^/{MARK}rows /' /tmp/counts
"""


def run_helper(runtime: BackupRuntime, *, image: str, name: str, script: str,
               binds: Mapping[str, tuple[str, str]], labels: Mapping[str, str], env: Mapping[str, str] | None = None,
               network: str = "none", user: str = "root", timeout: float = 3600) -> ExecResult:
    """Run ``bash -c script`` in a throw-away container and wait for it: exit code (-1 when it
    vanished) and log. The container is removed afterwards whatever happens (also on Ctrl-C)."""
    runtime.remove_container(name, timeout=1)  # a leftover of an interrupted run
    runtime.run_detached(image, ["bash", "-c", script], name=name, network=network, binds=binds, env=env,
                         user=user, labels=labels)
    try:
        code = wait_exited(runtime, name, timeout)
        return ExecResult(code if code is not None else -1, runtime.logs(name))
    finally:
        runtime.remove_container(name, timeout=1)


def run_verify(runtime: BackupRuntime, *, image: str, name: str, backups_dir: Path, filename: str,
               labels: Mapping[str, str], timeout: float = 3600) -> tuple[int, str]:
    """Run :func:`verify_script` in a throw-away container; its exit code and log (it is removed)."""
    result = run_helper(runtime, image=image, name=name, script=verify_script(filename),
                        binds={str(backups_dir): (BACKUPS_MOUNT, "ro")}, labels=labels, timeout=timeout)
    return result.exit_code, result.output
