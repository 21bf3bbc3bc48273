"""Automatic failover (``auto_failover = true``) driven the way ``reconcile --watch`` drives it: one
:class:`HealthTracker` across passes of ``loop.reconcile(wait=False)``, on the in-memory runtime
and its fake clock. What is checked is what an operator relies on: nothing happens before
``failover_timeout``; the failed primary is stopped *before* any standby is promoted (checked at
the moment ``pg_promote()`` runs) and no pass ever sees two writable pods; the standby with the most
WAL wins; refusals (synchronous standby silent, lag over ``max_lag_on_failover``, cooldown,
auto_failover off) promote nothing and say why; a watcher that dies after recording the failover
is finished by the next one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.fake_runtime import Harness
from voodu_postgres.adapters.docker import RuntimeFailure
from voodu_postgres.adapters.postgres import Endpoint
from voodu_postgres.domain.health import FAILOVER_COOLDOWN, HealthTracker, primary_problem
from voodu_postgres.domain.keys import LAST_FAILOVER_KEY, PRIMARY_ORDINAL_KEY, SWITCHOVER_KEY
from voodu_postgres.domain.model import Observed, PgStatus, PodStatus, lsn_value
from voodu_postgres.reconciler import effects as repair
from voodu_postgres.reconciler.loop import Context, Report, reconcile

WALL0 = 1_800_000_000.0


pytestmark = pytest.mark.usefixtures("never_really_sleep")


class Watched(Harness):
    """A converged cluster and a watcher: ``tick`` is one pass of ``reconcile --watch``."""

    def __init__(self, home: Path, body: dict[str, Any]) -> None:
        super().__init__(home)
        self.body = body
        self.tracker = HealthTracker()
        self.reports: list[Report] = []
        self.promoted_while: list[str] = []  # the old primary's state each time pg_promote() ran

    @property
    def wctx(self) -> Context:
        return replace(self.ctx, wall=lambda: WALL0 + self.clock())

    def tick(self, seconds: float = 1.0) -> Report:
        report = reconcile(self.spec(**self.body), self.wctx, wait=False, health=self.tracker,
                           progress=self.lines.append)
        self.reports.append(report)
        writable = [p.ordinal for p in self.observe(**self.body).pods if p.writable]
        assert len(writable) <= 1, f"two writable pods: {writable}"
        self.clock.sleep(seconds)
        return report

    def primary(self) -> int:
        return int(self.store.resolve(self.scope, self.name)[PRIMARY_ORDINAL_KEY])

    def record(self) -> dict[str, Any]:
        return dict(json.loads(self.store.resolve(self.scope, self.name).get(LAST_FAILOVER_KEY) or "{}"))

    def state(self, ordinal: int) -> str:
        return self.fake.container(self.container(ordinal)).state


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def build(**body: Any) -> Watched:
        body.setdefault("replicas", 3)
        body.setdefault("auto_failover", True)
        h = Watched(tmp_path, body)
        monkeypatch.setattr(repair, "time", SimpleNamespace(monotonic=h.clock, sleep=h.clock.sleep))
        report = h.apply(**body)
        assert report.converged, report.message
        real_promote = h.fake.promote

        def promote_spy(endpoint: Endpoint, **kwargs: Any) -> bool:
            h.promoted_while.append(h.state(h.primary()))
            return real_promote(endpoint, **kwargs)

        monkeypatch.setattr(h.fake, "promote", promote_spy)
        h.tick()  # the watcher's first pass sees a healthy primary (its WAL position is remembered)
        return h

    return build


def converged_on(h: Watched, primary: int, passes: int = 10) -> None:
    for _ in range(passes):
        if h.tick().converged:
            break
    assert h.primary() == primary
    assert h.reports[-1].converged, h.reports[-1].message


def test_a_killed_primary_is_fenced_then_the_standby_with_the_most_wal_promoted(make: Any) -> None:
    h = make(failover_timeout="5s")
    h.fake.lag(h.container(1), 0x300)
    h.fake.write(h.container(0), 0x1000)
    h.tick()
    h.fake.kill(h.container(0))
    for _ in range(5):  # failing for 0..4 s: wait, and do not start it again either
        report = h.tick()
        assert "failover after 5s" in report.message, report.message
        assert h.state(0) == "exited"
        assert h.primary() == 0
    report = h.tick()  # 5 s
    assert h.primary() == 2, report.message  # db-2 has every byte; db-1 lags 0x300
    assert h.promoted_while == ["exited"], "promoted only once, with the old primary stopped"
    assert any(line.startswith("✓ failover db-2") for line in h.lines)
    record = h.record()
    assert (record["from"], record["to"], record["lost_bytes"], record["synchronous"]) == (0, 2, 0, False)
    assert record["problem"] == "its container is exited"
    assert SWITCHOVER_KEY not in h.store.resolve(h.scope, h.name) or \
        h.store.resolve(h.scope, h.name)[SWITCHOVER_KEY] == ""
    converged_on(h, 2)  # the old primary is rewound and follows db-2
    pods = {p.ordinal: p for p in h.observe(**h.body).pods}
    assert pods[0].pg is not None and pods[0].pg.in_recovery


def test_async_loss_is_what_the_record_says(make: Any) -> None:
    h = make(failover_timeout="2s")
    h.fake.lag(h.container(1), 0x400)
    h.fake.lag(h.container(2), 0x200)
    h.fake.write(h.container(0), 0x2000)
    h.tick()
    before = lsn_value(h.psql(0, "SELECT pg_current_wal_lsn()").output)
    h.fake.kill(h.container(0))
    for _ in range(4):
        h.tick()
    assert h.primary() == 2
    record = h.record()
    received = lsn_value(record["received_lsn"])
    assert before - received == record["lost_bytes"] == 0x200


def test_synchronous_refuses_when_a_quorum_standby_is_silent(make: Any) -> None:
    h = make(synchronous=True, failover_timeout="2s")
    h.fake.pause(h.container(2))
    h.fake.kill(h.container(0))
    for _ in range(4):
        h.tick()
    assert any("db-2 did not answer" in b for r in h.reports for b in r.plan.blocked)
    assert h.promoted_while == [] and h.primary() == 0
    # refused: the old primary is handled as without auto_failover (started again: nothing lost)
    assert h.state(0) == "running"


def test_synchronous_promotes_the_quorum_member_with_the_most_wal(make: Any) -> None:
    h = make(synchronous=True, failover_timeout="2s")
    h.fake.lag(h.container(2), 0x100)
    h.fake.write(h.container(0), 0x800)
    h.tick()
    h.fake.kill(h.container(0))
    for _ in range(4):
        h.tick()
    assert h.primary() == 1
    assert h.record()["lost_bytes"] == 0 and h.record()["synchronous"] is True
    converged_on(h, 1)


def test_lag_over_max_lag_on_failover_is_refused(make: Any) -> None:
    h = make(failover_timeout="2s", max_lag_on_failover="1kB")
    for ordinal in (1, 2):
        h.fake.lag(h.container(ordinal), 0x1000)
    h.fake.write(h.container(0), 0x4000)
    h.tick()
    h.fake.pause(h.container(0))
    for _ in range(4):
        report = h.tick()
    assert "more than max_lag_on_failover = 1024" in report.message
    assert h.promoted_while == [] and h.primary() == 0 and h.state(0) == "paused"


def test_off_by_default_the_failing_primary_is_reported_and_nothing_is_promoted(make: Any) -> None:
    h = make(auto_failover=False)
    h.fake.pause(h.container(0))
    for _ in range(30):
        report = h.tick()
    assert "auto_failover is off" in report.message and "paused" in report.message
    assert h.promoted_while == [] and h.primary() == 0 and h.state(0) == "paused"


def test_a_paused_primary_is_stopped_before_the_promotion(make: Any) -> None:
    h = make(failover_timeout="3s")
    h.fake.pause(h.container(0))
    for _ in range(5):
        h.tick()
    assert h.primary() in (1, 2)
    assert h.promoted_while == ["exited"]
    assert h.record()["problem"].startswith("its container is paused")


def test_a_primary_cut_off_the_network_is_fenced_and_replaced(make: Any) -> None:
    h = make(failover_timeout="2s")
    h.fake.cut(h.container(0))
    for _ in range(4):
        h.tick()
    assert h.primary() in (1, 2)
    assert h.promoted_while == ["exited"]
    assert "detached from the cluster network" in h.record()["problem"]
    # rewound while stopped, started still detached, then recreated on the network: it streams
    converged_on(h, h.primary(), passes=15)
    assert any("✓ recreate pod db-0" in line for line in h.lines), h.lines[-5:]


def test_one_slow_answer_is_not_a_failure(make: Any) -> None:
    h = make(failover_timeout="3s")
    for _ in range(6):  # fails every other pass: the clock restarts each time it answers
        h.fake.fail_exec(h.container(0), contains="json_build_object", times=1)
        h.tick()
        h.tick()
    assert h.primary() == 0 and h.promoted_while == []


def test_a_watcher_killed_after_recording_the_failover_is_finished_by_the_next(make: Any) -> None:
    h = make(failover_timeout="2s")
    h.fake.kill(h.container(0))
    # the promotion fails hard once: the pass ends with the intent recorded and db-0 fenced, as if
    # the watcher had been killed right after the FAILOVER step
    h.fake.fail_exec(h.container(1), contains="pg_promote", times=1,
                     failure=RuntimeFailure("killed mid-failover", transient=False))
    h.fake.fail_exec(h.container(2), contains="pg_promote", times=1,
                     failure=RuntimeFailure("killed mid-failover", transient=False))
    for _ in range(6):
        if any(not o.ok for o in h.tick().outcomes):
            break
    bucket = h.store.resolve(h.scope, h.name)
    target = int(bucket[SWITCHOVER_KEY])
    assert h.primary() == 0 and h.state(0) == "exited"
    h.tracker = HealthTracker()  # a new watcher process: it knows nothing
    converged_on(h, target)
    assert h.state(0) == "running"


def test_cooldown_stops_a_second_automatic_failover(make: Any) -> None:
    h = make(failover_timeout="2s")
    h.fake.kill(h.container(0))
    for _ in range(4):
        h.tick()
    first = h.primary()
    converged_on(h, first)
    h.fake.kill(h.container(first))
    for _ in range(4):
        h.tick()
    assert any("cooldown" in b for r in h.reports[-4:] for b in r.plan.blocked)
    assert h.primary() == first and h.state(first) == "running", "refused: started again instead"
    h.clock.sleep(FAILOVER_COOLDOWN)
    h.fake.kill(h.container(first))  # it was started again while refused; it dies again
    for _ in range(4):
        h.tick()
    assert h.primary() != first


# -- the tracker and the failure test, alone ---------------------------------------------------


def _observed(h: Watched, **primary: Any) -> Observed:
    observed = h.observe(**h.body)
    pods = tuple(replace(p, **primary) if p.ordinal == 0 else p for p in observed.pods)
    return replace(observed, pods=pods)


def test_primary_problem_names_each_failure(make: Any) -> None:
    h = make()
    d = h.desired(**h.body)
    assert primary_problem(d, h.observe(**h.body)) is None
    assert primary_problem(d, _observed(h, state="paused", pg=None)) == \
        "its container is paused (frozen: it answers nothing)"
    assert primary_problem(d, _observed(h, state="restarting", pg=None)).startswith("its container keeps restarting")
    assert primary_problem(d, _observed(h, state="exited", pg=None)) == "its container is exited"
    assert primary_problem(d, _observed(h, on_network=False)) == \
        f"it is detached from the cluster network {h.network}"
    assert primary_problem(d, _observed(h, pg=None, error="timeout expired")) == \
        "Postgres does not answer (timeout expired)"
    # a missing container is recreated from its volume, not failed over
    assert primary_problem(d, _observed(h, exists=False, state="absent", pg=None, volume_exists=True)) is None


def test_the_tracker_counts_across_passes_and_forgives_its_own_restarts(make: Any) -> None:
    h = make()
    d = h.desired(**h.body)
    tracker = HealthTracker()
    healthy = h.observe(**h.body)
    assert tracker.observe(d, healthy, now=0, wall=WALL0).failing_for == 0
    booting = _observed(h, pg=None, error="connection refused")
    assert tracker.observe(d, booting, now=1, wall=WALL0).failing_for == 0
    assert tracker.observe(d, booting, now=4, wall=WALL0).failing_for == 3
    tracker.restarted(d, 5)
    assert tracker.observe(d, booting, now=30, wall=WALL0).problem is None, "booting after our own restart"
    # a container that is not running is no boot: the grace does not hide it
    dead = _observed(h, state="exited", pg=None)
    assert tracker.observe(d, dead, now=31, wall=WALL0).problem == "its container is exited"
    assert tracker.observe(d, healthy, now=32, wall=WALL0).failing_for == 0
    # the cooldown runs from the recorded failover
    assert tracker.observe(d, healthy, now=33, wall=WALL0, last_failover_at=WALL0 - 100).cooldown_left == \
        FAILOVER_COOLDOWN - 100
    # the WAL position of the last healthy observation is remembered
    assert tracker.observe(d, dead, now=34, wall=WALL0).last_lsn is not None


def test_a_primary_in_recovery_is_not_counted_as_failing(make: Any) -> None:
    h = make()
    d = h.desired(**h.body)
    observed = _observed(h, pg=PgStatus(in_recovery=True))
    assert primary_problem(d, observed) is None
    assert isinstance(observed.pods[0], PodStatus)


# -- the review's scenarios: re-choice after the fence, continuity, live-but-busy primaries ---------


def _recorded_failover(h: Watched, to: int, *, synchronous: bool) -> None:
    """The state right after a FAILOVER step: the intent and the record written, db-0 stopped."""
    h.fake.kill(h.container(0))
    record = {"from": 0, "to": to, "problem": "its container is exited", "synchronous": synchronous,
              "last_lsn": None, "state": "fencing"}
    h.store.patch(h.scope, h.name, {SWITCHOVER_KEY: str(to), LAST_FAILOVER_KEY: json.dumps(record)})


def test_the_target_is_chosen_again_once_the_old_primary_is_stopped(make: Any) -> None:
    h = make(synchronous=True)
    h.fake.lag(h.container(2), 0x300)  # chosen before the fence, db-2 has fallen behind db-1 since
    h.fake.write(h.container(0), 0x1000)
    h.tick()
    _recorded_failover(h, 2, synchronous=True)
    report = h.tick()
    assert any("db-1 has received 768 bytes more WAL than db-2" in o.detail for o in report.outcomes), report
    assert h.store.resolve(h.scope, h.name)[SWITCHOVER_KEY] == "1"
    converged_on(h, 1)
    record = h.record()
    assert (record["to"], record["state"], record["lost_bytes"]) == (1, "promoted", 0)


def test_synchronous_with_a_silent_standby_at_promote_time_drops_the_switchover(make: Any) -> None:
    h = make(synchronous=True)
    _recorded_failover(h, 2, synchronous=True)
    h.fake.pause(h.container(1))
    report = h.tick()
    assert any("db-1 did not answer" in o.detail and "dropped the switchover" in o.detail for o in report.outcomes)
    assert h.store.resolve(h.scope, h.name).get(SWITCHOVER_KEY, "") == ""
    assert h.promoted_while == [] and h.record() == {}
    for _ in range(8):  # the watcher's own decision then refuses (db-1 silent) and starts db-0 again
        h.tick()
    assert h.state(0) == "running" and h.primary() == 0, "the old primary, which has everything, is back"
    assert any("db-1 did not answer" in b for r in h.reports[-8:] for b in r.plan.blocked)


def test_an_interrupted_planned_promote_gets_a_clean_fence(make: Any) -> None:
    h = make(auto_failover=False)
    h.store.patch(h.scope, h.name, {SWITCHOVER_KEY: "1"})  # promote recorded, killed during its stop
    h.fake.fail_exec(h.container(0), contains="json_build_object")  # shutting down: does not answer
    report = reconcile(h.spec(**h.body), h.wctx, wait=False, progress=h.lines.append)
    fence = next(o.step for o in report.outcomes if o.step.kind.value == "fence")
    assert fence.ordinal == 0 and fence.data == {"failing": False}
    assert h.primary() == 1, "then the switchover finished"


def test_a_gap_between_failed_probes_restarts_the_count(make: Any) -> None:
    h = make()
    d = h.desired(**h.body)
    tracker = HealthTracker()
    dead = _observed(h, state="exited", pg=None)
    tracker.observe(d, dead, now=0, wall=WALL0)
    later = tracker.observe(d, dead, now=300, wall=WALL0)  # 300 s without a pass (a busy lease)
    assert (later.failing_for, later.failed_probes) == (0, 1)
    tracker.forget(str(h.ref))
    assert tracker.observe(d, dead, now=301, wall=WALL0).failed_probes == 1


def test_three_failed_probes_are_needed_whatever_the_time(make: Any) -> None:
    h = make(failover_timeout="1s")
    h.fake.kill(h.container(0))
    h.tick(2.0)
    h.tick(2.0)  # failing for 2 s > 1 s, but seen twice only
    assert h.primary() == 0
    h.tick(2.0)
    assert h.primary() != 0


def test_a_primary_that_replies_with_an_error_is_alive(make: Any) -> None:
    h = make(failover_timeout="1s")
    too_many = 'psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already'
    h.fake.fail_exec(h.container(0), contains="json_build_object", output=too_many)
    for _ in range(6):
        h.tick()
    assert h.primary() == 0 and h.promoted_while == []
    d = h.desired(**h.body)
    starting = 'psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  the database system is starting up'
    assert primary_problem(d, _observed(h, pg=None, error=starting)) is not None
    assert primary_problem(d, _observed(h, pg=None, error=too_many)) is None


def test_a_primary_docker_just_restarted_gets_time_to_boot(make: Any) -> None:
    h = make()
    d = h.desired(**h.body)
    tracker = HealthTracker()
    booting = _observed(h, pg=None, error="Connection refused", started_at=WALL0 - 10)
    for now in (0, 1, 2, 3, 4, 5):
        assert tracker.observe(d, booting, now=now, wall=WALL0 + now).problem is None
    stale = _observed(h, pg=None, error="Connection refused", started_at=WALL0 - 600)
    assert tracker.observe(d, stale, now=6, wall=WALL0 + 6).problem is not None


def test_synchronous_not_yet_in_force_is_treated_as_asynchronous(make: Any) -> None:
    h = make(synchronous=True, failover_timeout="2s")
    # the primary runs without synchronous_standby_names (just turned on, or after a restore)
    h.psql(0, "ALTER SYSTEM RESET synchronous_standby_names")
    h.psql(0, "SELECT pg_reload_conf()")
    d = h.desired(**h.body)
    tracker = HealthTracker()
    health = tracker.observe(d, h.observe(**h.body), now=0, wall=WALL0)
    assert health.sync_in_force is False
