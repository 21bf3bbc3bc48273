"""The decisions behind the physical pair, ``backup`` (``pg_basebackup`` into one tar file) and
``restore`` (that tar replaces the whole cluster's data): argument checks, what a backup tar must
contain, the scripts the helper containers run, the roles SQL, and the ordered list of restore
steps. The effects live in :mod:`voodu_postgres.reconciler.physical`.

A backup file is one *outer* tar holding ``base.tar`` and ``pg_wal.tar`` exactly as
``pg_basebackup -Ft -X stream`` wrote them (plus ``backup_manifest`` when the server wrote one).
Every check here works on a :class:`TarListing` — names read from the file, never the file
itself — so it is unit-tested without Docker or a real backup.

Restore records its intent in the bucket (:data:`INTENT_KEY`, the absolute path of the tar)
before its first destructive step and clears it only once the primary serves with the bucket's
passwords; while it is set, :func:`refuse_while_restoring` makes ``apply``/``reconcile`` refuse,
so nothing can start pods on half-wiped data. Running restore again redoes every step from the
top, which is why any interruption converges.

Pure: no I/O.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.keys import INTENT_KEY
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.domain.sql import ident, literal

BASE_TAR, WAL_TAR, MANIFEST = "base.tar", "pg_wal.tar", "backup_manifest"
#: hidden work directories next to a backup's destination: ``.<name>.vdpg-<pid>-<random>``
WORK_MARK = ".vdpg-"
#: where helper containers see the backup tar / the roles SQL / a backup's output directory
TAR_MOUNT = "/run/voodu-restore/backup.tar"
SQL_MOUNT = "/run/voodu-restore/roles.sql"
OUT_MOUNT = "/out"
PGPASS_FILE = "basebackup.pgpass"
_SERVER_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_PLAIN_ROLE_RE = re.compile(r"[a-z_][a-z0-9_]*")
_HBA_KEYWORDS = frozenset({"all", "sameuser", "samerole", "samegroup"})


class PhysicalError(CommandError):
    """A physical backup or restore refused or failed; one line a user can act on."""


# -- arguments -------------------------------------------------------------------------------


def check_destination(path: str, *, exists: bool, is_dir: bool, parent_is_dir: bool, force: bool,
                      absolute_required: bool = False) -> None:
    """``--destination PATH``: a file to create (an existing file only with ``--force``)."""
    if not path:
        raise UsageError("backup: --destination PATH is required")
    if absolute_required and not path.startswith("/"):
        raise UsageError(f"backup: --destination {path}: give an absolute path (under Voodu the file is written "
                         "on the host the plugin runs on)")
    if is_dir:
        raise UsageError(f"backup: --destination {path} is a directory; name the file to write")
    if not parent_is_dir:
        raise UsageError(f"backup: --destination {path}: its directory does not exist")
    if exists and not force:
        raise PhysicalError(f"{path} already exists; not overwriting it (pick another path, or --force)")


def choose_source(*, replicas: int, primary: int, from_replica: int | None,
                  roles: Mapping[int, PodRole], ref: Ref) -> int:
    """The ordinal to back up from: the primary, or ``--from-replica N`` when N is a running standby."""
    if from_replica is None:
        role = roles.get(primary, PodRole.DOWN)
        if role is not PodRole.PRIMARY:
            raise PhysicalError(f"postgres {ref}: the primary {ref.name}-{primary} is not serving ({role.value}); "
                                f"back up from a standby with --from-replica N, or run `voodu-postgres reconcile "
                                f"{ref}` first")
        return primary
    if not 0 <= from_replica < replicas:
        raise UsageError(f"--from-replica {from_replica} out of range (valid: 0..{replicas - 1})")
    role = roles.get(from_replica, PodRole.DOWN)
    if from_replica == primary or role is not PodRole.STANDBY:
        what = "the primary" if from_replica == primary else f"{role.value}, not a running standby"
        raise PhysicalError(f"--from-replica {from_replica}: {ref.name}-{from_replica} is {what}; pick a "
                            "streaming standby, or leave the flag out to back up from the primary")
    return from_replica


def source_label(source: int, primary: int) -> str:
    return "primary" if source == primary else f"replica {source}"


# -- the tar ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TarListing:
    """What reading a backup file showed: its members, and inside ``base.tar`` the member names and
    ``PG_VERSION``'s text. ``problem`` says why the file could not be read (then nothing else is
    trusted)."""

    members: tuple[str, ...] = ()
    base_members: tuple[str, ...] = ()
    pg_version: str | None = None
    wal_members: int = 0
    problem: str | None = None


def _clean(name: str) -> str:
    return name.removeprefix("./")


def check_parts(names: Iterable[str]) -> tuple[str, ...]:
    """The files ``pg_basebackup -Ft`` left, in the order they go into the outer tar. Anything
    else (a tablespace's ``<oid>.tar``) is refused: a restore could not put it back."""
    present = set(names)
    missing = [n for n in (BASE_TAR, WAL_TAR) if n not in present]
    if missing:
        raise PhysicalError(f"pg_basebackup did not write {' and '.join(missing)}")
    extra = sorted(present - {BASE_TAR, WAL_TAR, MANIFEST})
    if extra:
        raise PhysicalError(f"pg_basebackup wrote {', '.join(extra)} besides base.tar: the cluster has "
                            "tablespaces, which a physical backup here cannot restore")
    return tuple(n for n in (BASE_TAR, WAL_TAR, MANIFEST) if n in present)


def check_listing(listing: TarListing, *, path: str) -> int:
    """The PostgreSQL major of a valid backup file, or one line saying what is wrong with it."""
    if listing.problem is not None:
        raise PhysicalError(f"{path} is not a readable backup tar: {listing.problem}")
    members = [_clean(m) for m in listing.members]
    for needed in (BASE_TAR, WAL_TAR):
        if needed not in members:
            raise PhysicalError(f"{path} holds no {needed} (members: {', '.join(members) or 'none'}); "
                                "it is not a `voodu-postgres backup` file")
    extra = sorted(set(members) - {BASE_TAR, WAL_TAR, MANIFEST})
    if extra:
        raise PhysicalError(f"{path} holds {', '.join(extra)} besides base.tar and pg_wal.tar: not a backup "
                            "this tool can restore")
    base = {_clean(m) for m in listing.base_members}
    if "PG_VERSION" not in base or listing.pg_version is None:
        raise PhysicalError(f"{path}: base.tar holds no PG_VERSION; it is not a PostgreSQL data directory")
    if "global/pg_control" not in base:
        raise PhysicalError(f"{path}: base.tar holds no global/pg_control; the backup is incomplete")
    return parse_pg_version(listing.pg_version, what=f"{path}: PG_VERSION")


def parse_pg_version(text: str, *, what: str = "PG_VERSION") -> int:
    """``PG_VERSION``'s content (``15``, or ``9.6`` for old servers) → the major number."""
    raw = text.strip()
    head = raw.split(".")[0]
    if not (head.isascii() and head.isdigit()):
        raise PhysicalError(f"{what} reads {raw[:20]!r}, not a PostgreSQL version")
    return int(head)


def parse_server_major(output: str) -> int:
    """``postgres (PostgreSQL) 15.18 (Debian …)`` → 15."""
    match = _SERVER_VERSION_RE.search(output)
    if match is None:
        line = (output.strip().splitlines() or ["no output"])[-1]
        raise PhysicalError(f"cannot tell the image's PostgreSQL version from `postgres -V`: {line}")
    return int(match.group(1))


def check_major(backup_major: int, image_major: int, *, path: str, image: str) -> None:
    if backup_major != image_major:
        raise PhysicalError(f"{path} is a PostgreSQL {backup_major} data directory but the cluster runs "
                            f"{image} (PostgreSQL {image_major}); a physical backup only restores into the same "
                            "major version (use pg_dump backups across versions)")


# -- the restore intent ------------------------------------------------------------------------


def restore_command(ref: Ref, path: str) -> str:
    return f"voodu-postgres restore {ref} --from {shlex.quote(path)} --yes"


def interrupted_restore(bucket: Mapping[str, str]) -> str | None:
    """The tar an unfinished restore was restoring from (None when none is recorded)."""
    value = bucket.get(INTENT_KEY, "").strip()
    return value or None


def refuse_while_restoring(bucket: Mapping[str, str], ref: Ref, command: str) -> None:
    """``apply``/``reconcile``/``promote``… refuse while a restore's intent is recorded: the pods'
    data is being replaced, and starting them now would serve (or clone) a half-restored cluster."""
    path = interrupted_restore(bucket)
    if path is not None:
        raise PhysicalError(f"postgres {ref}: a physical restore from {path} did not finish ({INTENT_KEY} is "
                            f"set) and the pods' data is half-replaced, so {command} is refused; run "
                            f"`{restore_command(ref, path)}` again to finish it")


# -- what the helper containers run ------------------------------------------------------------


def basebackup_script(*, host: str, port: int, user: str) -> str:
    """``pg_basebackup`` in tar format with the WAL streamed alongside (self-consistent without an
    archive), into ``/out/parts``. The password comes from the pgpass file (``PGPASSFILE``)."""
    return (f"set -euo pipefail\numask 077\n"
            f"exec pg_basebackup -h {shlex.quote(host)} -p {port} -U {shlex.quote(user)} -w "
            f"-D {OUT_MOUNT}/parts -Ft -X stream -c fast\n")


def wipe_script() -> str:
    """Empty a data volume (``$VPG_MOUNT``): PGDATA and the interrupted-clone sentinel beside it."""
    return 'set -euo pipefail\nfind "$VPG_MOUNT" -mindepth 1 -delete\necho "wiped $VPG_MOUNT"\n'


def hba_replication_line(user: str) -> str:
    """The ``pg_hba.conf`` line letting ``user`` stream WAL, quoted as the initdb hook quotes it."""
    shown = user if _PLAIN_ROLE_RE.fullmatch(user) and user not in _HBA_KEYWORDS \
        else ident(user)
    return f"host replication {shown} all scram-sha-256"


def extract_script(*, manifest: bool) -> str:
    """Empty the primary's volume, unpack the backup into ``$PGDATA`` (WAL into ``pg_wal``), check
    it against its manifest, and leave it ready to start as a primary: no signal files (it must
    not come up in recovery), the cluster's replication line in ``pg_hba.conf``, owned by postgres,
    mode 0700. Every stage's status is checked (``pipefail``)."""
    verify = ('echo "checking every file against backup_manifest"\n'
              f'tar -xOf {TAR_MOUNT} {MANIFEST} > /tmp/{MANIFEST}\n'
              f'pg_verifybackup --quiet -m /tmp/{MANIFEST} "$PGDATA"\n') if manifest else ""
    return f"""set -euo pipefail
find "$VPG_MOUNT" -mindepth 1 -delete
mkdir -p "$PGDATA/pg_wal"
tar -xOf {TAR_MOUNT} {BASE_TAR} | tar -xf - -C "$PGDATA"
tar -xOf {TAR_MOUNT} {WAL_TAR} | tar -xf - -C "$PGDATA/pg_wal"
test -f "$PGDATA/PG_VERSION" -a -f "$PGDATA/global/pg_control"
{verify}rm -f "$PGDATA/standby.signal" "$PGDATA/recovery.signal" "$PGDATA/postmaster.pid" "$PGDATA/postmaster.opts"
test -f "$PGDATA/pg_hba.conf"
if ! grep -qxF "$VPG_HBA" "$PGDATA/pg_hba.conf"; then
  printf '\\n%s\\n%s\\n' "# voodu-postgres restore: this cluster's standbys stream as its replication role" \\
    "$VPG_HBA" >>"$PGDATA/pg_hba.conf"
fi
chown -R postgres:postgres "$VPG_MOUNT"
chmod 0700 "$PGDATA"
sync
echo "extracted into $PGDATA"
"""


def roles_script() -> str:
    """Run the roles SQL in single-user mode as the postgres OS user. Single-user mode is the
    backup's own bootstrap superuser whatever it is named, and replays the backup's WAL first;
    the server is shut down cleanly when stdin ends. It answers an error on its output, not with
    its exit status, so the output is checked too."""
    return f"""set -uo pipefail
setpriv --reuid=postgres --regid=postgres --init-groups postgres --single -D "$PGDATA" template1 \\
  <{SQL_MOUNT} >/tmp/single.log 2>&1
rc=$?
errors=$(grep -E '(^|[[:space:]])(ERROR|FATAL|PANIC): ' /tmp/single.log || true)
if [ -n "$errors" ]; then printf '%s\\n' "$errors" >&2; exit 3; fi
if [ "$rc" -ne 0 ]; then grep -v STATEMENT /tmp/single.log | tail -n 5 >&2; exit "$rc"; fi
echo "roles set; the server replayed the backup's WAL and shut down cleanly"
"""


#: what pg_rewind needs from a non-superuser replication role (as the initdb hook grants)
_REWIND_GRANTS = ("pg_catalog.pg_ls_dir(text, boolean, boolean)", "pg_catalog.pg_stat_file(text, boolean)",
                  "pg_catalog.pg_read_binary_file(text)",
                  "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)")


def roles_sql(*, superuser: str, superuser_verifier: str, replication_user: str, replication_verifier: str) -> str:
    """One statement per line (single-user mode ends a statement at a newline): the cluster's
    superuser and replication role exist, with the bucket's passwords as SCRAM verifiers (the
    passwords themselves never reach Postgres), plus the grants pg_rewind needs. A restored
    ``synchronous_standby_names`` is reset — the standbys are empty until they re-clone, and every
    commit would wait for them; the reconciler sets it again once one streams."""

    def ensure(role: str) -> str:
        return (f"DO $vpg$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {literal(role)}) "
                f"THEN CREATE ROLE {ident(role)}; END IF; END$vpg$;")

    lines = [
        ensure(superuser),
        f"ALTER ROLE {ident(superuser)} WITH SUPERUSER LOGIN PASSWORD {literal(superuser_verifier)};",
        ensure(replication_user),
        f"ALTER ROLE {ident(replication_user)} WITH LOGIN REPLICATION PASSWORD {literal(replication_verifier)};",
        *(f"GRANT EXECUTE ON FUNCTION {fn} TO {ident(replication_user)};" for fn in _REWIND_GRANTS),
        "ALTER SYSTEM RESET synchronous_standby_names;",
    ]
    return "\n".join(lines) + "\n"


# -- the restore, step by step -------------------------------------------------------------------


class StepKind(StrEnum):
    RECORD_INTENT = "record intent"
    REMOVE_HELPERS = "remove helpers"  # left running by a killed restore: they would race this one
    STOP = "stop"
    WIPE = "wipe"
    EXTRACT = "extract"
    SET_ROLES = "set roles"
    START = "start"
    CHECK_ROLES = "check roles"
    CLEAR_INTENT = "clear intent"
    CONVERGE = "converge"


@dataclass(frozen=True)
class RestoreStep:
    kind: StepKind
    ordinal: int | None = None

    def describe(self, ref: Ref) -> str:
        pod = f" {ref.name}-{self.ordinal}" if self.ordinal is not None else ""
        return f"{self.kind.value}{pod}"


def restore_steps(*, replicas: int, primary: int, containers: Iterable[int], volumes: Iterable[int]) -> list[RestoreStep]:
    """Every step of a restore, in order. The intent comes before anything destructive and is
    cleared only after the primary serves with the bucket's passwords. Helper containers a killed
    restore left behind (an extraction, a single-user server) go before anything touches a volume. Pods stop highest ordinal
    first and the primary last (readers lose their standbys before the writer goes); every data
    volume but the primary's is wiped — also those of ordinals scaled away, which would otherwise
    come back later holding the old history; the primary's is wiped by its extraction."""
    existing = sorted(set(containers), reverse=True)
    stops = [o for o in existing if o != primary] + ([primary] if primary in existing else [])
    wipes = sorted(set(volumes) - {primary})
    return [
        RestoreStep(StepKind.RECORD_INTENT),
        RestoreStep(StepKind.REMOVE_HELPERS),
        *(RestoreStep(StepKind.STOP, o) for o in stops),
        *(RestoreStep(StepKind.WIPE, o) for o in wipes),
        RestoreStep(StepKind.EXTRACT, primary),
        RestoreStep(StepKind.SET_ROLES, primary),
        RestoreStep(StepKind.START, primary),
        RestoreStep(StepKind.CHECK_ROLES, primary),
        RestoreStep(StepKind.CLEAR_INTENT),
        RestoreStep(StepKind.CONVERGE),
    ]


def data_volume_ordinal(volume: str, ref: Ref) -> int | None:
    """``voodu-<app>-data-<N>`` → N (None for any other volume)."""
    prefix = f"voodu-{ref.app_id}-data-"
    tail = volume.removeprefix(prefix)
    return int(tail) if volume.startswith(prefix) and tail.isascii() and tail.isdigit() else None
