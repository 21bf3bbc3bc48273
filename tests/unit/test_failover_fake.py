"""``promote`` and ``rejoin`` (failover.py, repair.py) on the in-memory runtime: refusals that change
nothing, planned switchovers, forced failovers, and the failures in between (an unclean fence,
pg_promote failing, pg_rewind failing) — what the operator reads, what the bucket records
(PG_PRIMARY_ORDINAL / PG_SWITCHOVER_TO / PG_REJOIN), which pod accepts writes afterwards and that
no data is wiped when it must not be.

repair.wait_until polls with ``time.sleep``/``time.monotonic``: the fixture points that module's
``time`` at the harness's fake clock, so a wait that cannot succeed times out at once and nothing
really sleeps."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.fake_runtime import Harness, fmt_lsn
from voodu_postgres.adapters.docker import RuntimeFailure
from voodu_postgres.domain.intents import SwitchoverRequest
from voodu_postgres.domain.record import ClusterRecord
from voodu_postgres.domain.spec import PostgresSpec
from voodu_postgres.reconciler import effects as repair
from voodu_postgres.reconciler import switchover as failover
from voodu_postgres.reconciler.switchover import FailoverError

REF = "shop/db"


pytestmark = pytest.mark.usefixtures("never_really_sleep")


class Cluster(Harness):
    """A harness that remembers the body it was applied with."""

    def __init__(self, home: Path, body: dict[str, Any]) -> None:
        super().__init__(home)
        self.body = body


Make = Callable[..., Cluster]


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Make:
    """A converged cluster (replicas=3 unless told), repair's waits on its fake clock."""

    def build(**body: Any) -> Cluster:
        body.setdefault("replicas", 3)
        h = Cluster(tmp_path, body)
        monkeypatch.setattr(repair, "time", SimpleNamespace(monotonic=h.clock, sleep=h.clock.sleep))
        report = h.apply(**body)
        assert report.converged, report.message
        return h

    return build


@pytest.fixture
def h(make: Make) -> Cluster:
    return make()


# -- helpers ------------------------------------------------------------------------------------


def body(h: Harness) -> dict[str, Any]:
    assert isinstance(h, Cluster)
    return dict(h.body)


def spec(h: Harness) -> PostgresSpec:
    return h.spec(**body(h))


def bucket(h: Harness) -> dict[str, str]:
    return h.store.resolve("shop", "db")


def writable(h: Harness) -> list[int]:
    return [p.ordinal for p in h.observe(**body(h)).pods if p.writable]


def streams_from(h: Harness, ordinal: int) -> str | None:
    pod = h.observe(**body(h)).pods[ordinal]
    return pod.pg.receiver_host if pod.pg is not None else None


def untimed(lines: list[str]) -> list[str]:
    """Progress lines with their durations masked."""
    return [re.sub(r"\(\d+\.\d\ds", "(…s", line) for line in lines]


def lsn(h: Harness, ordinal: int) -> int:
    """The WAL position on a pod's volume, with the simulation brought up to now first."""
    h.fake.container(h.container(ordinal))
    return h.fake.volume(h.volume(ordinal)).lsn


def state_file(h: Harness) -> str:
    return (h.state_dir() / "primary_ordinal").read_text()


def promote(h: Harness, lines: list[str] | None = None, **kw: Any) -> str:
    return failover.promote(spec(h), h.ctx, progress=(lines if lines is not None else []).append, **kw)


def rejoin(h: Harness, ordinal: int, lines: list[str] | None = None) -> str:
    return failover.rejoin(spec(h), h.ctx, ordinal=ordinal, progress=(lines if lines is not None else []).append)


def converged(h: Harness, primary: int) -> str:
    """Reconcile; it must end with ``primary`` the only writer and every other pod streaming from it,
    and no intent left in the bucket."""
    report = h.apply(**body(h))
    assert report.converged, report.message
    b = bucket(h)
    assert b["PG_PRIMARY_ORDINAL"] == str(primary)
    assert not b.get("PG_SWITCHOVER_TO") and not b.get("PG_REJOIN"), b
    assert writable(h) == [primary]
    for o in range(body(h)["replicas"]):
        if o != primary:
            assert streams_from(h, o) == f"db-{primary}.shop.voodu", o
    return report.message


