"""``execute`` against the in-memory runtime: every step kind, the retry policy, and the pg_config
reload with its rejection rollback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from tests.unit.fake_runtime import Harness
from voodu_postgres.adapters.docker import Runtime, RuntimeFailure
from voodu_postgres.domain.model import Outcome, Plan, Step, StepKind
from voodu_postgres.reconciler.desired import OVERRIDES_KEY
from voodu_postgres.reconciler.execute import default_retrying, execute, set_sync_names
from voodu_postgres.reconciler.plan import plan, pod_move

BAD = "no_such_parameter"


pytestmark = pytest.mark.usefixtures("never_really_sleep")


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def retrying(h: Harness) -> Callable[[], Retrying]:
    """The production policy's shape (transient failures, 4 attempts) on the fake clock."""
    return lambda: Retrying(retry=retry_if_exception(lambda e: isinstance(e, RuntimeFailure) and e.transient),
                            stop=stop_after_attempt(4), sleep=h.clock.sleep, reraise=True)


def converge(h: Harness, **body: Any) -> None:
    report = h.apply(**body)
    assert report.converged, report.message


def run_plan(h: Harness, **body: Any) -> tuple[Plan, list[Outcome]]:
    """One pass by hand: derive, observe, plan, execute."""
    desired = h.desired(**body)
    current = plan(desired, h.observe(**body))
    return current, execute(current, desired, h.fake, assets_dir=h.assets_dir(), retrying=retrying(h))


def run_steps(h: Harness, *steps: Step, **body: Any) -> list[Outcome]:
    desired = h.desired(**body)
    return execute(Plan(ref=desired.ref, steps=steps), desired, h.fake, assets_dir=h.assets_dir(),
                   retrying=retrying(h))


def pod_step(h: Harness, kind: StepKind, ordinal: int, trigger: str, **body: Any) -> Step:
    """A step on one pod carrying its machine transition as the planner would, for the cluster as
    observed now."""
    move = pod_move(h.desired(**body), h.observe(**body), ordinal, trigger)
    return Step(kind, ordinal, "t", moves=(move,))


def overrides(h: Harness) -> str:
    return (h.assets_dir() / OVERRIDES_KEY).read_text(encoding="utf-8")


def test_the_fake_implements_the_runtime_protocol(h: Harness) -> None:
    runtime: Runtime = h.fake  # mypy checks the signatures; isinstance the method names
    assert isinstance(runtime, Runtime)


# -- pg_config reload ---------------------------------------------------------------------------


def test_pg_config_change_is_written_and_reloaded_on_every_pod_without_restarts(h: Harness) -> None:
    converge(h, replicas=3, pg_config={"work_mem": "8MB"})
    done = len(h.fake.events)
    current, outcomes = run_plan(h, replicas=3, pg_config={"work_mem": "16MB"})
    assert [s.kind for s in current.steps] == [StepKind.WRITE_ASSETS, StepKind.RELOAD_CONFIG]
    assert all(o.ok for o in outcomes), outcomes
    assert outcomes[1].detail == "reloaded db-0, db-1, db-2"
    assert "work_mem = '16MB'" in overrides(h)
    assert [h.fake.setting(h.container(o), "work_mem") for o in range(3)] == ["16MB"] * 3
    assert h.fake.events[done:] == [], "a reload restarts nothing"


def test_rejected_pg_config_is_rolled_back_with_postgres_own_words(h: Harness) -> None:
    converge(h, replicas=2, pg_config={"work_mem": "8MB"})
    before = overrides(h)
    h.fake.reject_param(BAD)
    _, outcomes = run_plan(h, replicas=2, pg_config={"work_mem": "16MB", BAD: 1})
    reload = outcomes[-1]
    assert reload.step.kind is StepKind.RELOAD_CONFIG and not reload.ok and not reload.retryable
    assert reload.detail == (f"pg_config rejected by Postgres ({BAD}: unrecognized configuration parameter); "
                             "previous settings kept")
    assert overrides(h) == before
    # the pod that was reloaded with the rejected file is reloaded again with the previous one
    assert [h.fake.setting(h.container(o), "work_mem") for o in range(2)] == ["8MB", "8MB"]


