"""Backup schedules: cron validation, due runs with an injected clock (a missed slot runs once), the
bucket record, and the Voodu cronjob HCL (scoped, and unscoped with one label)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from voodu_postgres.domain import schedule as sch
from voodu_postgres.domain.errors import UsageError
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.schedule import BackupSchedule, ScheduleError

DAILY = "0 3 * * *"


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


# -- cron ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr,normal", [
    ("0 3 * * *", "0 3 * * *"), ("  */30   * * * * ", "*/30 * * * *"), ("0 3 * * 0", "0 3 * * 0"),
    ("0 */6 * * *", "0 */6 * * *"), ("15 2 1,15 * *", "15 2 1,15 * *"), ("0 3 * JAN-mar sun", "0 3 * JAN-mar sun"),
    ("0 0 29 2 *", "0 0 29 2 *")])  # fires in leap years only: still valid
def test_valid_cron(expr: str, normal: str) -> None:
    assert sch.validate_cron(expr) == normal


@pytest.mark.parametrize("expr,message", [
    ("", 'cron "": need 5 fields (minute hour day-of-month month day-of-week), got 0'),
    ("* * *", 'cron "* * *": need 5 fields (minute hour day-of-month month day-of-week), got 3'),
    ("0 3 * * * *", 'cron "0 3 * * * *": need 5 fields (minute hour day-of-month month day-of-week), got 6'),
    ("@daily", 'cron "@daily": need 5 fields (minute hour day-of-month month day-of-week), got 1'),
    ("61 * * * *", 'cron "61 * * * *": not acceptable, out of range'),
    ("0 3 * * 8", 'cron "0 3 * * 8": not acceptable, out of range'),
    ("*/0 * * * *", "cron \"*/0 * * * *\": step '0' in field 0 is not acceptable"),
    ("0 3 31 2 *", 'cron "0 3 31 2 *": it never fires'),
    ("0 0 L * *", 'cron "0 0 L * *": day-of-month "L": "l" is not standard cron'),
    ("0 0 * * 1#2", 'cron "0 0 * * 1#2": day-of-week "1#2": only digits, names and * , - / are allowed'),
    ("H * * * *", 'cron "H * * * *": minute "H": "h" is not standard cron'),
    ("0 3 * mon *", 'cron "0 3 * mon *": month "mon": "mon" is not standard cron'),
    ('0 3 * * "', 'cron "0 3 * * \\"": day-of-week "\\"": only digits, names and * , - / are allowed'),
])
def test_invalid_cron_is_one_line(expr: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        sch.validate_cron(expr)
    assert str(err.value) == message and "\n" not in message


def test_next_and_previous_fire() -> None:
    assert sch.next_fire(DAILY, at(1, 2)) == at(1, 3)
    assert sch.next_fire(DAILY, at(1, 3)) == at(2, 3)  # strictly after
    assert sch.next_fire(DAILY, at(1, 3, 0, 30)) == at(2, 3)
    assert sch.previous_fire(DAILY, at(1, 3)) == at(1, 3)  # at or before
    assert sch.previous_fire(DAILY, at(2, 2, 59, 59)) == at(1, 3)
    # 02:59:59.999999 is still before the 03:00 slot
    assert sch.previous_fire(DAILY, at(2, 2, 59, 59) + timedelta(microseconds=999_999)) == at(1, 3)
    assert sch.next_fire("*/30 * * * *", at(1, 3, 10)) == at(1, 3, 30)
    assert sch.next_fire(DAILY, at(1, 2)).tzinfo is not None


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        sch.next_fire(DAILY, datetime(2026, 3, 1))


# -- due runs -----------------------------------------------------------------------------------


def test_not_due_before_the_next_slot() -> None:
    assert sch.due_slot(DAILY, last_run=at(1, 3, 0, 20), now=at(1, 3, 1)) is None
    assert sch.due_slot(DAILY, last_run=at(1, 3, 0, 20), now=at(2, 2, 59, 59)) is None


def test_due_at_the_slot() -> None:
    assert sch.due_slot(DAILY, last_run=at(1, 3, 0, 20), now=at(2, 3)) == at(2, 3)
    assert sch.due_slot(DAILY, last_run=at(1, 3, 0, 20), now=at(2, 3, 0, 40)) == at(2, 3)
    assert sch.is_due(DAILY, at(1, 3), at(2, 3, 1))


def test_missed_slots_run_once() -> None:
    # the watcher was down from the 1st to the 5th: one run when it comes back, for the latest slot
    last = at(1, 3, 0, 5)
    now = at(5, 14)
    assert sch.due_slot(DAILY, last, now) == at(5, 3)
    # that run recorded, nothing more is due until the next slot — not four more catch-ups
    started = now
    assert sch.due_slot(DAILY, started, now + timedelta(minutes=1)) is None
    assert sch.due_slot(DAILY, started, at(6, 2, 59)) is None
    assert sch.due_slot(DAILY, started, at(6, 3)) == at(6, 3)


def test_a_watcher_ticking_every_minute_starts_each_slot_once() -> None:
    cron = "*/15 * * * *"
    last: datetime | None = None
    since = at(1, 0, 0, 30)
    started = []
    now = since
    while now < at(1, 2):
        if sch.is_due(cron, last, now, since=since):
            started.append(now)
            last = now
        now += timedelta(minutes=1)
    assert [t.strftime("%H:%M") for t in started] == ["00:15", "00:30", "00:45", "01:00", "01:15", "01:30", "01:45"]


def test_first_run_waits_for_the_first_slot_after_the_schedule_was_recorded() -> None:
    since = at(1, 10)  # recorded at 10:00: today's 03:00 is already past, and does not count
    assert sch.due_slot(DAILY, None, at(1, 10, 5), since=since) is None
    assert sch.due_slot(DAILY, None, at(2, 2, 59), since=since) is None
    assert sch.due_slot(DAILY, None, at(2, 3), since=since) == at(2, 3)
    assert sch.due_slot(DAILY, None, at(9, 12), since=since) == at(9, 3)  # still only once


def test_first_run_without_any_baseline_catches_up_once() -> None:
    assert sch.due_slot(DAILY, None, at(4, 12)) == at(4, 3)


def test_a_manual_capture_after_the_slot_satisfies_it() -> None:
    assert sch.due_slot(DAILY, last_run=at(2, 3, 0, 10), now=at(2, 3, 1), since=at(1, 0)) is None
    # …but one taken before the slot does not
    assert sch.due_slot(DAILY, last_run=at(2, 2, 59), now=at(2, 3, 1), since=at(1, 0)) == at(2, 3)


def test_a_last_run_in_the_future_never_triggers() -> None:
    assert sch.due_slot(DAILY, last_run=at(9, 3), now=at(5, 12)) is None


# -- the record ---------------------------------------------------------------------------------


def test_record_round_trip_and_shape() -> None:
    record = BackupSchedule("0 */6 * * *", from_replica=1, keep=30, max_age=timedelta(days=14), since=at(1, 10))
    text = record.to_json()
    assert json.loads(text) == {"cron": "0 */6 * * *", "from_replica": 1, "keep": 30, "max_age": "2w",
                                "since": "2026-03-01T10:00:00Z"}
    assert text == ('{"cron":"0 */6 * * *","from_replica":1,"keep":30,"max_age":"2w",'
                    '"since":"2026-03-01T10:00:00Z"}')
    assert BackupSchedule.from_json(text) == record
    assert BackupSchedule.from_json(BackupSchedule().to_json()) == BackupSchedule()
    odd = BackupSchedule(max_age=timedelta(minutes=90))
    assert BackupSchedule.from_json(odd.to_json()) == odd
    assert record.policy.keep == 30 and str(record.policy) == "keep 30, max-age 2w"


def test_record_defaults_and_bucket() -> None:
    assert BackupSchedule.from_json("{}") == BackupSchedule()
    assert sch.schedule_from_bucket({}) is None
    assert sch.schedule_from_bucket({"BACKUP_SCHEDULE": "  "}) is None
    assert sch.schedule_from_bucket({"BACKUP_SCHEDULE": '{"cron":"0  4 * * *"}'}) == BackupSchedule("0 4 * * *")


@pytest.mark.parametrize("text,message", [
    ("nope", "not JSON"), ("[]", "not a JSON object"), ('{"cron": 5}', "cron must be a string"),
    ('{"cron": "61 * * * *"}', 'cron "61 \\* \\* \\* \\*": not acceptable'),
    ('{"keep": -1}', "keep must be a non-negative integer"), ('{"keep": true}', "keep must be"),
    ('{"from_replica": "1"}', "from_replica must be"), ('{"max_age": "soon"}', 'max_age "soon": not a duration'),
    ('{"max_age": 7}', "max_age must be a duration string"), ('{"since": "yesterday"}', "since must be"),
    ('{"since": "2026-03-01T10:00:00"}', "since must be")])
def test_bad_records_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=f"^BACKUP_SCHEDULE in config bucket: .*{message}") as err:
        BackupSchedule.from_json(text)
    assert "\n" not in str(err.value)


# -- what a scheduled run does, and the Voodu cronjob -------------------------------------------


def test_capture_command() -> None:
    ref = Ref("clowk-lp", "db")
    assert sch.capture_command(ref, BackupSchedule()) == "vd pg:backups:capture clowk-lp/db"
    full = BackupSchedule(from_replica=0, keep=30, max_age=timedelta(days=14))
    assert sch.capture_command(ref, full) == "vd pg:backups:capture clowk-lp/db --from-replica 0 --keep 30 --max-age 2w"
    assert sch.capture_args(ref, full) == ["clowk-lp/db", "--from-replica", "0", "--keep", "30", "--max-age", "2w"]
    assert sch.capture_command(Ref("", "db"), BackupSchedule(), cli="voodu-postgres ") == (
        "voodu-postgres backups:capture db")


def test_cronjob_hcl_scoped() -> None:
    record = BackupSchedule(from_replica=1, keep=30, max_age=timedelta(days=14))
    assert sch.cronjob_hcl(Ref("clowk-lp", "db"), record) == (
        "\n"
        "# Add this to your voodu.hcl, then run `vd apply`:\n"
        "\n"
        'cronjob "clowk-lp" "db-backup" {\n'
        '  schedule = "0 3 * * *"\n'
        '  image    = "ghcr.io/clowk/voodu-cli:latest"\n'
        "\n"
        '  command = ["bash", "-c", "vd pg:backups:capture clowk-lp/db --from-replica 1 --keep 30 --max-age 2w"]\n'
        "}\n"
        "\n"
        "# To remove the schedule later: delete the block + run `vd apply --prune`.\n"
        "\n")


def test_cronjob_hcl_unscoped_has_one_label() -> None:
    text = sch.cronjob_hcl(Ref("", "db"), BackupSchedule("*/30 * * * *"))
    assert 'cronjob "db-backup" {\n' in text
    assert 'cronjob ""' not in text
    assert '  schedule = "*/30 * * * *"\n' in text
    assert '  command = ["bash", "-c", "vd pg:backups:capture db"]\n' in text