class Nothing:
    """Snapshot of what a refused command must leave alone: bucket, state file, writable pod, and no
    mutating Docker call at all."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.bucket = bucket(h)
        self.writable = writable(h)
        self.mark = len(h.fake.events)
        self.state = state_file(h)

    def changed(self) -> None:
        h = self.h
        assert bucket(h) == self.bucket
        assert not bucket(h).get("PG_SWITCHOVER_TO") and not bucket(h).get("PG_REJOIN")
        assert writable(h) == self.writable
        assert state_file(h) == self.state
        assert h.fake.events[self.mark:] == []


def coarse_polls(monkeypatch: pytest.MonkeyPatch, h: Harness, step: float = 5.0) -> None:
    """repair's polls move the fake clock ``step`` seconds each: a wait bound to time out does so in a
    few polls instead of a thousand."""
    monkeypatch.setattr(repair, "time", SimpleNamespace(monotonic=h.clock,
                                                        sleep=lambda s: h.clock.sleep(max(s, step))))


def events_since(h: Harness, mark: int, *methods: str) -> list[tuple[str, str]]:
    return [e for e in h.fake.events[mark:] if not methods or e[0] in methods]


# -- promote: refusals that change nothing --------------------------------------------------------


def test_promote_refuses_a_single_replica_cluster(make: Make) -> None:
    h = make(replicas=1)
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        promote(h, target=0)
    assert str(caught.value) == ("postgres shop/db has replicas=1; promote needs a standby "
                                 "(raise replicas and apply first)")
    nothing.changed()
    assert writable(h) == [0]


@pytest.mark.parametrize("target", [3, -1])
def test_promote_refuses_a_replica_out_of_range(h: Harness, target: int) -> None:
    nothing = Nothing(h)
    with pytest.raises(FailoverError, match=rf"^--replica {target} out of range \(valid: 0\.\.2\)$"):
        promote(h, target=target)
    nothing.changed()


def test_promote_refuses_the_current_primary(h: Harness) -> None:
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        promote(h, target=0, force=True)
    assert str(caught.value) == ("db-0 is already the primary — nothing to promote "
                                 "(pick a standby with --replica)")
    nothing.changed()
    assert writable(h) == [0]


def test_promote_refuses_a_stopped_standby(h: Harness) -> None:
    h.fake.stop_container(h.container(1))
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        promote(h, target=1, force=True)
    assert str(caught.value) == "cannot promote db-1: it is down, not a streaming standby"
    nothing.changed()
    assert h.fake.container(h.container(0)).state == "running"


def test_promote_refuses_a_standby_still_cloning(h: Harness) -> None:
    h.fake.remove_container(h.container(2))
    h.fake.remove_volume(h.volume(2))
    h.fake.stall(h.container(2))
    h.apply(wait=False, **body(h))  # re-creates db-2: it starts cloning and hangs there
    nothing = Nothing(h)
    with pytest.raises(FailoverError, match=r"^cannot promote db-2: it is bootstrapping, not a streaming standby$"):
        promote(h, target=2)
    nothing.changed()


def test_promote_refuses_a_standby_not_streaming_from_the_primary(h: Harness) -> None:
    h.fake.disconnect(h.container(1))
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        promote(h, target=1)
    assert str(caught.value) == "db-1 is not streaming from db-0; wait for it to catch up, or pass --force"
    # the intent was recorded then dropped again; the primary was never fenced
    nothing.changed()
    assert h.fake.mutations("stop_container") == []


def test_promote_refuses_a_standby_lagging_more_than_max_lag(h: Harness) -> None:
    h.fake.lag(h.container(1), 32 * 1024 * 1024)
    h.fake.write(h.container(0), 48 * 1024 * 1024)
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        promote(h, target=1)
    assert str(caught.value) == ("db-1 is 33554432 bytes behind db-0 (limit 16777216); wait for it to catch up, "
                                 "or pass --force")
    nothing.changed()
    with pytest.raises(FailoverError, match=r"^db-1 is 33554432 bytes behind db-0 \(limit 1000\); "):
        promote(h, target=1, max_lag=1000)
    nothing.changed()
    # a --max-lag above the lag accepts it
    lines: list[str] = []
    promote(h, lines, target=1, max_lag=64 * 1024 * 1024)
    assert lines[0] == "db-1 streams from db-0, replay lag 33554432 bytes"
    assert bucket(h)["PG_PRIMARY_ORDINAL"] == "1" and writable(h) == [1]


def test_force_skips_the_lag_check_and_the_fence_still_ships_every_write(h: Harness) -> None:
    h.fake.lag(h.container(1), 32 * 1024 * 1024)
    h.fake.write(h.container(0), 48 * 1024 * 1024)
    final = lsn(h, 0)
    assert lsn(h, 1) == final - 32 * 1024 * 1024
    lines: list[str] = []
    message = promote(h, lines, target=1, force=True)
    assert message.startswith("postgres shop/db: primary is now db-1 (was db-0); ")
    assert "--force: skipping the lag check" in lines
    assert any("(db-1 had received all WAL of db-0, up to " in line for line in lines)
    # the clean shutdown flushed the lagging standby: nothing acknowledged on db-0 is lost
    assert h.fake.volume(h.volume(1)).lsn >= final
    converged(h, 1)


def test_promote_refuses_while_the_primary_is_unreachable_without_force(h: Harness) -> None:
    h.fake.kill(h.container(0))
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        promote(h, target=1)
    assert str(caught.value) == ("primary db-0 is not reachable (exited); pass --force to fail over to db-1 "
                                 "(writes it has not received are lost)")
    nothing.changed()
    assert writable(h) == []


def test_promote_names_the_error_of_a_running_but_unreachable_primary(h: Harness) -> None:
    h.fake.fail_exec(h.container(0))  # psql cannot connect: hung or partitioned
    with pytest.raises(FailoverError, match=r"^primary db-0 is not reachable \(.*server closed the connection "
                                            r"unexpectedly \(injected\)\); pass --force"):
        promote(h, target=1)
    assert bucket(h)["PG_PRIMARY_ORDINAL"] == "0" and not bucket(h).get("PG_SWITCHOVER_TO")
    assert h.fake.container(h.container(0)).state == "running", "not fenced without --force"


def test_promote_refuses_to_fence_a_primary_in_a_split_brain(h: Harness) -> None:
    assert h.psql(2, "SELECT pg_promote(true, 60)").output.strip() == "t"  # db-2 writable too
    nothing = Nothing(h)
    with pytest.raises(FailoverError, match=r"^cannot fence db-0: it is split-brain$"):
        promote(h, target=1)
    nothing.changed()
    assert writable(h) == [0, 2]


# -- planned switchover ---------------------------------------------------------------------------


def test_planned_switchover_with_no_restart_leaves_the_old_primary_stopped_for_rejoin(h: Harness) -> None:
    h.fake.write(h.container(0), 8192)
    committed = lsn(h, 0)
    mark = len(h.fake.events)
    lines: list[str] = []
    message = promote(h, lines, target=1, no_restart=True)
    assert message == "postgres shop/db: primary is now db-1 (was db-0); db-0 fenced, db-1 primary, db-2 streaming"
    b = bucket(h)
    assert (b["PG_PRIMARY_ORDINAL"], b.get("PG_SWITCHOVER_TO", ""), b.get("PG_REJOIN", "")) == ("1", "", "0")
    assert state_file(h) == "1"
    assert writable(h) == [1]
    assert h.fake.container(h.container(0)).state == "exited"
    assert h.fake.volume(h.volume(1)).lsn >= committed and h.fake.volume(h.volume(1)).timeline == 2
    assert streams_from(h, 2) == "db-1.shop.voodu"
    # db-2 was re-pointed by a reload: never restarted; db-0 only stopped; nothing wiped
    assert events_since(h, mark) == [("stop_container", h.container(0))]
    assert untimed(lines) == [
        "db-1 streams from db-0, replay lag 0 bytes",
        # the engine performs the request: one line per step, one per observed role change
        "✓ fence db-0 — fenced db-0: clean shutdown, so every committed write was sent to the standbys",
        "db-0: primary → fenced",
        f"✓ promote db-1 — promoted db-1: accepting writes after 0.00s (db-1 had received all WAL of db-0, "
        f"up to {fmt_lsn(committed)})",
        "✓ record primary db-1 — recorded db-1 as the primary; db-0 will rejoin it",
        "db-1: promoting → primary",
        "✓ repoint db-2 — re-pointed db-2 at db-1 (reload, no restart)",
        "--no-restart: db-0 left stopped; run `voodu-postgres rejoin shop/db --replica 0` (or reconcile) to "
        "bring it back as a standby",
    ]
    # the rejoin brings it back with its data (pg_rewind), and clears PG_REJOIN
    lines.clear()
    message = rejoin(h, 0, lines)
    assert message == ("postgres shop/db: rejoined db-0 as a standby — pg_rewind kept its data (0.00s); "
                       "db-0 streaming, db-1 primary, db-2 streaming")
    assert lines[0] == "rewound db-0 onto db-1's timeline; starting it as a standby"
    assert lines[-1] == "db-0 streams from db-1"
    assert not bucket(h).get("PG_REJOIN", "")
    assert h.fake.mutations("remove_volume") == []
    converged(h, 1)


def test_planned_switchover_rejoins_the_old_primary_and_leaves_one_writer(h: Harness) -> None:
    message = promote(h, target=2)
    assert message == "postgres shop/db: primary is now db-2 (was db-0); db-0 streaming, db-1 streaming, db-2 primary"
    assert writable(h) == [2]
    b = bucket(h)
    assert (b["PG_PRIMARY_ORDINAL"], b.get("PG_SWITCHOVER_TO", ""), b.get("PG_REJOIN", "")) == ("2", "", "")
    assert streams_from(h, 0) == streams_from(h, 1) == "db-2.shop.voodu"
    assert h.fake.mutations("remove_volume") == []


def test_a_transient_psql_failure_while_waiting_for_the_wal_is_retried(h: Harness) -> None:
    h.fake.fail_exec(h.container(1), contains="SELECT pg_last_wal_receive_lsn()", times=2)
    lines: list[str] = []
    promote(h, lines, target=1)
    # two polls failed, the third passed: retried inside the one promote step, which succeeded
    promoted = [line for line in lines if line.startswith("✓ promote db-1 — ")]
    assert len(promoted) == 1 and "(db-1 had received all WAL of db-0, up to " in promoted[0]
    assert not any(line.startswith("✗") for line in lines), lines
    converged(h, 1)


def test_synchronous_standby_names_follow_the_new_primary(make: Make) -> None:
    h = make(synchronous=True)
    assert h.fake.volume(h.volume(0)).auto_conf["synchronous_standby_names"] == 'ANY 1 ("db-1", "db-2")'
    assert "synchronous_standby_names" not in h.fake.volume(h.volume(1)).auto_conf
    lines: list[str] = []
    promote(h, lines, target=1, no_restart=True)
    # set on db-1 as soon as db-2 streams from it (before the old primary is back)
    assert h.fake.volume(h.volume(1)).auto_conf["synchronous_standby_names"] == 'ANY 1 ("db-0", "db-2")'
    sync = '✓ set synchronous standbys db-1 — synchronous_standby_names = ANY 1 ("db-0", "db-2")'
    assert lines.index(sync) > lines.index("✓ repoint db-2 — re-pointed db-2 at db-1 (reload, no restart)")
    assert lines.count(sync) == 1, "set once"
    rejoin(h, 0)
    converged(h, 1)


# -- an unclean fence, pg_promote failing ----------------------------------------------------------


def test_an_unclean_fence_is_an_error_the_intent_is_cleared_and_reconcile_restarts_the_primary(
        h: Harness) -> None:
    h.fake.stop_exit_codes[h.container(0)] = 137
    with pytest.raises(FailoverError) as caught:
        promote(h, target=1)
    assert str(caught.value) == ("fencing db-0: it stopped with exit code 137, not cleanly; inspect it, "
                                 "then retry with --force (the switchover was dropped; reconcile restarts it)")
    b = bucket(h)
    assert (b["PG_PRIMARY_ORDINAL"], b.get("PG_SWITCHOVER_TO", "")) == ("0", "") and not b.get("PG_REJOIN")
    assert state_file(h) == "0"
    assert writable(h) == [], "db-0 is stopped and db-1 was not promoted"
    assert h.fake.volume(h.volume(1)).timeline == 1
    del h.fake.stop_exit_codes[h.container(0)]
    mark = len(h.fake.events)
    converged(h, 0)
    assert ("start_container", h.container(0)) in events_since(h, mark)


@pytest.mark.parametrize("fault,expected", [
    ({"exit_code": 0, "output": "f"}, "pg_promote() on db-1 returned false: not promoted within its wait"),
    ({"failure": RuntimeFailure("server refused the statement (injected)")},
     "db-1: server refused the statement (injected)"),
], ids=["returns-f", "refused"])
def test_pg_promote_failing_leaves_the_intent_and_reconcile_finishes_the_switchover(
        h: Harness, fault: dict[str, Any], expected: str) -> None:
    h.fake.fail_exec(h.container(1), contains="pg_promote", times=1, **fault)
    with pytest.raises(FailoverError) as caught:
        promote(h, target=1)
    assert str(caught.value) == f"{expected} — `voodu-postgres reconcile {REF}` finishes the switchover"
    b = bucket(h)
    assert (b["PG_PRIMARY_ORDINAL"], b.get("PG_SWITCHOVER_TO", "")) == ("0", "1"), "the intent stays for reconcile"
    assert state_file(h) == "0"
    assert writable(h) == [] and h.fake.container(h.container(0)).state == "exited"
    converged(h, 1)
    assert h.fake.volume(h.volume(1)).timeline == 2
    assert h.fake.mutations("remove_volume") == []


def test_a_connection_dropped_during_pg_promote_is_retried(h: Harness) -> None:
    h.fake.fail_exec(h.container(1), contains="pg_promote", times=1)  # "server closed the connection"
    lines: list[str] = []
    message = promote(h, lines, target=1)
    assert message.startswith("postgres shop/db: primary is now db-1 (was db-0); ")
    assert not any(line.startswith("✗") for line in lines), "retried inside the step (transient)"
    converged(h, 1)


# -- a promote killed right after recording its request: the engine carries it on --------------------


def test_a_recorded_request_is_carried_forward_by_reconcile(h: Harness) -> None:
    """The command died after writing PG_SWITCHOVER_TO and PG_SWITCHOVER_REQUEST, before anything
    moved: the next reconcile performs it (a clean fence, the WAL wait, the promote, the flip, the
    re-point and the rejoin) instead of rolling it back, and loses nothing."""
    h.fake.write(h.container(0), 0x2000)
    committed = lsn(h, 0)
    h.store.patch("shop", "db", ClusterRecord.ask_switchover(SwitchoverRequest(to=2, source=0, planned=True)))
    message = converged(h, 2)
    assert "db-2 primary" in message
    assert h.fake.volume(h.volume(2)).lsn >= committed and h.fake.volume(h.volume(2)).timeline == 2
    assert not bucket(h).get("PG_SWITCHOVER_REQUEST")
    assert ("stop_container", h.container(0)) in h.fake.events


def test_a_recorded_request_whose_target_fell_behind_is_dropped_with_the_reason(h: Harness) -> None:
    h.fake.lag(h.container(1), 4096)
    h.fake.write(h.container(0), 0x4000)
    request = SwitchoverRequest(to=1, source=0, planned=True, max_lag=1024)
    h.store.patch("shop", "db", ClusterRecord.ask_switchover(request))
    report = h.apply(**body(h))
    assert report.converged and bucket(h)["PG_PRIMARY_ORDINAL"] == "0"
    dropped = [o.detail for o in report.outcomes if o.step.kind.value == "abandon switchover"]
    assert dropped == ["dropped the switchover to db-1: db-1 is 4096 bytes behind db-0 (limit 1024); wait for it "
                       "to catch up, or pass --force"]
    assert not bucket(h).get("PG_SWITCHOVER_TO") and not bucket(h).get("PG_SWITCHOVER_REQUEST")
    assert writable(h) == [0], "the old primary was never fenced"


# -- forced failover --------------------------------------------------------------------------------


def test_forced_failover_to_the_most_advanced_standby_reports_its_lsn(h: Harness) -> None:
    h.fake.write(h.container(0), 0x1000)
    received = lsn(h, 1)
    assert received == lsn(h, 0) == lsn(h, 2)
    h.fake.kill(h.container(0))
    lines: list[str] = []
    message = promote(h, lines, target=1, force=True)
    note = (f" — failover: db-0 was down; db-1 had received WAL up to {fmt_lsn(received)}; "
            "writes after that point on db-0 are lost")
    assert message == f"postgres shop/db: primary is now db-1 (was db-0){note}; " \
                      "db-0 streaming, db-1 primary, db-2 streaming"
    assert any(line.endswith(note) for line in lines if line.startswith("✓ promote db-1 — ")), lines
    assert not any(line.startswith("fenced db-0") for line in lines), "an exited container is not stopped again"
    assert writable(h) == [1]
    converged(h, 1)


def test_forced_failover_stops_a_primary_docker_keeps_restarting(h: Harness) -> None:
    h.fake.crash_loop(h.container(0), "PANIC:  could not write to file \"pg_wal/xlogtemp\": No space left on device")
    h.fake.restart_container(h.container(0))
    assert h.fake.container(h.container(0)).state == "restarting"
    lines: list[str] = []
    message = promote(h, lines, target=2, force=True, no_restart=True)
    assert "✓ fence db-0 — fenced db-0: stopped its restarting container" in lines
    assert h.fake.container(h.container(0)).state == "exited", "the stop also ends Docker's restarts"
    assert message.startswith("postgres shop/db: primary is now db-2 (was db-0) — failover: db-0 was down;")
    assert bucket(h).get("PG_REJOIN", "") == "0" and writable(h) == [2]
    h.fake.heal(h.container(0))
    rejoin(h, 0)
    converged(h, 2)


def test_forced_failover_fences_a_running_but_unreachable_primary(h: Harness) -> None:
    h.fake.fail_exec(h.container(0))
    lines: list[str] = []
    promote(h, lines, target=1, force=True, no_restart=True)
    assert "✓ fence db-0 — fenced db-0: stopped its running container" in lines
    assert h.fake.container(h.container(0)).state == "exited"
    assert bucket(h)["PG_PRIMARY_ORDINAL"] == "1" and bucket(h).get("PG_REJOIN", "") == "0"
    assert writable(h) == [1]


def test_forced_failover_to_a_less_advanced_standby_needs_yes(h: Harness) -> None:
    h.fake.lag(h.container(1), 0x2000)
    h.fake.write(h.container(0), 0x3000)
    behind, ahead = lsn(h, 1), lsn(h, 2)
    assert ahead - behind == 0x2000
    h.fake.kill(h.container(0))
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        promote(h, target=1, force=True)
    assert str(caught.value) == ("db-2 has received 8192 bytes more WAL than db-1; promote --replica 2 instead, "
                                 "or add --yes to accept losing them")
    nothing.changed()
    assert writable(h) == [] and h.fake.volume(h.volume(1)).timeline == 1

    lines: list[str] = []
    message = promote(h, lines, target=1, force=True, yes=True)
    assert message.startswith(f"postgres shop/db: primary is now db-1 (was db-0) — failover: db-0 was down; "
                              f"db-1 had received WAL up to {fmt_lsn(behind)}, 8192 bytes behind db-2; "
                              "writes after that point on db-0 are lost; ")
    assert bucket(h)["PG_PRIMARY_ORDINAL"] == "1" and writable(h) == [1]


def test_forced_failover_to_the_most_advanced_standby_needs_no_yes(h: Harness) -> None:
    h.fake.lag(h.container(1), 0x2000)
    h.fake.write(h.container(0), 0x3000)
    ahead = lsn(h, 2)
    h.fake.kill(h.container(0))
    message = promote(h, target=2, force=True, no_restart=True)
    assert f"db-2 had received WAL up to {fmt_lsn(ahead)}; writes after" in message
    assert "bytes behind" not in message
    assert writable(h) == [2]


def test_forced_failover_skips_a_standby_whose_position_cannot_be_read(h: Harness) -> None:
    h.fake.kill(h.container(0))
    h.fake.fail_exec(h.container(2), contains="SELECT pg_last_wal_receive_lsn()")
    message = promote(h, target=1, force=True, no_restart=True)
    assert "db-1 had received WAL up to 0/3000060" in message
    assert bucket(h)["PG_PRIMARY_ORDINAL"] == "1" and writable(h) == [1]


# -- healing after the promotion: reported, never raised -------------------------------------------


def test_a_standby_that_cannot_be_repointed_is_reported_and_reconcile_repoints_it(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.fake.fail_exec(h.container(2), contains="--repoint", times=1, exit_code=1,
                     output="bash: /voodu/entrypoint.sh: Permission denied")
    coarse_polls(monkeypatch, h)
    lines: list[str] = []
    message = promote(h, lines, target=1)
    assert "✗ repoint db-2 — db-2: could not rewrite primary_conninfo: bash: /voodu/entrypoint.sh: " \
           "Permission denied" in lines
    head, _, tail = message.partition("\n")
    assert head.startswith("postgres shop/db: primary is now db-1 (was db-0); ")
    assert tail.startswith("⚠ not settled yet: shop/db: repoint 2: db-2 follows db-0.shop.voodu, not db-1: db-2: "
                           "could not rewrite primary_conninfo") and tail.endswith(
        "— `voodu-postgres reconcile shop/db` finishes it")
    assert bucket(h)["PG_PRIMARY_ORDINAL"] == "1" and writable(h) == [1]
    assert streams_from(h, 2) is None, "it still follows db-0"
    converged(h, 1)


def test_a_stopped_standby_is_left_to_follow_the_new_primary_when_it_starts(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.fake.stop_container(h.container(2))
    coarse_polls(monkeypatch, h)
    lines: list[str] = []
    message = promote(h, lines, target=1)
    # the engine converges the whole cluster: the stopped standby is started and follows db-1
    assert "✓ start pod db-2 — started shop-db.2" in lines
    assert "timed out" not in message and "db-2 streaming" in message
    assert streams_from(h, 2) == "db-1.shop.voodu"
    converged(h, 1)


def test_a_failed_rejoin_after_the_promotion_is_reported_not_raised(h: Harness) -> None:
    h.fake.rewind_output = "pg_rewind: error: could not connect to server: timeout expired"
    message = promote(h, target=1)
    head, _, tail = message.partition("\n")
    assert head == "postgres shop/db: primary is now db-1 (was db-0); db-0 fenced, db-1 primary, db-2 streaming"
    assert tail == ("⚠ not settled yet: shop/db: rejoin 0: db-0 was the primary: rewind it onto db-1 (re-clone if "
                    "that fails): pg_rewind could not reach db-1 (pg_rewind: error: could not connect to server: "
                    "timeout expired); db-0 is stopped with its data intact — fix that and retry — "
                    "`voodu-postgres reconcile shop/db` finishes it")
    assert bucket(h).get("PG_REJOIN", "") == "0" and writable(h) == [1]
    assert h.fake.mutations("remove_volume") == []
    h.fake.rewind_output = None
    converged(h, 1)


# -- interrupted operations found by the next command -----------------------------------------------


def test_a_switchover_that_cannot_be_finished_stops_the_next_command(h: Harness) -> None:
    h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": "1"})
    h.fake.stop_container(h.container(0))  # fenced by the interrupted promote
    h.fake.stop_container(h.container(1))  # and its target went down too
    expected = ("could not finish the interrupted switchover to db-1: shop/db: blocked: an interrupted switchover to "
                "db-1 cannot finish: db-1 is down and db-0 is fenced; start shop-db.1 (docker start) and reconcile")
    lines: list[str] = []
    with pytest.raises(FailoverError) as caught:
        promote(h, lines, target=2, force=True)
    assert str(caught.value) == expected
    assert lines[0] == "finishing an interrupted switchover to db-1 first"
    with pytest.raises(FailoverError) as caught:
        rejoin(h, 2)
    assert str(caught.value) == expected
    b = bucket(h)
    assert (b["PG_PRIMARY_ORDINAL"], b.get("PG_SWITCHOVER_TO", "")) == ("0", "1"), "left for the operator"
    assert writable(h) == [] and h.fake.container(h.container(2)).state == "running"
    # what the message says works
    h.fake.start_container(h.container(1))
    converged(h, 1)


def test_a_pending_rejoin_is_finished_before_the_next_promote(h: Harness) -> None:
    promote(h, target=1, no_restart=True)
    assert bucket(h).get("PG_REJOIN", "") == "0"
    lines: list[str] = []
    message = promote(h, lines, target=2)
    assert lines[0] == "finishing an interrupted rejoin of db-0 first"
    assert message.startswith("postgres shop/db: primary is now db-2 (was db-1); ")
    converged(h, 2)


def test_rejoin_finishes_an_interrupted_switchover_first(h: Harness) -> None:
    h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": "1"})
    h.fake.stop_container(h.container(0))
    lines: list[str] = []
    with pytest.raises(FailoverError, match=r"^refusing to rejoin db-1: it is the current primary$"):
        rejoin(h, 1, lines)
    assert lines[0] == "finishing an interrupted switchover to db-1 first"
    converged(h, 1)


# -- rejoin -----------------------------------------------------------------------------------------


def test_rejoin_refuses_out_of_range_and_the_current_primary(h: Harness) -> None:
    nothing = Nothing(h)
    with pytest.raises(FailoverError, match=r"^--replica 3 out of range \(valid: 0\.\.2\)$"):
        rejoin(h, 3)
    with pytest.raises(FailoverError) as caught:
        rejoin(h, 0)
    assert str(caught.value) == "refusing to rejoin db-0: it is the current primary"
    nothing.changed()
    assert writable(h) == [0]


def test_rejoin_refuses_while_the_primary_is_not_serving(h: Harness) -> None:
    h.fake.kill(h.container(0))
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        rejoin(h, 1)
    assert str(caught.value) == "the primary db-0 is not serving; rejoin needs a live primary"
    nothing.changed()
    assert h.fake.container(h.container(1)).state == "running", "the standby was not stopped"


def test_rejoin_refuses_a_standby_still_cloning(h: Harness) -> None:
    h.fake.remove_container(h.container(1))
    h.fake.remove_volume(h.volume(1))
    h.fake.stall(h.container(1))
    h.apply(wait=False, **body(h))
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        rejoin(h, 1)
    assert str(caught.value) == ("cannot rejoin db-1 while it is bootstrapping; wait for it to settle, or delete "
                                 "its container and reconcile")
    nothing.changed()


def test_rejoin_of_a_pod_whose_container_is_gone_points_at_reconcile(h: Harness) -> None:
    h.fake.remove_container(h.container(1))
    nothing = Nothing(h)
    with pytest.raises(FailoverError) as caught:
        rejoin(h, 1)
    assert str(caught.value) == "shop-db.1 does not exist; `voodu-postgres reconcile shop/db` recreates it"
    nothing.changed()
    assert h.fake.volume(h.volume(1)).initialized, "its data volume is kept"
    converged(h, 0)


def test_rejoin_of_a_running_standby_stops_rewinds_and_restarts_it(h: Harness) -> None:
    mark = len(h.fake.events)
    lines: list[str] = []
    message = rejoin(h, 2, lines)
    assert message.startswith("postgres shop/db: rejoined db-2 as a standby — pg_rewind kept its data")
    assert lines[:2] == ["stopped db-2", "rewound db-2 onto db-0's timeline; starting it as a standby"]
    assert events_since(h, mark) == [("stop_container", h.container(2)), ("run_oneshot", h.container(2)),
                                     ("start_container", h.container(2))]
    assert writable(h) == [0] and not bucket(h).get("PG_REJOIN", "")


def test_rejoin_of_a_former_primary_refused_by_the_entrypoint_guard(h: Harness) -> None:
    promote(h, target=1, no_restart=True)
    # someone clears the intent and starts the old primary: its data has no standby.signal
    h.store.patch("shop", "db", {"PG_REJOIN": ""})
    h.fake.start_container(h.container(0))
    assert h.fake.container(h.container(0)).state == "restarting"
    assert h.observe(**body(h)).pods[0].guard_tripped
    assert writable(h) == [1]
    lines: list[str] = []
    rejoin(h, 0, lines)
    assert lines[:2] == ["stopped db-0", "rewound db-0 onto db-1's timeline; starting it as a standby"]
    assert h.fake.mutations("remove_volume") == []
    converged(h, 1)


def test_rejoin_falls_back_to_wipe_and_reclone_when_pg_rewind_fails(h: Harness) -> None:
    promote(h, target=1, no_restart=True)
    old_volume = h.fake.volume(h.volume(0))
    h.fake.rewind_output = ("pg_rewind: servers diverged at WAL location 0/3000060 on timeline 1\n"
                            "pg_rewind: error: could not find previous WAL record at 0/3000028")
    mark = len(h.fake.events)
    lines: list[str] = []
    message = rejoin(h, 0, lines)
    assert message == ("postgres shop/db: rejoined db-0 as a standby — pg_rewind failed, so it was wiped and "
                       "re-cloned from the primary; db-0 streaming, db-1 primary, db-2 streaming")
    assert lines[0] == ("pg_rewind failed (pg_rewind: error: could not find previous WAL record at 0/3000028); "
                        "falling back to wipe and re-clone")
    assert events_since(h, mark) == [
        ("run_oneshot", h.container(0)), ("remove_container", h.container(0)), ("remove_volume", h.volume(0)),
        ("run_pod", h.container(0)), ("create_volume", h.volume(0))]
    assert h.fake.volume(h.volume(0)) is not old_volume, "the volume was re-created"
    assert h.fake.volume(h.volume(0)).timeline == 2 and h.fake.volume(h.volume(0)).standby_signal
    assert not bucket(h).get("PG_REJOIN", "")
    h.fake.rewind_output = None
    converged(h, 1)


@pytest.mark.parametrize("output", [
    "pg_rewind: error: could not connect to server: Connection refused",
    'pg_rewind: error: connection to server at "db-1.shop.voodu" failed: FATAL:  password authentication '
    'failed for user "replicator"',
])
def test_rejoin_never_wipes_when_pg_rewind_cannot_reach_the_primary(h: Harness, output: str) -> None:
    promote(h, target=1, no_restart=True)
    volume = h.fake.volume(h.volume(0))
    h.fake.rewind_output = output
    mark = len(h.fake.events)
    with pytest.raises(FailoverError) as caught:
        rejoin(h, 0)
    assert str(caught.value) == (f"pg_rewind could not reach db-1 ({output}); db-0 is stopped with its data "
                                 "intact — fix that and retry")
    assert events_since(h, mark) == [("run_oneshot", h.container(0))]
    assert h.fake.volume(h.volume(0)) is volume and volume.initialized and volume.timeline == 1
    assert h.fake.container(h.container(0)).state == "exited"
    assert bucket(h).get("PG_REJOIN", "") == "0", "the intent stays: reconcile (or the same command) finishes it"
    h.fake.rewind_output = None
    rejoin(h, 0)
    converged(h, 1)


def test_rejoin_ends_a_split_brain(h: Harness) -> None:
    assert h.psql(2, "SELECT pg_promote(true, 60)").output.strip() == "t"
    assert writable(h) == [0, 2]
    report = h.apply(**body(h))
    assert f"`voodu-postgres rejoin {REF} --replica 2`" in report.message, "what the operator is told to run"
    lines: list[str] = []
    message = rejoin(h, 2, lines)
    assert message.startswith("postgres shop/db: rejoined db-2 as a standby — ")
    assert lines[0] == "fenced db-2 (stopped, exit code 0)"
    assert writable(h) == [0]
    assert bucket(h)["PG_PRIMARY_ORDINAL"] == "0" and not bucket(h).get("PG_REJOIN", "")
    converged(h, 0)


# -- repair pieces not reached through the commands ------------------------------------------------


def test_promote_pod_on_a_writable_pod_sends_no_pg_promote(h: Harness) -> None:
    d = h.desired(**body(h))
    mark = len(h.fake.statements)
    assert repair.promote_pod(h.fake, d, 0) == "db-0 already accepts writes"
    assert [sql for _, sql in h.fake.statements[mark:]] == ["SELECT pg_is_in_recovery()"]


def test_rejoin_pod_of_a_missing_container_creates_nothing(h: Harness) -> None:
    h.fake.remove_container(h.container(2))
    d = h.desired(**body(h))
    mark = len(h.fake.events)
    with pytest.raises(RuntimeFailure, match=r"^shop-db\.2 does not exist; reconcile recreates it$"):
        repair.rejoin_pod(h.fake, d, 2, replication_user="replicator", bucket=bucket(h))
    assert events_since(h, mark) == []


def test_wait_until_retries_runtime_failures_and_times_out_with_what_it_waited_for(h: Harness) -> None:
    answers: list[bool | RuntimeFailure] = [RuntimeFailure("not yet"), False, True]

    def predicate() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, RuntimeFailure):
            raise answer
        return answer

    assert repair.wait_until(predicate, 10, "it") == pytest.approx(0.10), "two polls on the fake clock"
    assert answers == []
    with pytest.raises(RuntimeFailure, match=r"^timed out after 2s waiting for db-9 to appear$"):
        repair.wait_until(lambda: False, 2, "db-9 to appear", poll=0.5)