def test_rejection_is_detected_even_when_the_first_pods_reload_fails(h: Harness) -> None:
    """Defect: the pg_file_settings check ran only on the first pod, so when that pod's reload
    failed, a rejected pg_config stayed live on the others."""
    converge(h, replicas=3, pg_config={"work_mem": "8MB"})
    before = overrides(h)
    h.fake.reject_param(BAD)
    h.fake.fail_exec(h.container(0), contains="pg_reload_conf", times=1)
    _, outcomes = run_plan(h, replicas=3, pg_config={"work_mem": "16MB", BAD: 1})
    reload = outcomes[-1]
    assert not reload.ok and "rejected by Postgres" in reload.detail
    assert overrides(h) == before, "the rejected file must not stay live"
    assert [h.fake.setting(h.container(o), "work_mem") for o in range(3)] == ["8MB"] * 3


def test_when_no_pod_reloads_the_step_fails_and_the_previous_file_is_restored(h: Harness) -> None:
    converge(h, replicas=2, pg_config={"work_mem": "8MB"})
    before = overrides(h)
    for o in range(2):
        h.fake.fail_exec(h.container(o), contains="pg_reload_conf")
    _, outcomes = run_plan(h, replicas=2, pg_config={"work_mem": "16MB"})
    reload = outcomes[-1]
    assert not reload.ok and reload.retryable
    assert reload.detail.startswith("could not reload pg_config on any running pod (db-0 (psql: error:")
    assert reload.detail.endswith("previous settings kept")
    assert overrides(h) == before


def test_a_retried_reload_restores_the_text_that_was_live_before_the_step(h: Harness) -> None:
    """Defect: on a retry the "previous" text was read again — after the new text was already
    written — so the rollback put the rejected file back."""
    converge(h, replicas=2, pg_config={"work_mem": "8MB"})
    before = overrides(h)
    h.fake.reject_param(BAD)
    h.fake.fail_call("container_state", nth=1)  # transient, after the new file is written: a retry
    _, outcomes = run_plan(h, replicas=2, pg_config={"work_mem": "16MB", BAD: 1})
    reload = outcomes[-1]
    assert not reload.ok and "rejected by Postgres" in reload.detail
    assert overrides(h) == before
    assert BAD not in overrides(h)


def test_a_check_that_cannot_run_moves_on_to_the_next_reloaded_pod(h: Harness) -> None:
    converge(h, replicas=2, pg_config={"work_mem": "8MB"})
    before = overrides(h)
    h.fake.reject_param(BAD)
    h.fake.fail_exec(h.container(0), contains="error IS NOT NULL", times=1)  # the check, not the status query
    _, outcomes = run_plan(h, replicas=2, pg_config={"work_mem": "16MB", BAD: 1})
    assert not outcomes[-1].ok and "rejected by Postgres" in outcomes[-1].detail
    assert overrides(h) == before
    assert [h.fake.setting(h.container(o), "work_mem") for o in range(2)] == ["8MB", "8MB"]


def test_a_pod_that_cannot_reload_is_named_but_the_others_are_reloaded(h: Harness) -> None:
    converge(h, replicas=4, pg_config={"work_mem": "8MB"})
    h.fake.fail_exec(h.container(1), contains="pg_reload_conf", times=1)
    h.fake.fail_exec(h.container(3), contains="pg_reload_conf", times=1,
                     failure=RuntimeFailure(f"exec in {h.container(3)}: 502 Bad Gateway", transient=True))
    _, outcomes = run_plan(h, replicas=4, pg_config={"work_mem": "16MB"})
    assert outcomes[-1].ok
    assert outcomes[-1].detail.startswith("reloaded db-0, db-2; not reloaded: db-1 (psql: error:")
    assert outcomes[-1].detail.endswith(f"db-3 (exec in {h.container(3)}: 502 Bad Gateway)")
    assert h.fake.setting(h.container(2), "work_mem") == "16MB"


def test_a_rejected_file_with_nothing_before_it_is_replaced_by_an_empty_one(h: Harness) -> None:
    converge(h, replicas=1)
    (h.assets_dir() / OVERRIDES_KEY).unlink()
    h.fake.reject_param(BAD)
    [outcome] = run_steps(h, Step(StepKind.RELOAD_CONFIG, None, "test"), replicas=1, pg_config={BAD: 1})
    assert not outcome.ok and "rejected by Postgres" in outcome.detail
    assert overrides(h) == ""


