"""``promote`` / ``rejoin`` end to end, against real Docker and Postgres, under load.

Every test builds its own cluster through the real CLI (in-process ``voodu_postgres.cli.main``),
in its own scope and network, and checks what Postgres and Docker report — acknowledged rows,
``pg_is_in_recovery()``, ``pg_stat_replication``, ``pg_stat_wal_receiver`` — never output text
alone. Output text is asserted only where it is the contract (which rejoin path ran, refusals).

Load: ``Writer`` inserts ids 1, 2, 3, … into the current primary with autocommit and records
every id whose INSERT returned (acknowledged); on an error it looks for whichever pod is writable
and carries on. ``Sampler`` asks every pod ``pg_is_in_recovery()`` every ~50 ms and records any
round in which two pods answered "writable".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SESSION
from tests.integration.helpers_cli import Cluster, Run, eventually
from tests.integration.load import (
    MiB,
    Sampler,
    Writer,
    assert_healed,
    assert_refused,
    fresh_clusters,
    ids_on,
    kill,
    one,
    primary_ordinal,
    q,
    wait_replayed,
)
from voodu_postgres.adapters.docker import DockerRuntime

pytestmark = pytest.mark.integration

@pytest.fixture
def make(runtime: DockerRuntime, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Apply a fresh cluster (own scope, network and home); delete --prune it afterwards."""
    yield from fresh_clusters(runtime, tmp_path, "f")


def steps_of(run: Run) -> list[str]:
    return list(json.loads(run.out)["steps"])


# ------------------------------------------------------------------------------------------
# 1. planned switchover under load


def test_planned_switchover_under_load_loses_nothing_and_never_has_two_primaries(
        make: Callable[..., Cluster]) -> None:
    c = make(3)
    writer, sampler = Writer(c, 3), Sampler(c, 3)
    sampler.start()
    writer.start()
    try:
        eventually(lambda: _at_least(writer.acked_count(), 200), 30)
        eventually(lambda: _equal(sampler.writable_seen, {0}), 30)
        started = time.monotonic()
        run = c.cli("promote", c.ref, "--replica", "1", "-o", "json").ok()
        took = time.monotonic() - started
        before = writer.acked_count()
        # the writer found the new primary by itself and keeps acknowledging writes there
        eventually(lambda: _at_least(writer.acked_count(), before + 200), 30)
    finally:
        acked = writer.stop()
        sampler.stop()

    on_new = ids_on(c, 1)
    missing = sorted(set(acked) - on_new)
    print(f"\n[switchover] promote took {took:.2f}s; acknowledged {len(acked)} inserts, "
          f"{writer.errors} failed (unacknowledged), {len(missing)} acknowledged missing on db-1; "
          f"writer connected to {writer.writers_seen}; sampler rounds {sampler.rounds}, "
          f"double-writable rounds {len(sampler.doubles)}")
    print("\n".join(steps_of(run)))
    assert not missing, f"acknowledged ids lost: {missing[:20]}"
    assert writer.writers_seen[0] == 0 and writer.writers_seen[-1] == 1, writer.writers_seen
    assert sampler.doubles == [], f"two writable pods at once: {sampler.doubles[:5]}"
    assert sampler.writable_seen == {0, 1} and sampler.rounds >= 20, (sampler.writable_seen, sampler.rounds)
    assert_healed(c, primary=1, replicas=3)


def _at_least(value: int, floor: int) -> int:
    assert value >= floor, f"{value} < {floor}"
    return value


# ------------------------------------------------------------------------------------------
# 2./3. crash failover (docker kill of the primary mid-load)


def _crash_failover(c: Cluster) -> tuple[list[int], set[int], int, Run]:
    """Kill the primary under load, promote the most advanced standby with --force.

    Returns (acknowledged ids, ids on the new primary, new primary ordinal, promote run).
    """
    writer = Writer(c, 3)
    writer.start()
    try:
        eventually(lambda: _at_least(writer.acked_count(), 300), 30)
        kill(c, 0)
    finally:
        acked = writer.stop()
    assert c.runtime.container_state(c.container(0)) == "exited"  # docker kill does not trigger a restart
    received = {o: int(one(c, o, "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint"))
                for o in (1, 2)}
    target = max(received, key=lambda o: received[o])
    run = c.cli("promote", c.ref, "--replica", str(target), "--force", "-o", "json").ok()
    return acked, ids_on(c, target), target, run


