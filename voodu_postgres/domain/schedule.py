"""Backup schedules: the record, cron validation, when a run is due, and the Voodu cronjob text.

Standalone, a schedule is one bucket key (``BACKUP_SCHEDULE``, a JSON object) that
``reconcile --watch`` reads on every tick: :func:`due_slot` decides from the cron, the last run and
an injected ``now`` whether to start a capture — and a run missed while the watcher was down runs
*once* when it comes back, not once per missed slot. Under Voodu, ``backups:schedule`` prints the
cronjob HCL of behavior.md §5.17 instead (a Voodu cronjob is declarative, so the HCL is the truth),
with the Go defect fixed: an unscoped cluster gets ``cronjob "<name>-backup"`` (one label), not
``cronjob "" "<name>-backup"``.

Times are UTC, as Voodu's cron scheduler's. Pure: no clock (``now`` is passed in) and no I/O;
must not import docker, psycopg, subprocess or sqlite3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import CroniterBadDateError, CroniterError, croniter

from voodu_postgres.domain.backup_status import PLUGIN_CLI
from voodu_postgres.domain.backups import (
    RetentionPolicy,
    format_duration_short,
    go_quote,
    parse_retention_duration,
    rfc3339,
)
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.keys import SCHEDULE_KEY
from voodu_postgres.domain.naming import Ref

DEFAULT_CRON = "0 3 * * *"  # daily at 03:00 UTC, the Go plugin's default
CLI_IMAGE = "ghcr.io/clowk/voodu-cli:latest"

_MONTHS = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
_DAYS = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


class ScheduleError(CommandError):
    """A stored schedule that cannot be read (one line, naming the key)."""


def validate_cron(expr: str) -> str:
    """The expression with its whitespace normalised, or :class:`UsageError` (one line).

    Only standard 5-field cron (numbers, ``* , - /`` and month/day names) is accepted: it is what
    Voodu's cronjobs take, so a schedule means the same standalone and under Voodu. croniter's
    extensions (seconds, ``@daily``, ``L``, ``#``, ``H``) and expressions that never fire are refused."""
    fields = expr.split()
    if len(fields) != 5:
        raise UsageError(f"cron {go_quote(expr)}: need 5 fields ({' '.join(_FIELDS)}), got {len(fields)}")
    for index, text in enumerate(fields):
        if not re.fullmatch(r"[0-9A-Za-z*,/-]+", text):
            raise UsageError(f"cron {go_quote(expr)}: {_FIELDS[index]} {go_quote(text)}: only digits, names "
                             "and * , - / are allowed")
        names = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
        allowed = _MONTHS if index == 3 else _DAYS if index == 4 else set()
        if names - allowed:
            raise UsageError(f"cron {go_quote(expr)}: {_FIELDS[index]} {go_quote(text)}: "
                             f"{go_quote(sorted(names - allowed)[0])} is not standard cron")
    normal = " ".join(fields)
    try:
        croniter(normal, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError as exc:
        raise UsageError(f"cron {go_quote(expr)}: it never fires") from exc
    except (CroniterError, ValueError) as err:
        reason = re.sub(r"^\[[^\]]*\]\s*(is\s+)?", "", str(err)) or "not a valid expression"
        raise UsageError(f"cron {go_quote(expr)}: {reason}") from err
    return normal


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware (UTC) time")
    return moment.astimezone(UTC)


def next_fire(cron: str, after: datetime) -> datetime:
    """The first slot strictly after ``after`` (what ``info`` shows as the next run)."""
    result: datetime = croniter(cron, _utc(after)).get_next(datetime)
    return result.astimezone(UTC)


def previous_fire(cron: str, at: datetime) -> datetime:
    """The latest slot at or before ``at``."""
    # croniter's get_prev is strict: start a second past ``at`` (floored to the second, so a slot
    # just after a fractional ``at`` is not taken) and a slot exactly at ``at`` counts.
    moment = _utc(at).replace(microsecond=0)
    result: datetime = croniter(cron, moment + timedelta(seconds=1)).get_prev(datetime)
    return result.astimezone(UTC)


def due_slot(cron: str, last_run: datetime | None, now: datetime, *, since: datetime | None = None) -> datetime | None:
    """The slot a capture should start for now, or None when nothing is due.

    Due when a slot fell after the last run (or, with no run yet, after ``since`` — when the
    schedule was recorded: a new schedule waits for its first slot). Only the latest slot is
    returned however many were missed, so a watcher that was down for days runs one capture when it
    comes back, then follows the cron again. With neither a last run nor ``since`` (a record
    written by hand), the latest slot is due at once: one catch-up run.

    ``last_run`` is when the latest capture of this cluster started (a manual one counts: a backup
    already newer than the slot satisfies it; a failed one counts too, so a failing capture is not
    retried every tick but at the next slot)."""
    now = _utc(now)
    baseline = last_run if last_run is not None else since
    if baseline is not None and next_fire(cron, baseline) > now:
        return None
    slot = previous_fire(cron, now)
    if baseline is not None and slot <= _utc(baseline):
        return None  # defensive: a baseline in the future (clock skew) never triggers
    return slot


def is_due(cron: str, last_run: datetime | None, now: datetime, *, since: datetime | None = None) -> bool:
    return due_slot(cron, last_run, now, since=since) is not None


@dataclass(frozen=True)
class BackupSchedule:
    """A cluster's backup schedule: when, from which pod, and the retention its captures apply
    (like capture's ``--keep``/``--max-age`` flags: over the bucket's, per axis)."""

    cron: str = DEFAULT_CRON
    from_replica: int | None = None  # None = the current primary
    keep: int = 0
    max_age: timedelta = timedelta(0)
    since: datetime | None = None  # when the schedule was recorded: the first run waits for a slot after it

    @property
    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(self.keep, self.max_age)

    def to_dict(self) -> dict[str, Any]:
        return {"cron": self.cron, "from_replica": self.from_replica, "keep": self.keep,
                "max_age": format_duration_short(self.max_age), "since": rfc3339(self.since) if self.since else None}

    def to_json(self) -> str:
        """The bucket value: compact, sorted keys (stable, so an unchanged schedule writes nothing)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> BackupSchedule:
        """Parse the bucket value; :class:`ScheduleError` (one line) when it can't be used."""
        where = f"{SCHEDULE_KEY} in config bucket"
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ScheduleError(f"{where}: not JSON: {err}") from err
        if not isinstance(data, dict):
            raise ScheduleError(f"{where}: not a JSON object")
        cron = data.get("cron", DEFAULT_CRON)
        if not isinstance(cron, str):
            raise ScheduleError(f"{where}: cron must be a string")
        try:
            cron = validate_cron(cron)
        except UsageError as err:
            raise ScheduleError(f"{where}: {err}") from err
        replica = data.get("from_replica")
        keep = data.get("keep", 0)
        for key, value in (("from_replica", replica), ("keep", keep)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ScheduleError(f"{where}: {key} must be a non-negative integer")
        max_age_text = data.get("max_age") or "0"
        if not isinstance(max_age_text, str):
            raise ScheduleError(f"{where}: max_age must be a duration string (e.g. 7d)")
        try:
            max_age = parse_retention_duration(max_age_text)
        except ValueError as err:
            raise ScheduleError(f"{where}: max_age {go_quote(max_age_text)}: {err}") from err
        since_text = data.get("since")
        since = None
        if since_text is not None:
            try:
                since = _utc(datetime.fromisoformat(since_text)) if isinstance(since_text, str) else None
            except ValueError:
                since = None
            if since is None:
                raise ScheduleError(f"{where}: since must be an RFC 3339 UTC time")
        return cls(cron, replica, keep or 0, max_age, since)


def schedule_from_bucket(bucket: Mapping[str, str]) -> BackupSchedule | None:
    """The cluster's schedule, None when it has none (key absent or blank)."""
    raw = bucket.get(SCHEDULE_KEY, "").strip()
    return BackupSchedule.from_json(raw) if raw else None


def capture_args(ref: Ref, schedule: BackupSchedule) -> list[str]:
    """The ``backups:capture`` command line a scheduled run amounts to (after the command name)."""
    args = [str(ref)]
    if schedule.from_replica is not None:
        args += ["--from-replica", str(schedule.from_replica)]
    if schedule.keep > 0:
        args += ["--keep", str(schedule.keep)]
    if schedule.max_age > timedelta(0):
        args += ["--max-age", format_duration_short(schedule.max_age)]
    return args


def capture_command(ref: Ref, schedule: BackupSchedule, *, cli: str = PLUGIN_CLI) -> str:
    """``vd pg:backups:capture <ref>[ --from-replica N][ --keep N][ --max-age D]`` (Go's text; the
    ref and values are DNS labels, numbers and durations, so nothing needs shell quoting)."""
    return " ".join([f"{cli}backups:capture", *capture_args(ref, schedule)])


def cronjob_name(ref: Ref) -> str:
    return f"{ref.name}-backup"


def cronjob_hcl(ref: Ref, schedule: BackupSchedule) -> str:
    """What ``backups:schedule`` prints under Voodu (§5.17), blank lines included; an unscoped
    cluster's block has the one label ``"<name>-backup"``."""
    labels = " ".join(go_quote(label) for label in ([ref.scope] if ref.scope else []) + [cronjob_name(ref)])
    return "\n".join([
        "",
        "# Add this to your voodu.hcl, then run `vd apply`:",
        "",
        f"cronjob {labels} {{",
        f"  schedule = {go_quote(schedule.cron)}",
        f"  image    = {go_quote(CLI_IMAGE)}",
        "",
        f"  command = [\"bash\", \"-c\", {go_quote(capture_command(ref, schedule))}]",
        "}",
        "",
        "# To remove the schedule later: delete the block + run `vd apply --prune`.",
        "",
        "",
    ])