def test_reload_with_no_running_pod_only_writes_the_file(h: Harness) -> None:
    converge(h, replicas=1, pg_config={"work_mem": "8MB"})
    h.fake.stop_container(h.container(0))
    [outcome] = run_steps(h, Step(StepKind.RELOAD_CONFIG, None, "test"), replicas=1, pg_config={"work_mem": "16MB"})
    assert outcome.ok and outcome.detail == "reloaded no running pod"
    assert "work_mem = '16MB'" in overrides(h)


def test_write_assets_leaves_the_overrides_to_a_planned_reload(h: Harness) -> None:
    converge(h, replicas=1, pg_config={"work_mem": "8MB"})
    before = overrides(h)
    h.fake.fail_exec(h.container(0), contains="pg_reload_conf")
    outcomes = run_steps(h, Step(StepKind.WRITE_ASSETS, None, "test"), Step(StepKind.RELOAD_CONFIG, None, "test"),
                         replicas=1, pg_config={"work_mem": "16MB"})
    assert [o.ok for o in outcomes] == [True, False]
    assert overrides(h) == before


# -- pod steps ------------------------------------------------------------------------------------


def test_every_pod_step_kind(h: Harness) -> None:
    converge(h, replicas=3)
    c0, c1, c2 = (h.container(o) for o in range(3))
    outcomes = run_steps(h, pod_step(h, StepKind.RESTART_POD, 0, "roll", replicas=3),
                         pod_step(h, StepKind.RECREATE_POD, 2, "roll", replicas=3), replicas=3)
    assert [o.detail for o in outcomes] == [f"restarted {c0}", f"recreated {c2}"]
    assert [o.moved for o in outcomes] == [("db-0: primary → pending (roll)",),
                                           ("db-2: standby → bootstrapping (roll)",)]
    h.fake.stop_container(c1)
    [started] = run_steps(h, pod_step(h, StepKind.START_POD, 1, "start", replicas=3), replicas=3)
    assert started.detail == f"started {c1}" and started.moved == ("db-1: down → bootstrapping (start)",)
    assert h.fake.mutations("start_container", "restart_container", "remove_container", "run_pod")[-4:] == [
        ("restart_container", c0), ("remove_container", c2), ("run_pod", c2), ("start_container", c1)]
    [removed] = run_steps(h, pod_step(h, StepKind.REMOVE_POD, 2, "remove", replicas=2), replicas=2)
    assert removed.detail == f"removed {c2} (volume {h.volume(2)} kept)"
    assert h.volume(2) in h.fake.volumes and c2 not in h.fake.containers


def test_create_pod_replaces_a_leftover_container(h: Harness) -> None:
    converge(h, replicas=2)
    h.fake.remove_container(h.container(1))
    step = pod_step(h, StepKind.CREATE_POD, 1, "start", replicas=2)  # planned while db-1 had no container
    h.fake.run_pod(h.desired(replicas=2).pod(1))  # … and one appeared before the step ran
    [outcome] = run_steps(h, step, replicas=2)
    assert outcome.ok and outcome.detail == f"created {h.container(1)}"
    assert h.fake.mutations()[-2:] == [("remove_container", h.container(1)), ("run_pod", h.container(1))]


# -- the pod machine drives: a step runs only through a transition the table allows, and fires
# it only after its effect succeeded


def test_a_pod_step_without_a_machine_transition_is_refused_and_nothing_happens(h: Harness) -> None:
    converge(h, replicas=2)
    before = list(h.fake.mutations())
    [outcome] = run_steps(h, Step(StepKind.RESTART_POD, 1, "t"), replicas=2)
    assert not outcome.ok and outcome.detail == "refused: restart pod changes a pod but names no pod-machine transition"
    assert h.fake.mutations() == before


def test_a_transition_the_table_does_not_allow_is_refused_and_nothing_happens(h: Harness) -> None:
    converge(h, replicas=2)
    h.fake.stop_container(h.container(1))
    before = list(h.fake.mutations())
    # "remove" is never allowed on the target primary (scale-down keeps it)
    [outcome] = run_steps(h, pod_step(h, StepKind.REMOVE_POD, 0, "remove", replicas=2), replicas=2)
    assert not outcome.ok and outcome.detail == "refused by the pod machine: remove db-0 from primary"
    assert h.fake.mutations() == before and h.container(0) in h.fake.containers


