"""``loop.reconcile`` end to end on the in-memory runtime: real observe → plan → execute passes,
on a fake clock (nothing really sleeps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.fake_runtime import FakeClock, Harness
from voodu_postgres.adapters.files import write_state
from voodu_postgres.domain.actions import Action
from voodu_postgres.domain.model import Desired, Observed, Plan, Wait
from voodu_postgres.domain.spec import SpecError
from voodu_postgres.reconciler import loop
from voodu_postgres.reconciler import switchover as failover
from voodu_postgres.reconciler.desired import OVERRIDES_KEY
from voodu_postgres.reconciler.plan import plan as real_plan
from voodu_postgres.render.statefulset import WRAPPER_PATH

pytestmark = pytest.mark.usefixtures("never_really_sleep")


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def converge(h: Harness, **body: Any) -> loop.Report:
    report = h.apply(**body)
    assert report.converged, report.message
    return report


def after(h: Harness, mark: int, *methods: str) -> list[str]:
    """Names touched by the mutating calls recorded since ``mark`` (optionally only some methods)."""
    return [name for method, name in h.fake.events[mark:] if not methods or method in methods]


# -- cold start, idempotence, dry run ---------------------------------------------------------------


def test_cold_start_creates_the_primary_first_then_the_standbys_together(tmp_path: Path) -> None:
    h = Harness(tmp_path, boot_s=2.0, clone_s=3.0)
    report = converge(h, replicas=3)
    assert report.message == "shop/db: no action: db-0 primary, db-1 streaming, db-2 streaming"
    assert h.names(h.fake.mutations("run_pod")) == [h.container(0), h.container(1), h.container(2)]
    assert h.lines.index("db-0: pending → primary") < h.lines.index(f"✓ create pod db-1 — created {h.container(1)}")
    assert h.lines[h.lines.index("db-0: pending → primary") + 1:][:2] == [
        f"✓ create pod db-1 — created {h.container(1)}", f"✓ create pod db-2 — created {h.container(2)}"]
    assert {"db-1: bootstrapping → standby", "db-2: bootstrapping → standby"} <= set(h.lines)
    # the waits were sleeps on the fake clock: 2s boot, then a 3s clone + 2s boot of the standbys
    assert 7.0 - 1e-6 <= sum(h.clock.slept) <= 8.0  # (a sum of 0.1 s polls)
    assert set(report.seeded) == {"config_set shop/db: POSTGRES_PASSWORD", "config_set shop/db: PG_PRIMARY_ORDINAL",
                                  "config_set shop/db: POSTGRES_REPLICATION_PASSWORD",
                                  "config_set shop/db: BACKUP_KEEP"}
    assert (h.state_dir() / "primary_ordinal").read_text() == "0"
    assert h.store.resource("shop", "db") is not None
    # each standby streams from the primary's DNS name and the primary lists both
    observed = h.observe(replicas=3)
    assert [p.pg.receiver_host for p in observed.pods[1:] if p.pg] == ["db-0.shop.voodu", "db-0.shop.voodu"]
    primary = observed.pods[0].pg
    assert primary is not None and [r.application_name for r in primary.replicas] == ["db-1", "db-2"]


def test_reapplying_the_same_file_changes_nothing(h: Harness) -> None:
    converge(h, replicas=3, pg_config={"work_mem": "8MB"})
    mark = len(h.fake.events)
    report = converge(h, replicas=3, pg_config={"work_mem": "8MB"})
    assert report.passes == 1 and not report.outcomes and not report.seeded
    assert after(h, mark) == []


def test_dry_run_changes_nothing_at_all(h: Harness) -> None:
    report = h.apply(dry_run=True, replicas=3)
    assert not report.converged and report.passes == 1 and not report.outcomes
    assert [str(s) for s in report.plan.steps][:2] == ["ensure network: network voodu-test is missing",
                                                       "write assets: asset files out of date: entrypoint, "
                                                       "init_replication_sh, pg_overrides_conf, streaming_conf"]
    assert report.seeded, "the seeds it would write are reported"
    assert h.fake.events == [] and h.fake.statements == []
    assert h.store.resolve("shop", "db") == {} and h.store.resource("shop", "db") is None
    assert not h.assets_dir().exists() and not h.state_dir().exists()


def test_dry_run_of_a_change_reports_the_steps_only(h: Harness) -> None:
    converge(h, replicas=2)
    mark, bucket = len(h.fake.events), h.store.resolve("shop", "db")
    report = h.apply(dry_run=True, replicas=3, pg_config={"work_mem": "8MB"})
    assert [(s.kind.value, s.ordinal) for s in report.plan.steps] == [
        ("write assets", None), ("reload config", None), ("create pod", 2)]
    assert after(h, mark) == [] and h.store.resolve("shop", "db") == bucket
    assert "work_mem" not in (h.assets_dir() / OVERRIDES_KEY).read_text()


def test_no_wait_returns_after_one_pass(h: Harness) -> None:
    report = h.apply(wait=False, replicas=2)
    assert report.passes == 1 and not report.converged
    assert h.names(h.fake.mutations("run_pod")) == [h.container(0)]
    report = h.apply(wait=False, replicas=2)  # the primary serves now: one pass creates the standby
    assert h.names(h.fake.mutations("run_pod")) == [h.container(0), h.container(1)]
    assert h.apply(wait=False, replicas=2).converged


# -- failures ---------------------------------------------------------------------------------------


def test_a_permanent_failure_stops_apply_with_the_reason(h: Harness) -> None:
    h.fake.missing_images.add("postgres:nope")
    report = h.apply(replicas=3, image="postgres:nope")
    assert not report.converged and report.passes == 1
    assert report.message == ("shop/db: create pod 0: primary db-0 is missing: image postgres:nope is not on this "
                              "host and could not be pulled: manifest for postgres:nope not found: manifest unknown")
    assert h.fake.calls["run_pod"] == 1, "not retried"
    assert "✗ create pod db-0 — image postgres:nope is not on this host" in h.lines[-1]


def test_a_pod_docker_cannot_start_stops_apply(h: Harness) -> None:
    converge(h, replicas=2)
    h.fake.remove_container(h.container(1))
    h.fake.fail_start(h.container(1), "OCI runtime create failed: unable to apply cgroup configuration")
    report = h.apply(replicas=2)
    assert not report.converged and report.message.endswith("unable to apply cgroup configuration")
    assert h.fake.container(h.container(1)).state == "created"


def test_transient_failures_are_retried_until_they_pass(h: Harness) -> None:
    # 4 failures: the step's 4 attempts all fail, the loop backs off and the next pass succeeds
    h.fake.fail_call("run_pod", times=4)
    report = converge(h, replicas=2)
    failed = [o for o in report.outcomes if not o.ok]
    assert len(failed) == 1 and failed[0].retryable
    assert h.fake.calls["run_pod"] == 4 + 1 + 1
    assert 1.0 in h.clock.slept, "backed off one second before the next pass"


def test_timeout_names_the_stuck_pod_with_its_log_tail(h: Harness) -> None:
    h.fake.crash_loop(h.container(2), "FATAL:  could not map anonymous shared memory: Cannot allocate memory",
                      "HINT:  This error usually means that PostgreSQL's request for a shared memory segment "
                      "exceeded available memory")
    with pytest.raises(loop.ConvergeTimeout) as caught:
        h.apply(replicas=3, timeout=20)
    message = str(caught.value)
    head, _, tail = message.partition("\n")
    assert head == ("shop/db: not converged after 20s — still waiting for db-2 is restarting "
                    "(Docker restarts it; see its log)")
    assert tail.startswith(f"last log lines of {h.container(2)}:\n")
    assert tail.rstrip().endswith("exceeded available memory")
    assert "  FATAL:  could not map anonymous shared memory" in tail
    assert 20 <= sum(h.clock.slept) <= 21
    # the start succeeded, yet the pod never reached what the machine moved it to
    assert "⚠ db-2: the pod machine expected bootstrapping or standby after start; observed down" in h.lines


MACHINE_SURPRISE = "the pod machine expected"


def test_what_the_machine_moves_a_pod_to_is_what_the_next_pass_observes(h: Harness) -> None:
    """Cold start, a pg_config roll, scale-down, a planned promote and a rejoin: after every step
    the next observation shows the role its machine move led to (or where the pod then settled by
    itself), so no pass reports a surprise."""
    converge(h, replicas=3)
    converge(h, replicas=3, pg_config={"shared_buffers": "256MB"})  # restarts: standbys, then the primary
    converge(h, replicas=2)
    failover.promote(h.spec(replicas=2), h.ctx, target=1, progress=h.lines.append)
    failover.rejoin(h.spec(replicas=2), h.ctx, ordinal=0, progress=h.lines.append)
    converge(h, replicas=3)
    assert any(line.startswith("✓ ") for line in h.lines)
    assert not [line for line in h.lines if MACHINE_SURPRISE in line]


def test_timeout_on_a_standby_that_never_finishes_cloning(tmp_path: Path) -> None:
    h = Harness(tmp_path, clone_s=1.0)
    converge(h, replicas=1)
    h.fake.stall(h.container(1))  # before it exists: its clone will hang
    with pytest.raises(loop.ConvergeTimeout, match=r"(?s)still waiting for db-1 to finish cloning and start streaming\n"
                                                   r"last log lines of shop-db\.1:\n.*cloning from primary "
                                                   r"db-0\.shop\.voodu"):
        h.apply(replicas=2, timeout=10)


def test_timeout_while_a_step_keeps_failing_transiently(h: Harness) -> None:
    converge(h, replicas=1)
    h.fake.networks.clear()
    h.fake.fail_call("ensure_network", times=1000)
    with pytest.raises(loop.ConvergeTimeout) as caught:
        h.apply(replicas=1, timeout=5)
    message = str(caught.value)
    assert message.startswith("shop/db: not converged after 5s — still waiting for shop/db: ensure network: "
                              "network voodu-test is missing")
    assert f"last log lines of {h.container(0)}:" in message  # no pod to wait on: the primary's log
    assert h.fake.calls["ensure_network"] > 4


def test_blocked_plan_returns_without_waiting(h: Harness) -> None:
    h.store.patch("shop", "db", {"PG_PRIMARY_ORDINAL": "2"})
    report = h.apply(replicas=2)
    assert not report.converged
    assert "refusing to scale to replicas = 2: it would remove db-2, the current primary" in report.message
    assert h.fake.mutations("run_pod") == []


def test_changing_the_password_of_an_existing_cluster_is_refused(h: Harness) -> None:
    converge(h, replicas=1)
    with pytest.raises(SpecError, match="differs from the cluster's current password"):
        h.apply(replicas=1, password="something-else")


# -- changes ----------------------------------------------------------------------------------------


def test_scale_down_removes_the_highest_ordinals_first_and_keeps_volumes(h: Harness) -> None:
    converge(h, replicas=4)
    mark = len(h.fake.events)
    report = converge(h, replicas=2)
    assert after(h, mark) == [h.container(3), h.container(2)]
    assert {h.volume(o) for o in range(4)} <= set(h.fake.volumes)
    assert report.message == "shop/db: no action: db-0 primary, db-1 streaming"
    # scaling back up reuses the kept volumes: the standbys resume, no clone
    report = converge(h, replicas=4)
    assert any("resuming as a standby" in line for line in h.fake.container(h.container(3)).logs)


def test_spec_change_recreates_standbys_first_and_the_primary_last(tmp_path: Path) -> None:
    h = Harness(tmp_path, boot_s=1.0)
    converge(h, replicas=3)
    mark = len(h.fake.events)
    report = converge(h, replicas=3, image="postgres:17")
    assert after(h, mark, "remove_container", "run_pod") == [
        h.container(2), h.container(2), h.container(1), h.container(1), h.container(0), h.container(0)]
    # each pod is back (streaming, or serving for the primary) before the next one goes
    recreated = [line for line in h.lines if line.startswith("✓ recreate pod")]
    assert [line.split(" — ")[0] for line in recreated] == [
        "✓ recreate pod db-2", "✓ recreate pod db-1", "✓ recreate pod db-0"]
    assert h.lines.index("db-2: bootstrapping → standby") < h.lines.index(recreated[1])
    assert h.lines.index("db-1: bootstrapping → standby") < h.lines.index(recreated[2])
    assert all(h.fake.container(h.container(o)).pod.image == "postgres:17" for o in range(3))
    assert report.message == "shop/db: no action: db-0 primary, db-1 streaming, db-2 streaming"


def test_pending_restart_settings_roll_standbys_first(h: Harness) -> None:
    converge(h, replicas=3)
    mark = len(h.fake.events)
    converge(h, replicas=3, pg_config={"shared_buffers": "256MB", "work_mem": "8MB"})
    assert after(h, mark) == [h.container(2), h.container(1), h.container(0)]  # restarts only
    assert all(h.fake.setting(h.container(o), "shared_buffers") == "256MB" for o in range(3))


def test_pg_config_change_is_reloaded_and_a_rejected_one_rolled_back(h: Harness) -> None:
    converge(h, replicas=2, pg_config={"work_mem": "8MB"})
    mark = len(h.fake.events)
    converge(h, replicas=2, pg_config={"work_mem": "16MB"})
    assert after(h, mark) == [] and h.fake.setting(h.container(1), "work_mem") == "16MB"
    live = (h.assets_dir() / OVERRIDES_KEY).read_text()

    h.fake.reject_param("no_such_parameter")
    report = h.apply(replicas=2, pg_config={"work_mem": "32MB", "no_such_parameter": 1})
    assert not report.converged and report.passes == 1
    assert report.message == ("shop/db: reload config: pg_config changed: reload running pods: pg_config rejected "
                              "by Postgres (no_such_parameter: unrecognized configuration parameter); previous "
                              "settings kept")
    assert (h.assets_dir() / OVERRIDES_KEY).read_text() == live
    assert h.fake.setting(h.container(0), "work_mem") == "16MB"
    # the pods still restart fine: the file they read is the previous, valid one
    h.fake.restart_container(h.container(1))
    assert h.fake.serving(h.container(1))


def test_synchronous_standby_names_are_set_once_a_standby_streams(h: Harness) -> None:
    report = converge(h, replicas=3, synchronous=True)
    assert [o.detail for o in report.outcomes if o.step.kind.value == "set synchronous standbys"] == [
        'synchronous_standby_names = ANY 1 ("db-1", "db-2")']
    assert h.fake.volume(h.volume(0)).auto_conf["synchronous_standby_names"] == 'ANY 1 ("db-1", "db-2")'
    converge(h, replicas=3)  # synchronous off again: reset
    assert h.fake.volume(h.volume(0)).auto_conf == {}


def test_a_removed_container_comes_back_on_its_volume(h: Harness) -> None:
    converge(h, replicas=2)
    h.fake.remove_container(h.container(1))
    report = converge(h, replicas=2)
    assert [str(o.step) for o in report.outcomes] == ["create pod 1: standby db-1 is missing (data volume kept)"]


def test_a_stopped_pod_is_started_and_role_changes_are_printed(h: Harness) -> None:
    converge(h, replicas=2)
    h.fake.stop_container(h.container(0))
    lines: list[str] = []
    converge(h, replicas=2, progress=lines.append)
    assert lines[0] == f"✓ start pod db-0 — started {h.container(0)}"
    assert "db-0: down → primary" in lines


# -- the desired state is re-read on every pass ---------------------------------------------------------


def _switch_primary(h: Harness, old: int, new: int) -> None:
    """What a promote does while apply waits: fence the old primary, promote the new one, record it
    in the bucket and the state file, re-point the other standbys, rewind the old primary and start it."""
    fake = h.fake
    assert fake.stop_container(h.container(old)) == 0
    assert h.psql(new, "SELECT pg_promote(true, 60)").output.strip() == "t"
    h.store.patch("shop", "db", {"PG_PRIMARY_ORDINAL": str(new)})
    write_state(h.state_dir(), {"primary_ordinal": str(new)})
    for name, container in list(fake.containers.items()):
        if container.ordinal not in (old, new) and fake.serving(name):
            fake.exec(name, ["bash", WRAPPER_PATH, "--repoint"], user="root")
            h.psql(container.ordinal, "SELECT pg_reload_conf()")
    rewind = fake.run_oneshot("img", ["bash", "-c", "pg_rewind ..."], volumes_from=h.container(old),
                              network=h.network, env={"SOURCE": f"host={h.ref.pod_host(new)} port=5432"})
    assert rewind.exit_code == 0, rewind.output
    fake.start_container(h.container(old))


def test_a_promote_during_a_long_apply_is_followed(h: Harness) -> None:
    """Defect: the desired state was derived once, so an apply still waiting when a promote moved
    the primary kept planning for the old one (and never converged)."""
    converge(h, replicas=2)
    h.fake.delay(h.container(2), clone=3.0)

    def promote_once(clock: FakeClock) -> None:
        clock.on_sleep.clear()
        _switch_primary(h, old=0, new=1)

    h.clock.on_sleep.append(promote_once)
    report = h.apply(replicas=3, timeout=60)
    assert report.converged, report.message
    assert report.message == "shop/db: no action: db-0 streaming, db-1 primary, db-2 streaming"
    assert "db-1: standby → primary" in h.lines
    assert h.fake.mutations("start_container") == [("start_container", h.container(0))], \
        "only the rejoin started the old primary"
    pods = h.observe(replicas=3).pods
    assert [p.pg.receiver_host for p in (pods[0], pods[2]) if p.pg] == ["db-1.shop.voodu", "db-1.shop.voodu"]


def test_a_switchover_marker_set_during_apply_reaches_the_planner(h: Harness,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: the bucket was read once, so the planner never saw a promote's PG_SWITCHOVER_TO."""
    converge(h, replicas=2)
    h.fake.delay(h.container(2), clone=2.0)
    seen: list[int | None] = []

    def spy(desired: Desired, observed: Observed) -> Plan:
        seen.append(desired.switchover)
        if desired.switchover is not None:  # hold still while the promote runs
            return Plan(ref=desired.ref, waiting=(Wait(desired.switchover, "the switchover to finish"),))
        return real_plan(desired, observed)

    def marker(clock: FakeClock) -> None:
        bucket = h.store.resolve("shop", "db")
        if "PG_SWITCHOVER_TO" not in bucket:
            h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": "1"})
        elif len(clock.slept) >= 6:
            h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": ""})  # the promote gave up
            clock.on_sleep.clear()

    monkeypatch.setattr(loop, "plan", spy)
    h.clock.on_sleep.append(marker)
    report = h.apply(replicas=3, timeout=60)
    assert report.converged, report.message
    assert 1 in seen, "the marker written while apply waited was never planned with"
    assert seen[0] is None and seen[-1] is None


# -- small pieces -----------------------------------------------------------------------------------


def test_apply_actions_sets_and_unsets_keys(h: Harness) -> None:
    loop.apply_actions(h.store, [Action("config_set", "shop", "db", kv={"A": "1", "B": "2"}),
                                 Action("config_unset", "shop", "db", keys=["A"]),
                                 Action("apply_manifest", "shop", "db")])
    assert h.store.resolve("shop", "db") == {"B": "2"}


def test_promote_and_rejoin_run_on_the_fake(h: Harness) -> None:
    """The fake answers what failover sends (lag check, fence, pg_promote, re-point, pg_rewind)."""
    converge(h, replicas=3, synchronous=True)
    failover.promote(h.spec(replicas=3, synchronous=True), h.ctx, target=1)
    report = converge(h, replicas=3, synchronous=True)
    assert report.message == "shop/db: no action: db-0 streaming, db-1 primary, db-2 streaming"
    assert h.fake.volume(h.volume(1)).timeline == 2
