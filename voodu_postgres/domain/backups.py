"""The pure core of the ``backups`` commands: names, formats, parsing, retention and the listing.

Owns, as wire contracts shared with the Go plugin (behavior.md §5.9–§5.16):

* backup IDs and file names (``bNNN-YYYYMMDDTHHMMSSZ.dump``; the ``.partial`` file pg_dump writes
  into and the ``.json`` metadata sidecar beside it), ID resolution with Go's error texts;
* container and job names — one naming everywhere: container ``<scope>-<name>.bk.bNNN`` (plus
  Voodu's ``.runid``), job ``<name>.bk.bNNN`` for create, cancel *and* delete (the Go plugin's
  cancel and delete aimed at ``<name>-backup-bNNN``, which capture never creates); the legacy
  ``-backup-`` prefix is recognised for listing only;
* retention: Go-style durations (``7d``, ``2w``, ``168h``, ``1h30m``) with Go's texts, the policy
  and its per-axis precedence (flag > app bucket > scope bucket), and the algorithm — where
  ``--keep N`` leaves exactly N complete backups counting the new one (the Go plugin's detached
  capture left N+1);
* the metadata sidecar (what a restore and a user need to know about a dump), the summary of
  ``pg_restore --list``, and the merged listing (files + containers + metadata → rows whose state
  comes from :func:`voodu_postgres.states.backup.classify`) in Go's JSON row shape plus ``verified``.

Pure: no I/O. Callers hand in directory listings, ``docker ps`` lines, file contents and ``now``.
Must not import docker, psycopg, subprocess or sqlite3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from voodu_postgres.domain.backup_status import PLUGIN_CLI, BackupObservation, BackupState, classify
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.keys import BACKUP_KEEP_KEY, BACKUP_MAX_AGE_KEY
from voodu_postgres.domain.naming import UNSCOPED_DIR, Ref, label_problem

CONTAINER_DIR = "/backups"  # where every pod and capture container mounts the host directory
DUMP_EXT = ".dump"
PARTIAL_EXT = ".partial"  # appended to the final name while pg_dump writes; renamed away on success
META_EXT = ".json"  # appended to the final name: the metadata sidecar
BACKUP_LABEL = ("voodu.role", "backup")
_TS_FORMAT = "%Y%m%dT%H%M%SZ"
_INT64_MAX = 2**63 - 1

# Go's regexp \d is ASCII-only; Python's is not, hence [0-9] throughout.
_ARTIFACT_RE = re.compile(r"b([0-9]+)-([0-9]{8}T[0-9]{6}Z)\.dump(\.partial|\.json)?")  # Go: ^b(\d+)-(\d{8}T\d{6}Z)\.dump$


class BackupError(CommandError):
    """A backup id that does not resolve, or a backup record that cannot be read (one line)."""


# -- Go formatting helpers ---------------------------------------------------------------------


def go_quote(text: str) -> str:
    """Go's ``%q`` / ``strconv.Quote``: the texts Go printed (``backup id "x"``, HCL labels)."""
    named = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v",
             "\\": r"\\", '"': r"\""}
    out = []
    for ch in text:
        code = ord(ch)
        if ch in named:
            out.append(named[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def go_atoi(text: str) -> int | None:
    """Go's ``strconv.Atoi`` (an optional sign, ASCII digits, int64 range), None when it errs."""
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    value = int(text)
    return value if -_INT64_MAX - 1 <= value <= _INT64_MAX else None


def format_size(size: int) -> str:
    """Go's formatSize: ``<n> B``, else one decimal with KB/MB/GB/TB (base 1024)."""
    for unit, power in (("TB", 4), ("GB", 3), ("MB", 2), ("KB", 1)):
        if size >= 1024**power:
            return f"{size / 1024**power:.1f} {unit}"
    return f"{size} B"


def rfc3339(moment: datetime) -> str:
    """Go's ``time.RFC3339`` for a UTC time at second precision: ``2026-01-01T00:00:00Z``."""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(moment: datetime) -> datetime:
    # A naive datetime would silently mean "the host's local time": refuse it in a pure module.
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware (UTC) time")
    return moment.astimezone(UTC)


def _parse_time(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BackupError(f"{what}: not a timestamp: {go_quote(text)}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- IDs and file names (§5.9) -----------------------------------------------------------------


def format_ref(backup_id: int) -> str:
    """Display id: ``b%03d`` below 1000, ``b<n>`` above (``b001``, ``b999``, ``b1000``)."""
    return f"b{backup_id:03d}"


def backup_filename(backup_id: int, at: datetime) -> str:
    """``bNNN-YYYYMMDDTHHMMSSZ.dump``, the timestamp in UTC."""
    return f"{format_ref(backup_id)}-{_utc(at).strftime(_TS_FORMAT)}{DUMP_EXT}"


def partial_filename(dump_filename: str) -> str:
    return dump_filename + PARTIAL_EXT


def metadata_filename(dump_filename: str) -> str:
    return dump_filename + META_EXT


def _parse_ts(text: str) -> datetime | None:
    # Built from the digits rather than strptime: strptime tolerates second=60/61 in places, Go does not.
    try:
        return datetime(int(text[0:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]), int(text[11:13]),
                        int(text[13:15]), tzinfo=UTC)
    except ValueError:
        return None


@dataclass(frozen=True)
class BackupFile:
    """One backup file in the host directory (Go's ``backupEntry``)."""

    id: int
    filename: str
    created_at: datetime
    size_bytes: int = 0
    kind: str = "dump"  # "dump", "partial" or "metadata"

    @property
    def ref(self) -> str:
        return format_ref(self.id)

    @property
    def dump_filename(self) -> str:
        """The final dump name this file belongs to (itself, for a dump)."""
        for ext in (PARTIAL_EXT, META_EXT):
            if self.filename.endswith(ext):
                return self.filename[: -len(ext)]
        return self.filename

    @property
    def state(self) -> BackupState:
        """A dump on disk is complete (what retention over plain files needs)."""
        return BackupState.COMPLETE


def parse_backup_filename(name: str) -> BackupFile | None:
    """A final dump's id and timestamp, or None for anything else (other files are ignored)."""
    found = parse_artifact(name)
    return found if found is not None and found.kind == "dump" else None


def parse_artifact(name: str, size_bytes: int = 0) -> BackupFile | None:
    """A dump, its ``.partial`` or its ``.json`` sidecar; None for unrelated names."""
    match = _ARTIFACT_RE.fullmatch(name)
    if not match:
        return None
    backup_id = go_atoi(match.group(1))
    created = _parse_ts(match.group(2))
    if backup_id is None or created is None:
        return None
    kind = {None: "dump", PARTIAL_EXT: "partial", META_EXT: "metadata"}[match.group(3)]
    return BackupFile(backup_id, name, created, size_bytes, kind)


def parse_listing(raw: str) -> list[BackupFile]:
    """Go's parseBackupListing: ``<name>\\t<size>`` lines (``find -printf '%f\\t%s\\n'`` inside a pod)
    → the dumps, sorted by id; unparseable lines are skipped."""
    out = []
    for line in raw.splitlines():
        name, sep, size_text = line.strip().partition("\t")
        size = go_atoi(size_text)
        parsed = parse_backup_filename(name) if sep and size is not None else None
        if parsed is not None and size is not None:
            out.append(BackupFile(parsed.id, name, parsed.created_at, size))
    return sorted(out, key=lambda f: f.id)


def next_backup_id(names: Iterable[str], container_ids: Iterable[int] = ()) -> int:
    """max + 1 over every id in use; gaps are never filled; 1 when there is none.

    Unlike Go (dumps only), the ``.partial`` and ``.json`` of a failed or running capture and the
    ids of backup containers count too, so a new capture never reuses a failed one's id and
    inherits its log or its metadata."""
    ids = [a.id for a in (parse_artifact(n) for n in names) if a is not None]
    return max([0, *ids, *container_ids]) + 1


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


_T = TypeVar("_T", bound=_HasId)


def parse_backup_id(typed: str, *, example: str = "b001") -> int:
    """The number in ``b1``/``b001``/``b0001`` (equivalent), with Go's texts (``logs`` says b008)."""
    if typed == "":
        raise BackupError(f"backup id required (e.g. {example})")
    if not typed.startswith("b"):
        raise BackupError(f"backup id {go_quote(typed)} must start with 'b' (e.g. {example})")
    # Digits only: Go's Atoi also took "b+1" and "b-1", which name no backup anyway.
    if not re.fullmatch(r"[0-9]+", typed[1:]) or go_atoi(typed[1:]) is None:
        raise BackupError(f"backup id {go_quote(typed)}: invalid number after 'b'")
    return int(typed[1:])


def resolve_backup(typed: str, backups: Sequence[_T], *, cli: str = PLUGIN_CLI) -> _T:
    """The backup ``typed`` names among ``backups`` (files or listing rows), with Go's errors;
    ``typed`` is echoed as typed."""
    wanted = parse_backup_id(typed)
    for backup in backups:
        if backup.id == wanted:
            return backup
    if not backups:
        raise BackupError(f"backup {typed} not found (no backups exist — run {cli}backups:capture first)")
    available = ", ".join(format_ref(b.id) for b in sorted(backups, key=lambda b: b.id))
    raise BackupError(f"backup {typed} not found (available: {available})")


# -- where backups live, and what runs them ----------------------------------------------------


def host_dir(ref: Ref) -> str:
    """``/opt/voodu/backups/<scope|_unscoped>/<name>``, bind-mounted at ``/backups`` everywhere."""
    return ref.backups_dir()


def refs_from_dirs(pairs: Iterable[tuple[str, str]]) -> list[Ref]:
    """Clusters discovered from ``<root>/<scopeDir>/<nameDir>`` directories, sorted by (scope, name)
    so unscoped ones (``_unscoped`` → scope "") come first; names that can't be a cluster are skipped."""
    out = set()
    for scope_dir, name_dir in pairs:
        scope = "" if scope_dir == UNSCOPED_DIR else scope_dir
        if label_problem(name_dir, "name") is None and (scope == "" or label_problem(scope, "scope") is None):
            out.add(Ref(scope, name_dir))
    return sorted(out)


def container_prefix(ref: Ref) -> str:
    """``<scope>-<name>.bk.`` (unscoped ``<name>.bk.``): every backup container starts with it."""
    return f"{ref.app_id}.bk."


def legacy_container_prefix(ref: Ref) -> str:
    """``<scope>-<name>-backup-``: containers from before the ``.bk.`` rename (listing only)."""
    return f"{ref.app_id}-backup-"


def container_prefixes(ref: Ref) -> list[str]:
    return [container_prefix(ref), legacy_container_prefix(ref)]


def container_name(ref: Ref, backup_id: int) -> str:
    """A direct (standalone) capture container: ``<scope>-<name>.bk.bNNN``. A Voodu job run of
    :func:`job_name` is ``<scope>-<name>.bk.bNNN.<runid>`` — the same prefix, so one scan finds both."""
    return container_prefix(ref) + format_ref(backup_id)


def job_name(ref: Ref, backup_id: int) -> str:
    """The Voodu job manifest ``<name>.bk.bNNN`` (in the cluster's scope): created by capture and
    targeted by cancel and delete alike."""
    return f"{ref.name}.bk.{format_ref(backup_id)}"


def parse_container_id(name: str, prefix: str) -> int | None:
    """The backup id in ``<prefix>bNNN``, ``<prefix>bNNN.<runid>`` or ``<prefix>bNNN-<runid>``;
    None for anything else (``b008abc``, another prefix, no digits)."""
    if not name.startswith(prefix):
        return None
    match = re.match(r"b([0-9]+)(?:$|[.-])", name[len(prefix):])
    return go_atoi(match.group(1)) if match else None


def parse_exit_code(status: str) -> int:
    """Go's parseExitCodeFromStatus: ``Exited (N) …`` → N; anything else → 0."""
    if not status.startswith("Exited"):
        return 0
    match = re.match(r"[^(]*\(([^)]*)\)", status)
    code = go_atoi(match.group(1)) if match else None
    return code if code is not None else 0


@dataclass(frozen=True)
class BackupContainer:
    """One backup container as ``docker ps -a --format '{{.Names}}\\t{{.State}}\\t{{.Status}}'`` shows it."""

    id: int
    name: str
    state: str
    status: str = ""
    legacy: bool = False

    @property
    def exit_code(self) -> int | None:
        return parse_exit_code(self.status) if self.state in ("exited", "dead") else None

    @property
    def alive(self) -> bool:
        return BackupObservation(container_state=self.state).alive


def backup_container(ref: Ref, name: str, state: str, status: str = "") -> BackupContainer | None:
    """A container of ``ref``'s backups (current or legacy prefix), or None."""
    for prefix in container_prefixes(ref):
        backup_id = parse_container_id(name, prefix)
        if backup_id is not None:
            return BackupContainer(backup_id, name, state, status, legacy=prefix != container_prefix(ref))
    return None


def parse_container_lines(ref: Ref, raw: str) -> list[BackupContainer]:
    """``docker ps -a`` lines (names, state, status; one scan per prefix, concatenated) → ``ref``'s
    backup containers, de-duplicated by name."""
    seen: dict[str, BackupContainer] = {}
    for line in raw.splitlines():
        parts = line.strip().split("\t", 2)
        if len(parts) < 3:
            continue
        found = backup_container(ref, *parts)
        if found is not None and found.name not in seen:
            seen[found.name] = found
    return list(seen.values())


def is_http_url(target: str) -> bool:
    """restore's ``<id|url>``: only http(s) is downloaded; anything else (s3://, file://) is an id."""
    return target.startswith(("http://", "https://"))


def source_label(source: int, primary: int) -> str:
    """How messages name the pod a dump came from: ``primary`` or ``replica K``."""
    return "primary" if source == primary else f"replica {source}"


# -- durations (§5.16): Go's ParseDuration and Duration.String ---------------------------------

_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
       "h": 3600 * 10**9}
_DAY_NS = 24 * 3600 * 10**9


def go_parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds, raising ValueError with Go's texts."""
    orig, s, neg = text, text, False
    invalid = f"time: invalid duration {go_quote(orig)}"
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if s == "":
        raise ValueError(invalid)
    total = 0
    while s:
        match = re.match(r"([0-9]*)(\.([0-9]*))?", s)
        assert match is not None  # the pattern can match the empty string
        whole, frac = match.group(1), match.group(3)
        if not whole and not frac:  # neither digits before nor after a '.'
            raise ValueError(invalid)
        s = s[match.end():]
        unit_match = re.match(r"[^0-9.]+", s)
        if not unit_match:
            raise ValueError(f"time: missing unit in duration {go_quote(orig)}")
        unit = unit_match.group(0)
        s = s[len(unit):]
        if unit not in _NS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {go_quote(orig)}")
        value = int(whole or "0") * _NS[unit]
        if frac:
            # Go scales the fraction in float64 and truncates.
            value += int(int(frac[:18]) * (_NS[unit] / 10 ** len(frac[:18])))
        total += value
        if total > 2**63:
            raise ValueError(invalid)
    if not neg and total > _INT64_MAX:
        raise ValueError(invalid)
    return -total if neg else total


def _go_frac(value: int, prec: int) -> tuple[str, int]:
    digits, printed = "", False
    for _ in range(prec):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        value //= 10
    return ("." + digits if printed else ""), value


def go_duration_ns(ns: int) -> str:
    """Go's ``Duration.String`` of a nanosecond count: ``0s``, ``52s``, ``1m0s``, ``1h30m0s``, ``1.5s``, ``500ms``."""
    neg, u = ns < 0, abs(ns)
    if u == 0:
        return "0s"
    if u < 10**9:
        prec, unit = (0, "ns") if u < 1_000 else (3, "µs") if u < 1_000_000 else (6, "ms")
        frac, whole = _go_frac(u, prec)
        text = f"{whole}{frac}{unit}"
    else:
        frac, secs = _go_frac(u, 9)
        text = f"{secs % 60}{frac}s"
        minutes = secs // 60
        if minutes:
            text = f"{minutes % 60}m" + text
            if minutes // 60:
                text = f"{minutes // 60}h" + text
    return ("-" if neg else "") + text


def go_duration(delta: timedelta) -> str:
    """Go's ``Duration.String`` of a timedelta (microsecond resolution)."""
    return go_duration_ns((delta // timedelta(microseconds=1)) * 1_000)


def round_to_second(delta: timedelta) -> timedelta:
    """Go's ``Duration.Round(time.Second)``: halves away from zero."""
    micros = delta // timedelta(microseconds=1)
    sign, micros = (-1 if micros < 0 else 1), abs(micros)
    return timedelta(seconds=sign * ((micros + 500_000) // 1_000_000))


def parse_retention_duration(text: str) -> timedelta:
    """``7d``, ``2w`` or a Go duration (``168h``, ``90m``, ``1h30m``, ``1.5h``), ≥ 0; ValueError with
    Go's texts. One unit form only: ``7d12h`` is refused (not a duration)."""
    s = text.strip()
    if s == "":
        raise ValueError("empty duration")
    for suffix, days, name in (("d", 1, "days"), ("w", 7, "weeks")):
        if s.endswith(suffix):
            count = go_atoi(s[:-1])
            # Go would overflow past ~292 years; refuse that rather than wrap.
            if count is None or count * days * _DAY_NS > _INT64_MAX:
                raise ValueError(f"invalid {name} value {go_quote(s)}")
            if count < 0:
                raise ValueError("duration must be >= 0")
            return timedelta(days=count * days)
    try:
        ns = go_parse_duration(s)
    except ValueError as err:
        raise ValueError(f"not a duration (try 7d, 2w, or Go duration like 168h): {err}") from err
    if ns < 0:
        raise ValueError("duration must be >= 0")
    return timedelta(microseconds=ns // 1_000)  # sub-microsecond precision is dropped


def format_duration_short(delta: timedelta) -> str:
    """Go's formatDurationShort: ``Nw`` for whole weeks, ``Nd`` for whole days, else Go's text; ``0``."""
    if delta <= timedelta(0):
        return "0"
    if delta % timedelta(weeks=1) == timedelta(0):
        return f"{delta // timedelta(weeks=1)}w"
    if delta % timedelta(days=1) == timedelta(0):
        return f"{delta.days}d"
    return go_duration(delta)


def keep_flag(value: str | None, flag: str = "--keep") -> int:
    """The value of ``--keep`` with Go's texts (digits only: ``-1`` is not a number)."""
    if value is None:
        raise UsageError(f"{flag} requires an integer")
    if not re.fullmatch(r"[0-9]+", value):
        raise UsageError(f"{flag} {go_quote(value)}: not a number: {go_quote(value)}")
    return int(value)


def max_age_flag(value: str | None, flag: str = "--max-age") -> timedelta:
    """The value of ``--max-age``/``--retention`` with Go's texts."""
    if value is None:
        raise UsageError(f"{flag} requires a duration (e.g. 7d, 168h)")
    try:
        return parse_retention_duration(value)
    except ValueError as err:
        raise UsageError(f"{flag} {go_quote(value)}: {err}") from err


# -- retention (§5.16) -------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep the ``keep`` newest complete backups, and none older than ``max_age``; 0 = that axis off."""

    keep: int = 0
    max_age: timedelta = timedelta(0)

    @property
    def is_zero(self) -> bool:
        return self.keep <= 0 and self.max_age <= timedelta(0)

    def __str__(self) -> str:
        parts = ([f"keep {self.keep}"] if self.keep > 0 else []) + (
            [f"max-age {format_duration_short(self.max_age)}"] if self.max_age > timedelta(0) else [])
        return ", ".join(parts) or "(none)"

    def over(self, base: RetentionPolicy) -> RetentionPolicy:
        """This policy's set (> 0) axes over ``base``'s: how a flag layers on the buckets (so
        ``--keep 0`` cannot switch a bucket's BACKUP_KEEP off, as in Go)."""
        return RetentionPolicy(self.keep if self.keep > 0 else base.keep,
                               self.max_age if self.max_age > timedelta(0) else base.max_age)


def _bucket_axes(bucket: Mapping[str, str], where: str) -> tuple[int | None, timedelta | None, list[str]]:
    """One bucket's axes (None = not set there) and the warnings for values that can't be used."""
    keep: int | None = None
    max_age: timedelta | None = None
    warnings = []
    raw = bucket.get(BACKUP_KEEP_KEY, "").strip()
    if raw:
        number = go_atoi(raw)
        if number is None or number < 0:
            warnings.append(f"warn: ignoring {BACKUP_KEEP_KEY}={go_quote(raw)} in {where}: not a non-negative integer")
        else:
            keep = number
    raw = bucket.get(BACKUP_MAX_AGE_KEY, "").strip()
    if raw:
        try:
            max_age = parse_retention_duration(raw)
        except ValueError as err:
            warnings.append(f"warn: ignoring {BACKUP_MAX_AGE_KEY}={go_quote(raw)} in {where}: {err}")
    return keep, max_age, warnings


def retention_from_buckets(flags: RetentionPolicy, app: Mapping[str, str],
                           scope: Mapping[str, str] | None = None) -> tuple[RetentionPolicy, list[str]]:
    """The effective policy, per axis: a flag (> 0), else the app bucket's key, else the scope
    bucket's, else off. A key that is set (even to 0) in the app bucket hides the scope's; blank or
    unusable values count as unset (and warn). Pass an already-merged bucket as ``app`` alone."""
    app_keep, app_age, warnings = _bucket_axes(app, "config bucket")
    scope_keep, scope_age, more = _bucket_axes(scope or {}, "scope config bucket")
    keep = app_keep if app_keep is not None else scope_keep
    max_age = app_age if app_age is not None else scope_age
    base = RetentionPolicy(keep or 0, max_age or timedelta(0))
    return flags.over(base), warnings + more


class _Retainable(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def created_at(self) -> datetime | None: ...

    @property
    def state(self) -> BackupState: ...


_R = TypeVar("_R", bound=_Retainable)


def apply_retention(entries: Sequence[_R], policy: RetentionPolicy, now: datetime) -> list[_R]:
    """What ``policy`` deletes at ``now``, newest first; ``entries`` is not mutated.

    Complete backups are ranked newest-first by their timestamp (not their id); rank ≥ ``keep`` or
    age strictly over ``max_age`` is deleted — so run it *after* the new backup landed, with it in
    ``entries``, and exactly ``keep`` remain, the new one included. A running capture is never
    deleted and never counts. A failed or cancelled record (only its log/metadata/partial) goes when
    ``max_age`` dooms it, or once ``keep`` complete backups are newer than it — so it neither pushes
    a good backup out nor piles up forever."""
    if policy.is_zero:
        return []
    now = _utc(now)
    dated = [e for e in entries if e.created_at is not None
             and e.state not in (BackupState.RUNNING, BackupState.DELETED)]
    newest_first = sorted(dated, key=lambda e: (e.created_at, e.id), reverse=True)
    doomed = []
    complete_seen = 0
    for entry in newest_first:
        assert entry.created_at is not None
        too_old = policy.max_age > timedelta(0) and now - _utc(entry.created_at) > policy.max_age
        over_count = policy.keep > 0 and complete_seen >= policy.keep
        if entry.state is BackupState.COMPLETE:
            complete_seen += 1
        if too_old or over_count:
            doomed.append(entry)
    return doomed


# -- metadata sidecar --------------------------------------------------------------------------

METADATA_SCHEMA = 1


@dataclass(frozen=True)
class Verification:
    """The outcome of ``backups:verify``: a restore into a throw-away server, row counts compared."""

    at: datetime
    duration_s: float
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"at": rfc3339(self.at), "duration_s": self.duration_s, "ok": self.ok, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verification:
        return cls(at=_parse_time(_want(data, "at", str, "verification"), "verification.at"),
                   duration_s=float(_want(data, "duration_s", (int, float), "verification")),
                   ok=_want(data, "ok", bool, "verification"),
                   detail=_want(data, "detail", str, "verification", default=""))


@dataclass(frozen=True)
class BackupMetadata:
    """The ``bNNN-….dump.json`` sidecar: what a user and a restore need to know about a dump.

    Written complete by a successful capture (after the rename), as ``failed``/``cancelled`` with a
    reason when a capture ends without a dump, and updated by ``verify``. ``status`` is the recorded
    *outcome*; the live state always comes from :func:`classify`."""

    id: int
    file: str
    status: str = BackupState.COMPLETE  # complete | failed | cancelled (running: written at start, if at all)
    reason: str | None = None  # why it failed or was cancelled
    source_pod: str | None = None  # container name of the pod dumped from
    source_ordinal: int | None = None
    source_role: str | None = None  # primary | standby
    server_version: str | None = None  # e.g. "15.5"
    database: str | None = None
    user: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    duration_s: float | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    format: str | None = None  # pg_dump -F: custom | directory | …
    compression: str | None = None  # e.g. gzip:6
    toc: dict[str, int] = field(default_factory=dict)  # {"table_data": 3, "table": 3, "index": 2, …}
    table_rows: dict[str, int] = field(default_factory=dict)  # {"public.accounts": 100, …}
    table_rows_skipped: str | None = None  # why table_rows is empty when the tables were too big to count
    verification: Verification | None = None
    schema: int = METADATA_SCHEMA

    @property
    def ref(self) -> str:
        return format_ref(self.id)

    @property
    def server_major(self) -> int | None:
        return server_major(self.server_version) if self.server_version else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "id": self.ref, "file": self.file, "status": str(self.status),
            "reason": self.reason,
            "source": {"pod": self.source_pod, "ordinal": self.source_ordinal, "role": self.source_role},
            "server_version": self.server_version, "database": self.database, "user": self.user,
            "started": rfc3339(self.started) if self.started else None,
            "finished": rfc3339(self.finished) if self.finished else None,
            "duration_s": self.duration_s, "size_bytes": self.size_bytes, "sha256": self.sha256,
            "format": self.format, "compression": self.compression,
            "toc": dict(sorted(self.toc.items())), "table_rows": dict(sorted(self.table_rows.items())),
            "table_rows_skipped": self.table_rows_skipped,
            "verification": self.verification.to_dict() if self.verification else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BackupMetadata:
        """Parse a sidecar (unknown keys ignored, for newer writers); BackupError on anything else."""
        try:
            data = json.loads(text)
        except ValueError as err:
            raise BackupError(f"backup metadata: not JSON: {err}") from err
        if not isinstance(data, dict):
            raise BackupError("backup metadata: not a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackupMetadata:
        backup_id = parse_backup_id(_want(data, "id", str, "backup metadata"))
        status = _want(data, "status", str, "backup metadata", default=BackupState.COMPLETE)
        if status not in (BackupState.RUNNING, BackupState.COMPLETE, BackupState.FAILED, BackupState.CANCELLED):
            raise BackupError(f"backup metadata: status {go_quote(status)} is not one of running, complete, "
                              "failed, cancelled")
        source = _want(data, "source", dict, "backup metadata", default={})
        verification = _want(data, "verification", dict, "backup metadata", default=None)
        started = _want(data, "started", str, "backup metadata", default=None)
        finished = _want(data, "finished", str, "backup metadata", default=None)
        duration = _want(data, "duration_s", (int, float), "backup metadata", default=None)
        return cls(
            id=backup_id, file=_want(data, "file", str, "backup metadata"), status=status,
            reason=_want(data, "reason", str, "backup metadata", default=None),
            source_pod=_want(source, "pod", str, "backup metadata: source", default=None),
            source_ordinal=_want(source, "ordinal", int, "backup metadata: source", default=None),
            source_role=_want(source, "role", str, "backup metadata: source", default=None),
            server_version=_want(data, "server_version", str, "backup metadata", default=None),
            database=_want(data, "database", str, "backup metadata", default=None),
            user=_want(data, "user", str, "backup metadata", default=None),
            started=_parse_time(started, "backup metadata: started") if started else None,
            finished=_parse_time(finished, "backup metadata: finished") if finished else None,
            duration_s=float(duration) if duration is not None else None,
            size_bytes=_want(data, "size_bytes", int, "backup metadata", default=None),
            sha256=_want(data, "sha256", str, "backup metadata", default=None),
            format=_want(data, "format", str, "backup metadata", default=None),
            compression=_want(data, "compression", str, "backup metadata", default=None),
            toc=_int_map(_want(data, "toc", dict, "backup metadata", default={}), "toc"),
            table_rows=_int_map(_want(data, "table_rows", dict, "backup metadata", default={}), "table_rows"),
            table_rows_skipped=_want(data, "table_rows_skipped", str, "backup metadata", default=None),
            verification=Verification.from_dict(verification) if verification else None,
            schema=_want(data, "schema", int, "backup metadata", default=METADATA_SCHEMA),
        )


_MISSING = object()


def _want(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
          default: Any = _MISSING) -> Any:
    value = data.get(key, _MISSING)
    if value is _MISSING or (value is None and default is not _MISSING):
        if default is _MISSING:
            raise BackupError(f"{where}: {key} missing")
        return default
    # bool is an int in Python; a JSON true is never a count
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
        raise BackupError(f"{where}: {key} has the wrong type ({type(value).__name__})")
    return value


def _int_map(data: Mapping[str, Any], where: str) -> dict[str, int]:
    for key, value in data.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise BackupError(f"backup metadata: {where}.{key} is not an integer")
    return {str(k): int(v) for k, v in data.items()}


def server_major(version: str) -> int | None:
    """The major of a PostgreSQL version string: ``15.5`` → 15, ``16beta1`` → 16,
    ``15.5 (Debian 15.5-1.pgdg120+1)`` → 15; ``9.6.24`` → 9 (pre-10 majors compare on the first
    number only, which is enough to refuse a newer dump)."""
    match = re.match(r"\s*([0-9]+)", version)
    return int(match.group(1)) if match else None


#: How long a dispatched Voodu capture job may go without a container before its backup is
#: recorded as failed: the controller reports a run_job failure only in its own log, and a job
#: that never runs must not list as running for ever.
JOB_START_TIMEOUT = timedelta(minutes=10)


def job_never_started(meta: BackupMetadata, *, has_container: bool, now: datetime) -> bool:
    """A capture recorded as dispatched (running) whose job has shown no container for longer
    than :data:`JOB_START_TIMEOUT`."""
    return (meta.status == BackupState.RUNNING and not has_container and meta.started is not None
            and now - meta.started > JOB_START_TIMEOUT)


def row_count_mismatches(expected: Mapping[str, int], restored: Mapping[str, int]) -> list[str]:
    """What ``verify`` reports when a restore's per-table row counts differ from the metadata's
    (one line each, sorted); empty when they agree. Tables only in ``restored`` are not errors."""
    problems = []
    for table in sorted(expected):
        if table not in restored:
            problems.append(f"{table}: missing after restore (expected {expected[table]} rows)")
        elif restored[table] != expected[table]:
            problems.append(f"{table}: {restored[table]} rows restored, {expected[table]} expected")
    return problems


# -- pg_restore --list (§5.12) -----------------------------------------------------------------

#: TOC descriptions of more than one word (pg_dump's ``desc`` strings). The listing gives no
#: delimiter between the description and the object's tags, so known ones are matched longest first.
_MULTIWORD_DESCS = sorted((tuple(d.split()) for d in (
    "TABLE DATA", "TABLE ATTACH", "INDEX ATTACH", "SEQUENCE SET", "SEQUENCE OWNED BY", "FK CONSTRAINT",
    "CHECK CONSTRAINT", "DEFAULT ACL", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "LARGE OBJECT",
    "BLOB METADATA", "EVENT TRIGGER", "FOREIGN TABLE", "FOREIGN DATA WRAPPER", "USER MAPPING",
    "TEXT SEARCH PARSER", "TEXT SEARCH DICTIONARY", "TEXT SEARCH TEMPLATE", "TEXT SEARCH CONFIGURATION",
    "OPERATOR CLASS", "OPERATOR FAMILY", "SHELL TYPE", "PROCEDURAL LANGUAGE", "DATABASE PROPERTIES",
    "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY", "ACCESS METHOD",
    "SUBSCRIPTION TABLE")), key=len, reverse=True)


@dataclass(frozen=True)
class TocSummary:
    """What ``pg_restore --list`` says about a dump: entry counts by kind, and its header."""

    counts: dict[str, int] = field(default_factory=dict)  # "table_data", "table", "index", "sequence", …
    server_version: str | None = None  # "Dumped from database version"
    dump_version: str | None = None  # "Dumped by pg_dump version"
    format: str | None = None  # "Format: CUSTOM"
    compression: str | None = None

    @property
    def entries(self) -> int:
        return sum(self.counts.values())

    def count(self, kind: str) -> int:
        return self.counts.get(kind, 0)

    def sentence(self) -> str:
        """The line restore prints before it starts (Go's texts), plus the schema-only warning."""
        if self.entries == 0:
            return "dump TOC: empty (no entries — restore will be a no-op)"
        text = f"dump TOC: {self.count('table_data')} table data block(s)"
        for kind, label in (("table", "table(s)"), ("index", "index(es)"), ("sequence", "sequence(s)")):
            if self.count(kind):
                text += f", {self.count(kind)} {label}"
        if self.count("table_data") == 0 and self.count("table") > 0:
            text += ("\n⚠  no TABLE DATA blocks — dump appears to be schema-only. "
                     "Restore will recreate empty tables.")
        return text


def _desc_of(tokens: list[str]) -> str:
    for desc in _MULTIWORD_DESCS:
        if tuple(tokens[: len(desc)]) == desc:
            return " ".join(desc)
    return tokens[0]


def parse_toc(listing: str) -> TocSummary:
    """Summarise ``pg_restore --list``: blank and ``;`` lines are skipped (the ``;`` header is read
    for versions), each entry ``<id>; <oid> <oid> <DESC> <tags…>`` counts under its description
    (``table_data``, ``sequence_set``, …). Unlike Go's 4th-token rule, ``SEQUENCE SET`` and
    ``SEQUENCE OWNED BY`` are not sequences and ``INDEX ATTACH`` is not an index."""
    counts: dict[str, int] = {}
    header: dict[str, str] = {}
    for line in listing.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(";"):
            key, sep, value = stripped.lstrip(";").strip().partition(":")
            if sep:
                header[key.strip()] = value.strip()
            continue
        tokens = stripped.split()
        if len(tokens) < 4:
            continue
        kind = _desc_of(tokens[3:]).lower().replace(" ", "_")
        counts[kind] = counts.get(kind, 0) + 1
    return TocSummary(counts=counts, server_version=header.get("Dumped from database version"),
                      dump_version=header.get("Dumped by pg_dump version"), format=header.get("Format"),
                      compression=header.get("Compression"))


# -- the listing (§5.10) -----------------------------------------------------------------------


@dataclass(frozen=True)
class BackupRow:
    """One line of ``backups``: a backup's derived state and what is known about it."""

    id: int
    state: BackupState
    filename: str = ""  # the file on disk: the dump, or the .partial of a running/failed capture
    created_at: datetime | None = None
    size_bytes: int = 0
    verified: bool | None = None  # the last verification's verdict; None = never verified
    reason: str | None = None  # a failed or cancelled capture's recorded reason
    container: str | None = None  # the capture container (for logs)
    metadata: BackupMetadata | None = None

    @property
    def ref(self) -> str:
        return format_ref(self.id)

    def to_json(self) -> dict[str, Any]:
        """Go's row (``id``, ``status``, ``filename`` if any, ``created_at`` if known, ``size_bytes``)
        plus ``verified`` (true, false, or null when never verified)."""
        row: dict[str, Any] = {"id": self.ref, "status": str(self.state)}
        if self.filename:
            row["filename"] = self.filename
        if self.created_at is not None:
            row["created_at"] = rfc3339(self.created_at)
        row["size_bytes"] = self.size_bytes
        row["verified"] = self.verified
        return row


def _pick(containers: Sequence[BackupContainer]) -> BackupContainer:
    # Several containers for one id (re-runs, the legacy prefix): the live one speaks, then the
    # current naming, then a failure (so it is not hidden by an older clean exit).
    return max(containers, key=lambda c: (c.alive, not c.legacy, bool(c.exit_code), c.name))


def merge_listing(files: Iterable[tuple[str, int]], containers: Iterable[BackupContainer] = (),
                  metadata: Mapping[int, BackupMetadata] | None = None) -> list[BackupRow]:
    """Rows sorted by id from the host directory (``(name, size)`` pairs), the backup containers and
    the parsed sidecars; each row's state comes from :func:`classify`. Rows that classify as
    deleted (an exited-0 container whose file is gone) are left out, as in Go."""
    metadata = metadata or {}
    dumps, partials, sidecars = _artifacts_by_kind(files)
    by_id: dict[int, list[BackupContainer]] = {}
    for seen in containers:
        by_id.setdefault(seen.id, []).append(seen)

    rows = []
    for backup_id in sorted(set(dumps) | set(partials) | set(sidecars) | set(by_id) | set(metadata)):
        container = _pick(by_id[backup_id]) if backup_id in by_id else None
        row = _listing_row(backup_id, dumps.get(backup_id), partials.get(backup_id), sidecars.get(backup_id),
                           container, metadata.get(backup_id))
        if row is not None:
            rows.append(row)
    return rows


def _artifacts_by_kind(files: Iterable[tuple[str, int]]) -> tuple[dict[int, BackupFile], dict[int, BackupFile],
                                                                  dict[int, BackupFile]]:
    """The backup files of a directory listing by id: (dumps, partials, metadata sidecars)."""
    dumps: dict[int, BackupFile] = {}
    partials: dict[int, BackupFile] = {}
    sidecars: dict[int, BackupFile] = {}
    for name, size in files:
        found = parse_artifact(name, size)
        if found is not None:
            {"dump": dumps, "partial": partials, "metadata": sidecars}[found.kind][found.id] = found
    return dumps, partials, sidecars


def _listing_row(backup_id: int, dump: BackupFile | None, partial: BackupFile | None, sidecar: BackupFile | None,
                 container: BackupContainer | None, meta: BackupMetadata | None) -> BackupRow | None:
    """One backup's row from what was found of it; None when it classifies as deleted."""
    state = classify(BackupObservation(
        container_state=container.state if container else None,
        exit_code=container.exit_code if container else None,
        dump_exists=dump is not None, partial_exists=partial is not None,
        recorded=meta.status if meta else None))
    if state is BackupState.DELETED:
        return None
    on_disk = dump or partial
    dated = on_disk or sidecar
    created = dated.created_at if dated else _recorded_start(meta)
    size = on_disk.size_bytes if on_disk else _recorded_size(meta)
    verified = meta.verification.ok if meta and meta.verification else None
    return BackupRow(backup_id, state, on_disk.filename if on_disk else "", created, size,
                     verified if state is BackupState.COMPLETE else None, _row_reason(state, meta, container),
                     container.name if container else None, meta)


def _recorded_start(meta: BackupMetadata | None) -> datetime | None:
    """When the sidecar says the capture started (no file on disk to date it)."""
    return meta.started if meta and meta.started else None


def _recorded_size(meta: BackupMetadata | None) -> int:
    """The sidecar's size (no file on disk to measure)."""
    return (meta.size_bytes or 0) if meta else 0


def _row_reason(state: BackupState, meta: BackupMetadata | None, container: BackupContainer | None) -> str | None:
    """Why a failed or cancelled capture ended: the recorded reason, else a failed container's exit code."""
    reason = meta.reason if meta and state in (BackupState.FAILED, BackupState.CANCELLED) else None
    if state is BackupState.FAILED and reason is None and container and container.exit_code:
        reason = f"exit code {container.exit_code}"
    return reason


def _verified_cell(row: BackupRow) -> str:
    if row.verified is None:
        return "—"
    return "yes" if row.verified else "FAILED"


def render_listing(ref: Ref, rows: Sequence[BackupRow], *, cli: str = PLUGIN_CLI) -> str:
    """The single-cluster text (Go's layout, plus a Verified column), ending with a blank line."""
    lines = [f"=== Backups for {ref}", ""]
    if not rows:
        return "\n".join([*lines, "  (no backups yet)", f"  → {cli}backups:capture {ref}", "", ""])
    lines.append("  ID     Status     Created at            Size       Verified")
    for row in rows:
        created = rfc3339(row.created_at) if row.created_at else "—"
        size = format_size(row.size_bytes) if row.size_bytes > 0 else "—"
        lines.append(f"  {row.ref:<6} {row.state:<10} {created:<21} {size:<10} {_verified_cell(row)}")
    return "\n".join([*lines, "", ""])


def render_listing_many(clusters: Sequence[tuple[Ref, Sequence[BackupRow]]], *, scope: str | None = None,
                        cli: str = PLUGIN_CLI) -> str:
    """Every cluster's block, separated by a blank line (``backups`` with no argument, or a scope)."""
    if not clusters:
        if scope is not None:
            return f"=== Backups for scope {scope}\n\n  (no postgres backups under this scope on this host)\n\n"
        return ("(no postgres clusters with backups found on this host)\n\n"
                f"Capture one with: {cli}backups:capture <scope>/<name>\n")
    return "\n".join(render_listing(ref, rows, cli=cli) for ref, rows in clusters)


def listing_json(ref: Ref, rows: Sequence[BackupRow]) -> dict[str, Any]:
    """``{"backups": [row…], "ref": "<ref>"}`` (keys in Go's sorted-map order)."""
    return {"backups": [r.to_json() for r in rows], "ref": str(ref)}


def listing_json_many(clusters: Sequence[tuple[Ref, Sequence[BackupRow]]]) -> dict[str, Any]:
    """``{"<ref>": [row…], …}`` sorted by ref (an empty scope gives ``{}``)."""
    return {str(ref): [r.to_json() for r in rows] for ref, rows in sorted(clusters, key=lambda c: str(c[0]))}


def progress_line(elapsed: timedelta, written: int, estimate: int) -> str:
    """Go's formatProgressLine: ``  [12s] 68.0 MB written (~28% of estimate)``; the suffix is left
    out when there is no estimate or the percentage is ≤ 0 or > 200."""
    text = f"  [{go_duration(round_to_second(elapsed))}] {format_size(written)} written"
    if estimate <= 0:
        return text
    pct = written * 100 / estimate
    return text if pct <= 0 or pct > 200 else f"{text} (~{pct:.0f}% of estimate)"