def test_crash_failover_synchronous_loses_no_acknowledged_write(make: Callable[..., Cluster]) -> None:
    c = make(3, synchronous=True)
    # the reconciler sets it once a standby streams
    eventually(lambda: _equal(one(c, 0, "SHOW synchronous_standby_names"), 'ANY 1 ("db-1", "db-2")'), 30)
    acked, on_new, target, run = _crash_failover(c)
    missing = sorted(set(acked) - on_new)
    print(f"\n[sync failover] acknowledged {len(acked)}, missing on {c.app(target)}: {len(missing)}")
    print("\n".join(steps_of(run)))
    assert not missing, f"synchronous commit lost acknowledged ids: {missing[:20]}"
    # the old primary came back as a standby of the new one (rejoin ran automatically)
    assert_healed(c, primary=target, replicas=3)
    assert any("rewound db-0" in s or "re-cloned" in s or "re-clone" in s for s in steps_of(run)), steps_of(run)


def _equal(value: Any, want: Any) -> Any:
    assert value == want, f"{value!r} != {want!r}"
    return value


def test_synchronous_commit_survives_a_switchover(make: Callable[..., Cluster]) -> None:
    c = make(2, synchronous=True)
    eventually(lambda: _equal(one(c, 0, "SHOW synchronous_standby_names"), 'ANY 1 ("db-1")'), 30)
    c.cli("promote", c.ref, "--replica", "1").ok()
    assert_healed(c, primary=1, replicas=2)
    # promote returns once the topology is healed: the guarantee must hold from then on
    assert one(c, 1, "SHOW synchronous_standby_names") == 'ANY 1 ("db-0")'


def test_crash_failover_async_heals_and_reports_loss(make: Callable[..., Cluster]) -> None:
    c = make(3)
    assert one(c, 0, "SHOW synchronous_standby_names") == ""
    acked, on_new, target, run = _crash_failover(c)
    missing = sorted(set(acked) - on_new)
    print(f"\n[async failover] acknowledged {len(acked)}, LOST (acknowledged but missing on "
          f"{c.app(target)}): {len(missing)}")
    print("\n".join(steps_of(run)))
    assert_healed(c, primary=target, replicas=3)
    # the cluster agrees: every pod holds exactly the new primary's rows
    others = [o for o in range(3) if o != target]
    wait_replayed(c, target, others)
    want = ids_on(c, target)
    for o in others:
        assert ids_on(c, o) == want


# ------------------------------------------------------------------------------------------
# 4. rejoin after divergence uses pg_rewind


def _disconnect(c: Cluster, ordinal: int) -> None:
    c.runtime.client.networks.get(c.network).disconnect(c.container(ordinal), force=True)


def _reconnect(c: Cluster, ordinal: int) -> None:
    aliases = [f"{c.name}-{ordinal}.{c.scope}", f"{c.name}-{ordinal}.{c.scope}.voodu",
               f"{c.name}.{c.scope}", f"{c.name}.{c.scope}.voodu"]
    c.runtime.client.networks.get(c.network).connect(c.container(ordinal), aliases=aliases)


