"""The pure backups core: names and IDs (ported from the Go plugin's backups_test.go), durations and
retention (retention_test.go, plus the exactly-N rule and bucket precedence), the metadata sidecar,
the TOC summary and the merged listing."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from voodu_postgres.domain import backups as bm
from voodu_postgres.domain.backup_status import BackupState
from voodu_postgres.domain.backups import (
    BackupContainer,
    BackupError,
    BackupFile,
    BackupMetadata,
    BackupRow,
    RetentionPolicy,
    Verification,
)
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.naming import Ref

S = BackupState
TS = datetime(2026, 5, 5, 2, 0, tzinfo=UTC)
KB, MB, GB, TB = 1024, 1024**2, 1024**3, 1024**4
SCOPED, UNSCOPED = Ref("clowk-lp", "db"), Ref("", "db")


def fname(backup_id: int, at: datetime = TS) -> str:
    return bm.backup_filename(backup_id, at)


# -- names and IDs (backups_test.go) -----------------------------------------------------------


@pytest.mark.parametrize("ref,path", [
    (SCOPED, "/opt/voodu/backups/clowk-lp/db"), (Ref("data", "main"), "/opt/voodu/backups/data/main"),
    (UNSCOPED, "/opt/voodu/backups/_unscoped/db")])
def test_host_dir(ref: Ref, path: str) -> None:
    assert bm.host_dir(ref) == path


@pytest.mark.parametrize("backup_id,name", [
    (1, "b001-20260505T020000Z.dump"), (42, "b042-20260505T020000Z.dump"), (999, "b999-20260505T020000Z.dump"),
    (1000, "b1000-20260505T020000Z.dump"), (12345, "b12345-20260505T020000Z.dump")])
def test_backup_filename(backup_id: int, name: str) -> None:
    assert bm.backup_filename(backup_id, TS) == name


def test_backup_filename_normalises_to_utc() -> None:
    los_angeles = datetime(2026, 5, 4, 19, 0, tzinfo=timezone(timedelta(hours=-7)))  # PDT
    assert bm.backup_filename(1, los_angeles) == "b001-20260505T020000Z.dump"
    with pytest.raises(ValueError):
        bm.backup_filename(1, datetime(2026, 5, 5, 2, 0))  # naive: refused, never "local time"


@pytest.mark.parametrize("name,backup_id,at", [
    ("b001-20260505T020000Z.dump", 1, TS), ("b042-20260101T120000Z.dump", 42, datetime(2026, 1, 1, 12, tzinfo=UTC)),
    ("b1000-20260505T020000Z.dump", 1000, TS), ("b0007-20260505T020000Z.dump", 7, TS)])
def test_parse_backup_filename_valid(name: str, backup_id: int, at: datetime) -> None:
    parsed = bm.parse_backup_filename(name)
    assert parsed is not None and (parsed.id, parsed.created_at, parsed.filename) == (backup_id, at, name)


@pytest.mark.parametrize("name", [
    "", "random.txt", ".DS_Store", "backup.dump", "b001-bogus.dump", "b001-20260505T020000Z.dumpish",
    "b001-20260505T020000Z.dump.bak", "b001-20260505T020000Z.tar", "a001-20260505T020000Z.dump",
    "b001_20260505T020000Z.dump", "b001-2026-05-05T02-00-00Z.dump", "b001-202605050200000Z.dump",
    # beyond Go's list: a valid shape is not enough, the date must exist; and only ASCII digits
    "b001-20261305T020000Z.dump", "b001-20260230T020000Z.dump", "b001-20260505T240000Z.dump",
    "b001-20260505T020060Z.dump", "b001-20260505T020000Z.dump\n", "b٠٠١-20260505T020000Z.dump",
    # the partial and the sidecar are artifacts, not dumps
    "b001-20260505T020000Z.dump.partial", "b001-20260505T020000Z.dump.json"])
def test_parse_backup_filename_invalid(name: str) -> None:
    assert bm.parse_backup_filename(name) is None


def test_round_trip_format_then_parse() -> None:
    at = datetime(2026, 5, 5, 14, 37, 22, tzinfo=UTC)
    for backup_id in (1, 7, 100, 999, 1000, 50000):
        parsed = bm.parse_backup_filename(bm.backup_filename(backup_id, at))
        assert parsed is not None and (parsed.id, parsed.created_at) == (backup_id, at)


def test_artifacts_belong_to_their_dump() -> None:
    dump = fname(5)
    partial, meta = bm.parse_artifact(bm.partial_filename(dump), 10), bm.parse_artifact(bm.metadata_filename(dump))
    assert partial is not None and (partial.kind, partial.id, partial.size_bytes, partial.dump_filename) == (
        "partial", 5, 10, dump)
    assert meta is not None and (meta.kind, meta.dump_filename) == ("metadata", dump)
    assert bm.partial_filename(dump) == "b005-20260505T020000Z.dump.partial"
    assert bm.metadata_filename(dump) == "b005-20260505T020000Z.dump.json"


@pytest.mark.parametrize("names,expected", [
    ([], 1),
    (["b001-20260505T020000Z.dump"], 2),
    (["b001-20260505T020000Z.dump", "b002-20260506T020000Z.dump"], 3),
    (["b007-20260505T020000Z.dump"], 8),
    (["b005-20260505T020000Z.dump", "b001-20260501T020000Z.dump", "b003-20260503T020000Z.dump"], 6),  # max, not last
    (["b001-20260505T020000Z.dump", ".DS_Store", "random.txt", "backup.dump", "b002-20260506T020000Z.dump",
      "b007-20260507T020000Z.dump", "a001-20260508T020000Z.dump"], 8),  # unrelated files ignored
    (["b001-20260505T020000Z.dump", "b003-20260507T020000Z.dump"], 4),  # gaps are not filled
    # ours: a failed capture's partial or sidecar keeps its id taken
    (["b001-20260505T020000Z.dump", "b002-20260506T020000Z.dump.partial"], 3),
    (["b001-20260505T020000Z.dump", "b004-20260506T020000Z.dump.json"], 5),
])
def test_next_backup_id(names: list[str], expected: int) -> None:
    assert bm.next_backup_id(names) == expected


def test_next_backup_id_counts_containers() -> None:
    assert bm.next_backup_id(["b001-20260505T020000Z.dump"], container_ids=[9, 2]) == 10


def test_parse_listing() -> None:
    entries = bm.parse_listing("b001-20260505T020000Z.dump\t12345\nb002-20260506T020000Z.dump\t67890\n")
    assert [(e.id, e.size_bytes) for e in entries] == [(1, 12345), (2, 67890)]
    unsorted = "b005-20260505T020000Z.dump\t100\nb001-20260501T020000Z.dump\t200\nb003-20260503T020000Z.dump\t150\n"
    assert [e.id for e in bm.parse_listing(unsorted)] == [1, 3, 5]
    messy = "\n".join(["b001-20260505T020000Z.dump\t100", ".DS_Store\t6148", "random.txt\t42",
                       "b002-20260506T020000Z.dump\tnot_a_num", "b003-20260507T020000Z.dump\t300", "",
                       "malformed-line-no-tab", "b004-20260508T020000Z.dump\t"])
    assert [e.id for e in bm.parse_listing(messy)] == [1, 3]
    assert bm.parse_listing("") == []


@pytest.mark.parametrize("backup_id,ref", [(1, "b001"), (42, "b042"), (100, "b100"), (999, "b999"),
                                           (1000, "b1000"), (12345, "b12345")])
def test_display_ref(backup_id: int, ref: str) -> None:
    assert bm.format_ref(backup_id) == ref
    assert BackupFile(backup_id, "", TS).ref == ref


@pytest.mark.parametrize("size,text", [
    (0, "0 B"), (500, "500 B"), (1023, "1023 B"), (KB, "1.0 KB"), (KB + 512, "1.5 KB"), (MB, "1.0 MB"),
    (245 * MB + 308 * KB, "245.3 MB"), (GB + 512 * MB, "1.5 GB"), (2 * TB, "2.0 TB"), (2048 * TB, "2048.0 TB")])
def test_format_size(size: int, text: str) -> None:
    assert bm.format_size(size) == text


FILES = [BackupFile(1, "b001-20260501T020000Z.dump", TS), BackupFile(7, "b007-20260507T020000Z.dump", TS),
         BackupFile(42, "b042-20260601T020000Z.dump", TS)]


def test_resolve_backup() -> None:
    assert bm.resolve_backup("b007", FILES).id == 7
    for typed in ("b1", "b001", "b0001", "b00001"):
        assert bm.resolve_backup(typed, FILES[:1]).id == 1


@pytest.mark.parametrize("typed,message", [
    ("", "backup id required (e.g. b001)"),
    ("7", "backup id \"7\" must start with 'b' (e.g. b001)"),
    ("007", "backup id \"007\" must start with 'b' (e.g. b001)"),
    ("backup-007", "backup id \"backup-007\": invalid number after 'b'"),
    ("bxyz", "backup id \"bxyz\": invalid number after 'b'"),
    ("b", "backup id \"b\": invalid number after 'b'"),
    ("b001-extra", "backup id \"b001-extra\": invalid number after 'b'"),
    ("b-1", "backup id \"b-1\": invalid number after 'b'"),
    ("b002", "backup b002 not found (available: b001, b007, b042)"),
    ("b0002", "backup b0002 not found (available: b001, b007, b042)"),  # echoed as typed
])
def test_resolve_backup_errors(typed: str, message: str) -> None:
    with pytest.raises(BackupError) as err:
        bm.resolve_backup(typed, FILES)
    assert str(err.value) == message
    assert isinstance(err.value, CommandError)


def test_resolve_backup_with_nothing_captured() -> None:
    with pytest.raises(BackupError, match=r"^backup b001 not found \(no backups exist — run vd pg:backups:capture "
                                          r"first\)$"):
        bm.resolve_backup("b001", [])
    with pytest.raises(BackupError, match="run voodu-postgres backups:capture first"):
        bm.resolve_backup("b001", [], cli="voodu-postgres ")


def test_logs_example_id() -> None:
    with pytest.raises(BackupError, match=r"\(e\.g\. b008\)"):
        bm.parse_backup_id("x", example="b008")


def test_resolve_over_listing_rows() -> None:
    rows = [BackupRow(3, S.RUNNING), BackupRow(1, S.COMPLETE)]
    assert bm.resolve_backup("b3", rows).state is S.RUNNING
    with pytest.raises(BackupError, match=r"available: b001, b003\)"):
        bm.resolve_backup("b2", rows)


@pytest.mark.parametrize("target,url", [
    ("https://example.com/db.dump", True), ("http://example.com/db.dump", True),
    ("https://my-bucket.s3.amazonaws.com/db.dump?X-Amz-Signature=abc", True), ("b001", False),
    ("b001-20260505T020000Z.dump", False), ("/srv/backups/db.dump", False), ("./db.dump", False), ("", False),
    ("ftp://example.com/db.dump", False), ("s3://bucket/key", False), ("file:///srv/db.dump", False)])
def test_is_http_url(target: str, url: bool) -> None:
    assert bm.is_http_url(target) is url


# -- containers and jobs: one naming for create, cancel and delete ------------------------------


@pytest.mark.parametrize("ref,backup_id,container,job", [
    (SCOPED, 1, "clowk-lp-db.bk.b001", "db.bk.b001"), (SCOPED, 42, "clowk-lp-db.bk.b042", "db.bk.b042"),
    (SCOPED, 1000, "clowk-lp-db.bk.b1000", "db.bk.b1000"), (UNSCOPED, 7, "db.bk.b007", "db.bk.b007"),
    (Ref("data", "main"), 99, "data-main.bk.b099", "main.bk.b099")])
def test_container_and_job_names(ref: Ref, backup_id: int, container: str, job: str) -> None:
    assert bm.container_name(ref, backup_id) == container
    assert bm.job_name(ref, backup_id) == job
    # a Voodu job run of that job is named <app_id>.<job>.<runid>: the same prefix, the same id
    run = f"{ref.scope}-{job}.f00d" if ref.scope else f"{job}.f00d"
    assert bm.parse_container_id(run, bm.container_prefix(ref)) == backup_id


@pytest.mark.parametrize("ref,current,legacy", [
    (SCOPED, "clowk-lp-db.bk.", "clowk-lp-db-backup-"), (UNSCOPED, "db.bk.", "db-backup-"),
    (Ref("data", "main"), "data-main.bk.", "data-main-backup-")])
def test_container_prefixes(ref: Ref, current: str, legacy: str) -> None:
    assert bm.container_prefix(ref) == current
    assert bm.container_prefixes(ref) == [current, legacy]


@pytest.mark.parametrize("name,backup_id", [
    ("clowk-lp-db.bk.b001", 1), ("clowk-lp-db.bk.b042", 42), ("clowk-lp-db.bk.b1000", 1000),
    ("clowk-lp-db.bk.b011.fccd", 11), ("clowk-lp-db.bk.b042.abcd1234", 42), ("clowk-lp-db.bk.b1000.xyz", 1000),
    ("clowk-lp-db.bk.b007-runidv2", 7),
    ("other-scope-db.bk.b001", None), ("clowk-lp-db.rs.b001", None), ("clowk-lp-db.bk.001", None),
    ("clowk-lp-db.bk.bxyz", None), ("clowk-lp-db.bk.", None), ("clowk-lp-db.bk.b008xyz", None)])
def test_parse_container_id(name: str, backup_id: int | None) -> None:
    assert bm.parse_container_id(name, "clowk-lp-db.bk.") == backup_id


@pytest.mark.parametrize("name,backup_id", [
    ("clowk-lp-db-backup-b001", 1), ("clowk-lp-db-backup-b012.ed52", 12), ("clowk-lp-db-backup-b007-runidv2", 7),
    ("other-prefix-b001", None)])
def test_parse_container_id_legacy(name: str, backup_id: int | None) -> None:
    assert bm.parse_container_id(name, "clowk-lp-db-backup-") == backup_id


@pytest.mark.parametrize("status,code", [
    ("Up 2 minutes", 0), ("Up About a minute (healthy)", 0), ("Exited (0) 3 minutes ago", 0),
    ("Exited (1) 3 minutes ago", 1), ("Exited (137) 1 hour ago", 137), ("Created", 0), ("Exited (xx) blah", 0),
    ("Exited () blah", 0), ("", 0)])
def test_parse_exit_code(status: str, code: int) -> None:
    assert bm.parse_exit_code(status) == code


def test_parse_container_lines() -> None:
    raw = ("clowk-lp-db.bk.b003.ab12\texited\tExited (1) 2 minutes ago\n"
           "clowk-lp-db.bk.b004\trunning\tUp 5 seconds\n"
           "clowk-lp-db.0\trunning\tUp 1 hour\n"  # a pod, not a backup
           "clowk-lp-db-backup-b001.ed52\texited\tExited (0) 3 days ago\n"
           "clowk-lp-db.bk.b004\trunning\tUp 5 seconds\n"  # seen by both scans: de-duplicated
           "garbage\n")
    found = bm.parse_container_lines(SCOPED, raw)
    assert [(c.id, c.state, c.exit_code, c.legacy) for c in found] == [
        (3, "exited", 1, False), (4, "running", None, False), (1, "exited", 0, True)]
    assert bm.backup_container(SCOPED, "clowk-lp-db.bk.b004", "running") is not None
    assert bm.backup_container(SCOPED, "clowk-lp-web.bk.b004", "running") is None


def test_source_label() -> None:
    assert bm.source_label(0, 0) == "primary"
    assert bm.source_label(2, 0) == "replica 2"


def test_refs_from_dirs() -> None:
    pairs = [("clowk-lp", "db"), ("_unscoped", "cache"), ("alpha", "main"), ("clowk-lp", "Bad Name"), ("..", "x")]
    assert [str(r) for r in bm.refs_from_dirs(pairs)] == ["cache", "alpha/main", "clowk-lp/db"]


# -- durations (retention_test.go) -------------------------------------------------------------


@pytest.mark.parametrize("text,delta", [
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), ("168h", timedelta(hours=168)),
    ("30m", timedelta(minutes=30)), ("1h30m", timedelta(minutes=90)), ("1.5h", timedelta(minutes=90)),
    ("90m", timedelta(minutes=90)), (" 14d ", timedelta(days=14)), ("0", timedelta(0)), ("0d", timedelta(0)),
    ("+3d", timedelta(days=3)), (".5s", timedelta(milliseconds=500)), ("1h0.5m", timedelta(seconds=3630)),
    ("250ms", timedelta(milliseconds=250)), ("3µs", timedelta(microseconds=3))])
def test_parse_retention_duration(text: str, delta: timedelta) -> None:
    assert bm.parse_retention_duration(text) == delta


@pytest.mark.parametrize("text,message", [
    ("", "empty duration"),
    ("   ", "empty duration"),
    ("xd", 'invalid days value "xd"'),
    ("1.5d", 'invalid days value "1.5d"'),
    ("d", 'invalid days value "d"'),
    ("-3d", "duration must be >= 0"),
    ("xw", 'invalid weeks value "xw"'),
    ("-1w", "duration must be >= 0"),
    ("-1h", "duration must be >= 0"),
    ("7d12h", 'not a duration (try 7d, 2w, or Go duration like 168h): time: unknown unit "d" in duration "7d12h"'),
    ("neverr", 'not a duration (try 7d, 2w, or Go duration like 168h): time: invalid duration "neverr"'),
    ("10", 'not a duration (try 7d, 2w, or Go duration like 168h): time: missing unit in duration "10"'),
    ("1y", 'not a duration (try 7d, 2w, or Go duration like 168h): time: unknown unit "y" in duration "1y"'),
    (".h", 'not a duration (try 7d, 2w, or Go duration like 168h): time: invalid duration ".h"'),
    ("999999999999w", 'invalid weeks value "999999999999w"'),  # Go would overflow silently
])
def test_parse_retention_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        bm.parse_retention_duration(text)
    assert str(err.value) == message


@pytest.mark.parametrize("delta,text", [
    (timedelta(days=1), "1d"), (timedelta(weeks=1), "1w"), (timedelta(weeks=2), "2w"), (timedelta(days=3), "3d"),
    (timedelta(minutes=30), "30m0s"), (timedelta(minutes=90), "1h30m0s"), (timedelta(hours=36), "36h0m0s"),
    (timedelta(0), "0"), (timedelta(seconds=-5), "0")])
def test_format_duration_short(delta: timedelta, text: str) -> None:
    assert bm.format_duration_short(delta) == text


@pytest.mark.parametrize("delta,text", [
    (timedelta(0), "0s"), (timedelta(seconds=52), "52s"), (timedelta(minutes=1), "1m0s"),
    (timedelta(minutes=90), "1h30m0s"), (timedelta(hours=36), "36h0m0s"), (timedelta(milliseconds=1500), "1.5s"),
    (timedelta(milliseconds=500), "500ms"), (timedelta(microseconds=1), "1µs"), (timedelta(seconds=-61), "-1m1s"),
    (timedelta(hours=2, microseconds=10), "2h0m0.00001s")])
def test_go_duration(delta: timedelta, text: str) -> None:
    assert bm.go_duration(delta) == text


def test_go_duration_round_trips_through_the_parser() -> None:
    for delta in (timedelta(minutes=90), timedelta(milliseconds=1500), timedelta(hours=36, seconds=1)):
        assert bm.parse_retention_duration(bm.go_duration(delta)) == delta
    assert bm.go_duration_ns(1) == "1ns"


def test_flag_values_with_go_texts() -> None:
    assert bm.keep_flag("30") == 30
    assert bm.max_age_flag("7d") == timedelta(days=7)
    for value, message in ((None, "--keep requires an integer"), ("abc", '--keep "abc": not a number: "abc"'),
                           ("-1", '--keep "-1": not a number: "-1"')):
        with pytest.raises(UsageError) as err:
            bm.keep_flag(value)
        assert str(err.value) == message
    with pytest.raises(UsageError, match=r"^--retention requires a duration \(e\.g\. 7d, 168h\)$"):
        bm.max_age_flag(None, "--retention")
    with pytest.raises(UsageError) as err:
        bm.max_age_flag("neverr", "--retention")
    assert str(err.value) == ('--retention "neverr": not a duration (try 7d, 2w, or Go duration like 168h): '
                              'time: invalid duration "neverr"')


def test_go_quote() -> None:
    assert bm.go_quote('a"b\\c\n\x01\x7fé') == '"a\\"b\\\\c\\n\\x01\\x7fé"'
    assert bm.go_quote("\u200b") == '"\\u200b"'


# -- retention policy ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy,text", [
    (RetentionPolicy(), "(none)"), (RetentionPolicy(keep=30), "keep 30"),
    (RetentionPolicy(max_age=timedelta(weeks=1)), "max-age 1w"), (RetentionPolicy(max_age=timedelta(weeks=2)),
                                                                   "max-age 2w"),
    (RetentionPolicy(max_age=timedelta(minutes=90)), "max-age 1h30m0s"),
    (RetentionPolicy(keep=10, max_age=timedelta(days=1)), "keep 10, max-age 1d")])
def test_policy_text(policy: RetentionPolicy, text: str) -> None:
    assert str(policy) == text


def test_policy_is_zero_only_when_both_axes_are_off() -> None:
    assert RetentionPolicy().is_zero
    assert not RetentionPolicy(keep=1).is_zero
    assert not RetentionPolicy(max_age=timedelta(hours=1)).is_zero


def test_bucket_policy() -> None:
    policy, warnings = bm.retention_from_buckets(RetentionPolicy(), {"BACKUP_KEEP": "30", "BACKUP_MAX_AGE": "7d"})
    assert policy == RetentionPolicy(30, timedelta(days=7)) and warnings == []
    for bucket in ({}, {"BACKUP_KEEP": "", "BACKUP_MAX_AGE": "  "}):
        assert bm.retention_from_buckets(RetentionPolicy(), bucket) == (RetentionPolicy(), [])


def test_malformed_bucket_values_are_ignored_with_a_warning() -> None:
    policy, warnings = bm.retention_from_buckets(RetentionPolicy(), {"BACKUP_KEEP": "thirty",
                                                                     "BACKUP_MAX_AGE": "7d"})
    assert policy == RetentionPolicy(0, timedelta(days=7))
    assert warnings == ['warn: ignoring BACKUP_KEEP="thirty" in config bucket: not a non-negative integer']
    _, warnings = bm.retention_from_buckets(RetentionPolicy(), {"BACKUP_KEEP": "-2", "BACKUP_MAX_AGE": "soon"})
    assert warnings == [
        'warn: ignoring BACKUP_KEEP="-2" in config bucket: not a non-negative integer',
        'warn: ignoring BACKUP_MAX_AGE="soon" in config bucket: not a duration (try 7d, 2w, or Go duration like '
        '168h): time: invalid duration "soon"']


def test_precedence_per_axis_flag_then_app_then_scope() -> None:
    app = {"BACKUP_KEEP": "30"}
    scope = {"BACKUP_KEEP": "14", "BACKUP_MAX_AGE": "7d"}
    # a flag overrides only its axis
    assert bm.retention_from_buckets(RetentionPolicy(keep=5), app, scope)[0] == RetentionPolicy(5, timedelta(days=7))
    # the app bucket beats the scope's per key; the scope fills the rest
    assert bm.retention_from_buckets(RetentionPolicy(), app, scope)[0] == RetentionPolicy(30, timedelta(days=7))
    assert bm.retention_from_buckets(RetentionPolicy(), {}, scope)[0] == RetentionPolicy(14, timedelta(days=7))
    # an app-level 0 switches the axis off for this cluster, whatever the scope says
    assert bm.retention_from_buckets(RetentionPolicy(), {"BACKUP_KEEP": "0"}, scope)[0] == RetentionPolicy(
        0, timedelta(days=7))
    # as in Go, --keep 0 cannot switch a bucket's keep off (0 = flag not given)
    assert bm.retention_from_buckets(RetentionPolicy(keep=0), app)[0].keep == 30
    # a flag alone, empty buckets
    assert bm.retention_from_buckets(RetentionPolicy(keep=10), {}, {})[0] == RetentionPolicy(10)
    # an unusable app value falls back to the scope's, and says so
    policy, warnings = bm.retention_from_buckets(RetentionPolicy(), {"BACKUP_KEEP": "x"}, {"BACKUP_KEEP": "9"})
    assert policy.keep == 9 and len(warnings) == 1
    _, warnings = bm.retention_from_buckets(RetentionPolicy(), {}, {"BACKUP_KEEP": "x"})
    assert warnings == ['warn: ignoring BACKUP_KEEP="x" in scope config bucket: not a non-negative integer']


NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def entry(backup_id: int, days_old: float, state: BackupState = S.COMPLETE) -> BackupRow:
    created = NOW - timedelta(days=days_old)
    return BackupRow(backup_id, state, fname(backup_id, created), created)


def ids(entries: list[BackupRow]) -> list[int]:
    return [e.id for e in entries]


FIVE = [entry(1, 5), entry(2, 4), entry(3, 3), entry(4, 2), entry(5, 1)]


def test_retention_empty_policy_and_big_keep() -> None:
    assert bm.apply_retention(FIVE, RetentionPolicy(), NOW) == []
    assert bm.apply_retention(FIVE, RetentionPolicy(keep=10), NOW) == []


def test_retention_keep_last() -> None:
    assert ids(bm.apply_retention(FIVE, RetentionPolicy(keep=3), NOW)) == [2, 1]  # newest first


def test_retention_max_age() -> None:
    entries = [entry(1, 30), entry(2, 10), entry(3, 3), entry(4, 1)]
    assert ids(bm.apply_retention(entries, RetentionPolicy(max_age=timedelta(days=7)), NOW)) == [2, 1]


def test_retention_both_axes() -> None:
    entries = [entry(1, 20), entry(2, 12), entry(3, 5), entry(4, 3), entry(5, 1)]
    doomed = bm.apply_retention(entries, RetentionPolicy(keep=4, max_age=timedelta(days=10)), NOW)
    assert ids(doomed) == [2, 1]  # rank 5 by count, and the 12-day-old one by age
    # the axes are a union: count dooms rank 6, age dooms everything past 10 days
    entries = [entry(1, 20), entry(2, 15), entry(3, 12), entry(4, 3), entry(5, 2), entry(6, 1)]
    doomed = bm.apply_retention(entries, RetentionPolicy(keep=5, max_age=timedelta(days=10)), NOW)
    assert ids(doomed) == [3, 2, 1]


def test_retention_boundary_at_max_age_is_kept() -> None:
    exactly = [entry(1, 7), entry(2, 7 + 1 / 86400)]
    assert ids(bm.apply_retention(exactly, RetentionPolicy(max_age=timedelta(days=7)), NOW)) == [2]


def test_retention_ranks_by_timestamp_not_id() -> None:
    # ids out of time order (a restored host, a clock fix): the newest by timestamp is kept
    entries = [entry(9, 3), entry(2, 1), entry(5, 2)]
    assert ids(bm.apply_retention(entries, RetentionPolicy(keep=1), NOW)) == [5, 9]


def test_retention_does_not_mutate_its_input() -> None:
    entries = [entry(3, 3), entry(1, 5), entry(2, 4)]
    before = list(entries)
    bm.apply_retention(entries, RetentionPolicy(keep=1), NOW)
    assert entries == before


def test_keep_n_leaves_exactly_n_counting_the_new_backup() -> None:
    existing = [entry(i, 10 - i) for i in range(1, 6)]  # five old backups
    new = entry(6, 0)  # the capture that just landed
    for keep in (1, 3, 5, 6):
        listing = [*existing, new]
        doomed = bm.apply_retention(listing, RetentionPolicy(keep=keep), NOW)
        remaining = [e for e in listing if e not in doomed]
        assert len(remaining) == min(keep, 6) and new in remaining


def test_retention_never_touches_a_running_capture_nor_counts_it() -> None:
    listing = [entry(1, 3), entry(2, 2), entry(3, 1), entry(4, 40, S.RUNNING)]
    assert ids(bm.apply_retention(listing, RetentionPolicy(keep=3, max_age=timedelta(days=7)), NOW)) == []


def test_failed_records_neither_push_good_backups_out_nor_pile_up() -> None:
    listing = [entry(1, 4), entry(2, 3), entry(3, 2), entry(4, 1, S.FAILED)]
    assert ids(bm.apply_retention(listing, RetentionPolicy(keep=3), NOW)) == []  # the newest being a failure
    listing = [entry(1, 5, S.CANCELLED), entry(2, 4), entry(3, 3, S.FAILED), entry(4, 2), entry(5, 1)]
    # keep 2: b003 has two complete backups newer than it, b001 three — both go; b002 is rank 3
    assert ids(bm.apply_retention(listing, RetentionPolicy(keep=2), NOW)) == [3, 2, 1]
    assert ids(bm.apply_retention(listing, RetentionPolicy(max_age=timedelta(days=3, hours=12)), NOW)) == [2, 1]


def test_retention_over_plain_files_is_gos() -> None:
    files = [BackupFile(i, fname(i, NOW - timedelta(days=10 - i)), NOW - timedelta(days=10 - i)) for i in (1, 2, 3)]
    assert [f.id for f in bm.apply_retention(files, RetentionPolicy(keep=2), NOW)] == [1]


# -- metadata -----------------------------------------------------------------------------------


META = BackupMetadata(
    id=5, file="b005-20260505T020000Z.dump", source_pod="clowk-lp-db.1", source_ordinal=1, source_role="standby",
    server_version="15.5", database="appdata", user="appuser", started=TS,
    finished=TS + timedelta(seconds=42), duration_s=41.7, size_bytes=123456, sha256="ab" * 32, format="custom",
    compression="gzip:6", toc={"table_data": 3, "table": 3, "index": 2, "sequence": 1},
    table_rows={"public.accounts": 100, "public.orders": 2500},
    verification=Verification(at=TS + timedelta(hours=1), duration_s=12.5, ok=True, detail="3 tables match"))


def test_metadata_round_trip() -> None:
    assert BackupMetadata.from_json(META.to_json()) == META
    minimal = BackupMetadata(id=1000, file="b1000-20260505T020000Z.dump", status="failed", reason="pg_dump exit 1")
    assert BackupMetadata.from_json(minimal.to_json()) == minimal
    uncounted = replace(META, table_rows={}, table_rows_skipped="not counted: 896.6 MiB of table data is over …")
    assert BackupMetadata.from_json(uncounted.to_json()) == uncounted
    assert json.loads(META.to_json())["table_rows_skipped"] is None  # counted: no reason


def test_metadata_json_shape() -> None:
    data = json.loads(META.to_json())
    assert data["id"] == "b005" and data["status"] == "complete" and data["schema"] == 1
    assert data["source"] == {"pod": "clowk-lp-db.1", "ordinal": 1, "role": "standby"}
    assert data["started"] == "2026-05-05T02:00:00Z" and data["finished"] == "2026-05-05T02:00:42Z"
    assert data["verification"] == {"at": "2026-05-05T03:00:00Z", "duration_s": 12.5, "ok": True,
                                    "detail": "3 tables match"}
    assert META.ref == "b005" and META.server_major == 15


def test_metadata_tolerates_unknown_keys_and_rejects_bad_ones() -> None:
    data = json.loads(META.to_json())
    data["written_by"] = "a newer version"
    assert BackupMetadata.from_dict(data) == META
    for broken, message in (
            ("[]", "not a JSON object"), ("{", "not JSON"), ('{"file": "x"}', "id missing"),
            ('{"id": "x7", "file": "x"}', "must start with 'b'"),
            ('{"id": "b1", "file": "x", "status": "lost"}', 'status "lost"'),
            ('{"id": "b1", "file": "x", "size_bytes": "big"}', "size_bytes has the wrong type"),
            ('{"id": "b1", "file": "x", "size_bytes": true}', "size_bytes has the wrong type"),
            ('{"id": "b1", "file": "x", "toc": {"table": 1.5}}', "toc.table is not an integer"),
            ('{"id": "b1", "file": "x", "started": "yesterday"}', "not a timestamp")):
        with pytest.raises(BackupError, match=message):
            BackupMetadata.from_json(broken)


@pytest.mark.parametrize("version,major", [
    ("15.5", 15), ("16beta1", 16), ("15.5 (Debian 15.5-1.pgdg120+1)", 15), ("9.6.24", 9), ("", None), ("x", None)])
def test_server_major(version: str, major: int | None) -> None:
    assert bm.server_major(version) == major


def test_row_count_mismatches() -> None:
    expected = {"public.a": 10, "public.b": 5, "public.c": 0}
    assert bm.row_count_mismatches(expected, {"public.a": 10, "public.b": 5, "public.c": 0, "public.new": 1}) == []
    assert bm.row_count_mismatches(expected, {"public.a": 9, "public.c": 0}) == [
        "public.a: 9 rows restored, 10 expected", "public.b: missing after restore (expected 5 rows)"]


# -- TOC summary --------------------------------------------------------------------------------

TOC = """;
; Archive created at 2026-05-05 02:00:00 UTC
;     dbname: appdata
;     TOC Entries: 14
;     Compression: gzip
;     Dump Version: 1.15-0
;     Format: CUSTOM
;     Dumped from database version: 15.5 (Debian 15.5-1.pgdg120+1)
;     Dumped by pg_dump version: 15.5 (Debian 15.5-1.pgdg120+1)
;
;
; Selected TOC Entries:
;
215; 1259 16385 TABLE public accounts appuser
216; 1259 16384 SEQUENCE public accounts_id_seq appuser
3345; 0 0 SEQUENCE OWNED BY public accounts_id_seq appuser
217; 1259 16395 TABLE public orders appuser
218; 1259 16396 TABLE public events appuser
3190; 2604 16388 DEFAULT public accounts id appuser
3337; 0 16385 TABLE DATA public accounts appuser
3338; 0 16395 TABLE DATA public orders appuser
3339; 0 16396 TABLE DATA public events appuser
3346; 0 0 SEQUENCE SET public accounts_id_seq appuser
3192; 2606 16390 CONSTRAINT public accounts accounts_pkey appuser
3193; 1259 16391 INDEX public accounts_email_idx appuser
3194; 1259 16392 INDEX public orders_at_idx appuser
3195; 2606 16393 FK CONSTRAINT public orders orders_account_fkey appuser
;3196; 1259 16394 INDEX public deselected_idx appuser
"""


def test_parse_toc() -> None:
    toc = bm.parse_toc(TOC)
    assert toc.counts == {"table": 3, "sequence": 1, "sequence_owned_by": 1, "default": 1, "table_data": 3,
                          "sequence_set": 1, "constraint": 1, "index": 2, "fk_constraint": 1}
    assert toc.entries == 14
    assert toc.server_version == "15.5 (Debian 15.5-1.pgdg120+1)" and bm.server_major(toc.server_version) == 15
    assert (toc.format, toc.compression) == ("CUSTOM", "gzip")
    assert toc.sentence() == "dump TOC: 3 table data block(s), 3 table(s), 2 index(es), 1 sequence(s)"


def test_toc_sentences() -> None:
    assert bm.parse_toc("").sentence() == "dump TOC: empty (no entries — restore will be a no-op)"
    assert bm.parse_toc(";\n; Archive created at x\n").sentence().startswith("dump TOC: empty")
    schema_only = bm.parse_toc("215; 1259 16385 TABLE public accounts appuser\n")
    assert schema_only.sentence() == (
        "dump TOC: 0 table data block(s), 1 table(s)\n"
        "⚠  no TABLE DATA blocks — dump appears to be schema-only. Restore will recreate empty tables.")
    data_only = bm.parse_toc("3337; 0 16385 TABLE DATA public accounts appuser\n")
    assert data_only.sentence() == "dump TOC: 1 table data block(s)"
    matview = bm.parse_toc("1; 1259 1 MATERIALIZED VIEW public mv o\n2; 0 1 MATERIALIZED VIEW DATA public mv o\n")
    assert matview.counts == {"materialized_view": 1, "materialized_view_data": 1}


# -- the listing --------------------------------------------------------------------------------


def container(backup_id: int, state: str, status: str = "", *, legacy: bool = False) -> BackupContainer:
    prefix = "clowk-lp-db-backup-" if legacy else "clowk-lp-db.bk."
    return BackupContainer(backup_id, f"{prefix}{bm.format_ref(backup_id)}.ab12", state, status, legacy)


def test_merge_files_only() -> None:
    rows = bm.merge_listing([(fname(1), 100), (fname(2), 200)])
    assert [(r.id, r.state, r.size_bytes) for r in rows] == [(1, S.COMPLETE, 100), (2, S.COMPLETE, 200)]


def test_merge_running_container_without_file() -> None:
    rows = bm.merge_listing([], [container(8, "running", "Up 3 seconds")])
    assert [(r.id, r.state, r.filename, r.created_at) for r in rows] == [(8, S.RUNNING, "", None)]


def test_merge_running_container_with_growing_file() -> None:
    for name in (fname(8), bm.partial_filename(fname(8))):  # Go wrote the final name; we write the partial
        rows = bm.merge_listing([(name, 87 * MB)], [container(8, "running", "Up 1 minute")])
        assert [(r.state, r.size_bytes, r.filename, r.created_at) for r in rows] == [(S.RUNNING, 87 * MB, name, TS)]


def test_merge_failed_container_without_file() -> None:
    rows = bm.merge_listing([], [container(5, "exited", "Exited (1) 2 minutes ago")])
    assert [(r.id, r.state, r.reason) for r in rows] == [(5, S.FAILED, "exit code 1")]


def test_merge_exited_zero() -> None:
    done = container(3, "exited", "Exited (0) 1 minute ago")
    assert [r.state for r in bm.merge_listing([(fname(3), 1234)], [done])] == [S.COMPLETE]
    assert bm.merge_listing([], [done]) == []  # its file was deleted: no row (Go)


def test_merge_sorted_by_id() -> None:
    rows = bm.merge_listing([(fname(5), 1), (fname(1), 1)], [container(8, "running")])
    assert [r.id for r in rows] == [1, 5, 8]


def test_merge_metadata_cancelled_partial_and_verified() -> None:
    cancelled = BackupMetadata(4, fname(4), status="cancelled", reason="cancelled by operator")
    verified = BackupMetadata(1, fname(1), verification=Verification(TS, 3.0, True))
    bad = BackupMetadata(2, fname(2), verification=Verification(TS, 3.0, False, "row counts differ"))
    files = [(fname(1), 10), (fname(2), 20), (bm.metadata_filename(fname(1)), 1),
             (bm.partial_filename(fname(3)), 30),  # died without cleanup
             (bm.metadata_filename(fname(4)), 1), (bm.partial_filename(fname(4)), 40),
             ("notes.txt", 5)]
    rows = bm.merge_listing(files, [container(6, "exited", "Exited (137) 1 hour ago", legacy=True)],
                            {1: verified, 2: bad, 4: cancelled})
    assert [(r.id, r.state, r.verified, r.reason) for r in rows] == [
        (1, S.COMPLETE, True, None), (2, S.COMPLETE, False, None), (3, S.FAILED, None, None),
        (4, S.CANCELLED, None, "cancelled by operator"), (6, S.FAILED, None, "exit code 137")]
    assert rows[3].created_at == TS and rows[3].size_bytes == 40
    assert rows[4].container == "clowk-lp-db-backup-b006.ab12"


def test_merge_failure_known_only_from_metadata() -> None:
    failed = BackupMetadata(7, fname(7), status="failed", reason="pg_dump: connection refused", started=TS,
                            size_bytes=0)
    rows = bm.merge_listing([(bm.metadata_filename(fname(7)), 100)], [], {7: failed})
    assert [(r.state, r.reason, r.created_at, r.filename) for r in rows] == [
        (S.FAILED, "pg_dump: connection refused", TS, "")]
    assert bm.merge_listing([], [], {7: failed})[0].created_at == TS  # dated from the metadata alone


def test_merge_prefers_the_live_container() -> None:
    rows = bm.merge_listing([], [container(2, "exited", "Exited (1) x"), container(2, "running", legacy=True)])
    assert rows[0].state is S.RUNNING


def test_row_json_is_gos_shape_plus_verified() -> None:
    rows = bm.merge_listing([(fname(1), 100)], [container(2, "running")], {1: BackupMetadata(
        1, fname(1), verification=Verification(TS, 1.0, True))})
    assert [r.to_json() for r in rows] == [
        {"id": "b001", "status": "complete", "filename": fname(1), "created_at": "2026-05-05T02:00:00Z",
         "size_bytes": 100, "verified": True},
        {"id": "b002", "status": "running", "size_bytes": 0, "verified": None}]
    doc = bm.listing_json(SCOPED, rows)
    assert list(doc) == ["backups", "ref"] and doc["ref"] == "clowk-lp/db"
    many = bm.listing_json_many([(SCOPED, rows), (UNSCOPED, [])])
    assert list(many) == ["clowk-lp/db", "db"] and many["db"] == []
    assert bm.listing_json_many([]) == {}


def test_render_listing() -> None:
    rows = [BackupRow(1, S.COMPLETE, fname(1), datetime(2026, 1, 1, tzinfo=UTC), 100, verified=True),
            BackupRow(4, S.RUNNING),
            BackupRow(5, S.FAILED, created_at=TS),
            BackupRow(1000, S.COMPLETE, fname(1000), TS, 245 * MB + 308 * KB, verified=False)]
    assert bm.render_listing(SCOPED, rows) == (
        "=== Backups for clowk-lp/db\n"
        "\n"
        "  ID     Status     Created at            Size       Verified\n"
        "  b001   complete   2026-01-01T00:00:00Z  100 B      yes\n"
        "  b004   running    —                     —          —\n"
        "  b005   failed     2026-05-05T02:00:00Z  —          —\n"
        "  b1000  complete   2026-05-05T02:00:00Z  245.3 MB   FAILED\n"
        "\n")
    assert bm.render_listing(UNSCOPED, []) == (
        "=== Backups for db\n\n  (no backups yet)\n  → vd pg:backups:capture db\n\n")
    assert "→ voodu-postgres backups:capture db" in bm.render_listing(UNSCOPED, [], cli="voodu-postgres ")


def test_render_listing_many() -> None:
    one = bm.render_listing(UNSCOPED, [])
    two = bm.render_listing(SCOPED, [BackupRow(1, S.COMPLETE, fname(1), TS, 1)])
    assert bm.render_listing_many([(UNSCOPED, []), (SCOPED, [BackupRow(1, S.COMPLETE, fname(1), TS, 1)])]) == (
        one + "\n" + two)
    assert bm.render_listing_many([]) == (
        "(no postgres clusters with backups found on this host)\n\n"
        "Capture one with: vd pg:backups:capture <scope>/<name>\n")
    assert bm.render_listing_many([], scope="shop") == (
        "=== Backups for scope shop\n\n  (no postgres backups under this scope on this host)\n\n")


@pytest.mark.parametrize("elapsed,written,estimate,line", [
    (timedelta(seconds=3), 12 * MB, 245 * MB, "  [3s] 12.0 MB written (~5% of estimate)"),
    (timedelta(seconds=10), 68 * MB, 245 * MB, "  [10s] 68.0 MB written (~28% of estimate)"),
    (timedelta(seconds=45), 218 * MB, 245 * MB, "  [45s] 218.0 MB written (~89% of estimate)"),
    (timedelta(seconds=52), 251 * MB, 245 * MB, "  [52s] 251.0 MB written (~102% of estimate)"),
    (timedelta(seconds=60), 200 * MB, 100 * MB, "  [1m0s] 200.0 MB written (~200% of estimate)"),
    (timedelta(seconds=15), 87 * MB, 0, "  [15s] 87.0 MB written"),
    (timedelta(seconds=15), 87 * MB, -1, "  [15s] 87.0 MB written"),
    (timedelta(seconds=60), 350 * MB, 100 * MB, "  [1m0s] 350.0 MB written"),
    (timedelta(seconds=2), 0, 100 * MB, "  [2s] 0 B written"),
    (timedelta(seconds=2, milliseconds=500), 0, 0, "  [3s] 0 B written"),  # Go rounds halves away from zero
    (timedelta(seconds=2, milliseconds=499), 0, 0, "  [2s] 0 B written")])
def test_progress_line(elapsed: timedelta, written: int, estimate: int, line: str) -> None:
    assert bm.progress_line(elapsed, written, estimate) == line