def test_a_failed_effect_fires_no_transition(h: Harness) -> None:
    converge(h, replicas=2)
    h.fake.stop_container(h.container(1))
    h.fake.fail_start(h.container(1))
    [outcome] = run_steps(h, pod_step(h, StepKind.START_POD, 1, "start", replicas=2), replicas=2)
    assert not outcome.ok and outcome.moved == ()


def test_ensure_network(h: Harness) -> None:
    [outcome] = run_steps(h, Step(StepKind.ENSURE_NETWORK, None, "t"), replicas=1)
    assert outcome.ok and outcome.detail == "network voodu-test ready" and "voodu-test" in h.fake.networks


def test_a_permanent_failure_is_reported_and_other_pods_still_run(h: Harness) -> None:
    converge(h, replicas=3)
    for ordinal in (1, 2):
        h.fake.remove_container(h.container(ordinal))
    h.fake.fail_start(h.container(1))
    before = h.fake.calls["run_pod"]
    outcomes = run_steps(h, pod_step(h, StepKind.CREATE_POD, 1, "start", replicas=3),
                         pod_step(h, StepKind.CREATE_POD, 2, "start", replicas=3), replicas=3)
    assert [(o.ok, o.retryable) for o in outcomes] == [(False, False), (True, False)]
    assert outcomes[0].detail == f"start {h.container(1)}: OCI runtime create failed (injected)"
    assert h.fake.calls["run_pod"] - before == 2, "a permanent failure is not retried"


def test_a_transient_failure_is_retried_at_the_step_boundary(h: Harness) -> None:
    h.fake.fail_call("run_pod", nth=1, times=2)
    [outcome] = run_steps(h, pod_step(h, StepKind.CREATE_POD, 0, "start", replicas=1), replicas=1)
    assert outcome.ok and h.fake.calls["run_pod"] == 3
    assert len(h.clock.slept) == 2, "backed off on the fake clock between attempts"


def test_the_default_policy_gives_up_after_four_attempts_and_marks_the_outcome_retryable(h: Harness) -> None:
    h.fake.fail_call("run_pod", times=10)
    desired = h.desired(replicas=1)
    step = pod_step(h, StepKind.CREATE_POD, 0, "start", replicas=1)
    [outcome] = execute(Plan(ref=desired.ref, steps=(step,)), desired, h.fake,
                        assets_dir=h.assets_dir(), retrying=lambda: default_retrying(sleep=h.clock.sleep))
    assert not outcome.ok and outcome.retryable and outcome.detail == "run_pod: 503 Service Unavailable (injected)"
    assert h.fake.calls["run_pod"] == 4
    assert h.clock.slept == [0.2, 0.4, 0.8]


# -- synchronous_standby_names ----------------------------------------------------------------------


def test_sync_names_are_set_on_the_primary_and_reset(h: Harness) -> None:
    converge(h, replicas=3, synchronous=True)
    assert h.fake.volume(h.volume(0)).auto_conf == {"synchronous_standby_names": 'ANY 1 ("db-1", "db-2")'}
    [reset] = run_steps(h, pod_step(h, StepKind.SET_SYNC, 0, "configure", replicas=3), replicas=3)
    assert reset.ok and reset.detail == "synchronous_standby_names = (unset)"
    assert h.fake.volume(h.volume(0)).auto_conf == {}
    statements = [sql for name, sql in h.fake.statements if name == h.container(0)]
    assert statements[-2:] == ["ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()"]


def test_sync_names_failure_names_the_pod(h: Harness) -> None:
    converge(h, replicas=2)
    h.fake.fail_exec(h.container(0), contains="ALTER SYSTEM", exit_code=1,
                     output="ERROR:  could not write postgresql.auto.conf")
    with pytest.raises(RuntimeFailure, match=r"^db-0: ERROR:  could not write postgresql.auto.conf$"):
        set_sync_names(h.fake, h.desired(replicas=2, synchronous=True), 0)