def test_crash_failover_rewinds_a_diverged_old_primary(make: Callable[..., Cluster]) -> None:
    c = make(3)
    q(c, 0, "INSERT INTO t SELECT g FROM generate_series(1, 100) g")
    wait_replayed(c, 0, [1, 2])
    volume_before = c.volumes()[c.volume(0)]

    # cut the standbys off, then commit on the primary what nobody else will ever receive
    for o in (1, 2):
        _disconnect(c, o)
    try:
        q(c, 0, "INSERT INTO t SELECT g FROM generate_series(1001, 1100) g")
        q(c, 0, "CHECKPOINT")
        diverged_at = int(one(c, 0, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"))
        kill(c, 0)
    finally:
        for o in (1, 2):
            _reconnect(c, o)
    for o in (1, 2):
        got = int(one(c, o, "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint"))
        assert got < diverged_at, f"{c.app(o)} received the diverged WAL; the test proves nothing"
        assert {i for i in ids_on(c, o) if i > 0} == set(range(1, 101))

    run = c.cli("promote", c.ref, "--replica", "1", "--force", "-o", "json").ok()
    steps = steps_of(run)
    print("\n[rewind]\n" + "\n".join(steps))
    assert any("rewound db-0" in s for s in steps), steps
    assert not any("re-clone" in s for s in steps), steps
    assert c.volumes()[c.volume(0)] == volume_before, "the old primary's volume was re-created"
    assert_healed(c, primary=1, replicas=3)
    # the diverged rows are gone from the old primary, and all three pods agree
    q(c, 1, "INSERT INTO t SELECT g FROM generate_series(101, 150) g")
    wait_replayed(c, 1, [0, 2])
    want = set(range(1, 151))
    for o in range(3):
        assert {i for i in ids_on(c, o) if i > 0} == want, o


# ------------------------------------------------------------------------------------------
# 5. rejoin falls back to wipe + re-clone when pg_rewind cannot run


def test_rejoin_falls_back_to_reclone_when_rewind_fails(make: Callable[..., Cluster]) -> None:
    c = make(2)
    q(c, 0, "INSERT INTO t SELECT g FROM generate_series(1, 100) g")
    # pg_rewind reads the source's control file through pg_read_binary_file(): take that away
    q(c, 0, "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) FROM replicator")
    q(c, 0, "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) "
            "FROM replicator")
    wait_replayed(c, 0, [1])
    volume_before = c.volumes()[c.volume(1)]

    run = c.cli("rejoin", c.ref, "--replica", "1", "-o", "json").ok()
    steps = steps_of(run)
    print("\n[fallback]\n" + "\n".join(steps))
    assert any("pg_rewind failed" in s and "falling back to wipe and re-clone" in s for s in steps), steps
    assert any("permission denied" in s for s in steps), steps  # it failed for the reason we caused
    assert not any("rewound" in s for s in steps), steps
    assert "wiped and re-cloned" in json.loads(run.out)["message"]
    assert c.volumes()[c.volume(1)] != volume_before, "the volume was not re-created"
    assert_healed(c, primary=0, replicas=2)
    wait_replayed(c, 0, [1])
    assert {i for i in ids_on(c, 1) if i > 0} == set(range(1, 101))


# ------------------------------------------------------------------------------------------
# 6. non-default superuser, database, port and replication user


def test_promote_and_back_with_custom_user_database_port(make: Callable[..., Cluster]) -> None:
    c = make(2, user="appuser", database="appdata", port=5433, replication_user="repl")
    q(c, 0, "INSERT INTO t SELECT g FROM generate_series(1, 50) g")

    c.cli("promote", c.ref, "--replica", "1").ok()
    assert_healed(c, primary=1, replicas=2)
    assert ids_on(c, 1) >= set(range(1, 51))
    assert one(c, 1, "SELECT current_user || '/' || current_database() || '/' || current_setting('port')") \
        == "appuser/appdata/5433"
    assert q(c, 1, "SELECT usename FROM pg_stat_replication") == [("repl",)]
    q(c, 1, "INSERT INTO t SELECT g FROM generate_series(51, 80) g")

    c.cli("promote", c.ref, "--replica", "0").ok()
    assert_healed(c, primary=0, replicas=2)
    assert ids_on(c, 0) >= set(range(1, 81))
    q(c, 0, "INSERT INTO t VALUES (81)")


# ------------------------------------------------------------------------------------------
# 7. refusals change nothing


def test_refusals_are_one_line_and_change_nothing(make: Callable[..., Cluster]) -> None:
    c = make(2)
    pods_before = c.pods()

    # --replica missing: a usage error
    assert_refused(c.cli("promote", c.ref), "--replica", code=2)
    # out of range
    assert_refused(c.cli("promote", c.ref, "--replica", "7"), "out of range")
    assert_refused(c.cli("rejoin", c.ref, "--replica", "7"), "out of range")
    # rejoin of the primary
    assert_refused(c.cli("rejoin", c.ref, "--replica", "0"), "current primary")
    # promoting the primary is refused by the pod machine's guard
    assert_refused(c.cli("promote", c.ref, "--replica", "0"), "already the primary")

    # a standby far behind is refused without --force
    q(c, 1, "SELECT pg_wal_replay_pause()")
    try:
        q(c, 0, "CREATE TABLE big (id int, pad text)")
        q(c, 0, "INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 30000) g")

        def lag() -> int:
            rows = q(c, 0, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                           "FROM pg_stat_replication WHERE application_name = 'db-1'")
            return _at_least(int(rows[0][0]), 16 * MiB + 1)

        behind = eventually(lag, 30)
        refused = c.cli("promote", c.ref, "--replica", "1")
        assert_refused(refused, "behind")
        print(f"\n[refusal] db-1 {behind} bytes behind: {refused.err.strip()}")
    finally:
        q(c, 1, "SELECT pg_wal_replay_resume()")

    # nothing changed: same containers, not restarted; same primary; the standby still streams
    assert c.pods() == pods_before
    assert primary_ordinal(c) == "0"
    assert not c.store.resolve(c.scope, c.name).get("PG_SWITCHOVER_TO")
    assert_healed(c, primary=0, replicas=2)
    q(c, 0, "INSERT INTO t VALUES (1)")


# ------------------------------------------------------------------------------------------
# split brain: the entrypoint guard, for real


def test_old_primary_left_stopped_is_rejoined_by_reconcile_not_started_as_a_standby(
        make: Callable[..., Cluster]) -> None:
    """After a promote that left the old primary stopped (--no-restart), the bucket records it in
    PG_REJOIN: reconcile rewinds it onto the new primary instead of starting it as a standby, so
    the entrypoint guard (the last line of defence) never has to fire."""
    c = make(2)
    c.cli("promote", c.ref, "--replica", "1", "--no-restart").ok()
    assert c.pods()[c.container(0)].status == "exited"
    assert c.store.resolve(c.scope, c.name)["PG_REJOIN"] == "0"
    plan = c.cli("reconcile", c.ref, "--dry-run").ok().out
    assert "rejoin 0" in plan, plan
    for _ in range(10):
        c.cli("reconcile", c.ref)
        if "PG_REJOIN" not in c.store.resolve(c.scope, c.name):
            break
    c.wait_streaming([0], primary=1, timeout=60)
    assert "refusing to start replica 0" not in c.runtime.logs_tail(c.container(0), 200)
    assert one(c, 1, "SELECT pg_is_in_recovery()") is False and one(c, 0, "SELECT pg_is_in_recovery()") is True


def test_guard_is_the_last_line_when_the_intent_is_lost(make: Callable[..., Cluster]) -> None:
    """Without the recorded intent (lost by hand), reconcile starts the old primary as a standby:
    the entrypoint guard refuses its primary data — never a second writable primary — and the
    reconciler then rewinds it by itself."""
    c = make(2)
    c.cli("promote", c.ref, "--replica", "1", "--no-restart").ok()
    c.store.patch(c.scope, c.name, {"PG_REJOIN": ""})
    c.cli("reconcile", c.ref).ok()  # starts pod 0: it is down, and the primary (db-1) serves

    def guard_tripped() -> None:
        assert "refusing to start replica 0" in c.runtime.logs_tail(c.container(0), 200)

    eventually(guard_tripped, 30)
    assert one(c, 1, "SELECT pg_is_in_recovery()") is False
    for _ in range(10):
        c.cli("reconcile", c.ref)
        try:
            c.wait_streaming([0], primary=1, timeout=5)
            break
        except AssertionError:
            continue
    c.wait_streaming([0], primary=1, timeout=60)
    assert one(c, 0, "SELECT pg_is_in_recovery()") is True


# ------------------------------------------------------------------------------------------
# a pg_config Postgres rejects is rolled back, never left to break the next restart


def test_rejected_pg_config_is_rolled_back_and_apply_fails_fast(make: Callable[..., Cluster]) -> None:
    c = make(2, pg_config={"work_mem": "8MB"})
    overrides = c.home / "assets" / c.scope / c.name / "pg_overrides_conf"
    before = overrides.read_text()
    started = time.monotonic()
    result = c.apply(replicas=2, pg_config={"work_mem": "8MB", "shard_buffers": "1GB"})
    assert result.code == 1 and "rejected by Postgres" in result.err and "shard_buffers" in result.err, result
    assert time.monotonic() - started < 30, "a permanent failure must stop apply, not retry until the timeout"
    assert overrides.read_text() == before, "the previous overrides must be put back"
    # the cluster still restarts cleanly on the kept settings
    c.runtime.restart_container(c.container(0))
    assert one(c, 0, "SHOW work_mem") == "8MB"
    c.wait_streaming([1], timeout=60)


# ------------------------------------------------------------------------------------------
# reconcile --watch keeps repairing drift


def test_watch_brings_back_a_removed_standby(make: Callable[..., Cluster]) -> None:
    import os
    import subprocess
    import sys

    from tests.integration.conftest import TEST_LABEL

    c = make(2)
    env = {**os.environ, "VOODU_POSTGRES_LABELS": f"{TEST_LABEL}={SESSION}"}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "voodu_postgres", "--home", str(c.home), "reconcile", c.ref, "--watch",
         "--interval", "0.5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        old_id = c.pods()[c.container(1)].id
        c.runtime.client.containers.get(c.container(1)).remove(force=True)
        eventually(lambda: _assert(c.pods().get(c.container(1)) is not None
                                   and c.pods()[c.container(1)].id != old_id), 60)
        c.wait_streaming([1], timeout=60)
        assert watcher.poll() is None, "the watch loop must keep running"
    finally:
        watcher.terminate()
        out, _err = watcher.communicate(timeout=30)
    assert "create pod db-1" in out


def _assert(condition: bool) -> None:
    assert condition
