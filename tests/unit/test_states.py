"""The pod-role machine: classification, guards, illegal moves, and the README diagram."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from transitions import MachineError

from voodu_postgres.domain.model import PgStatus, PodStatus
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.states import mermaid
from voodu_postgres.states.pod import POD_TRANSITIONS, PodMachine, PodView, classify

README = Path(__file__).resolve().parents[2] / "README.md"


def pod(ordinal: int = 1, *, state: str = "running", pg: PgStatus | None = None, exists: bool = True,
        guard: bool = False) -> PodStatus:
    return PodStatus(ordinal=ordinal, container=f"s-db.{ordinal}", exists=exists, state=state, pg=pg,
                     guard_tripped=guard)


def view(p: PodStatus, *, primary_ready: bool = True, writable: int = 1, target: int = 0,
         streaming: bool = True, primary_stopped: bool = False, failover_due: bool = False,
         switchover: int | None = None) -> PodView:
    return PodView(pod=p, target_primary=target, primary_ready=primary_ready, writable_count=writable,
                   standbys_streaming=streaming, primary_stopped=primary_stopped, failover_due=failover_due,
                   switchover=switchover)


@pytest.mark.parametrize("status,target,writable,role", [
    (pod(exists=False, state="absent"), 0, 0, PodRole.DOWN),
    (pod(state="exited"), 0, 0, PodRole.DOWN),
    (pod(0), 0, 0, PodRole.PENDING),
    (pod(1), 0, 1, PodRole.BOOTSTRAPPING),
    (pod(1, pg=PgStatus(in_recovery=True)), 0, 1, PodRole.STANDBY),
    (pod(0, pg=PgStatus(in_recovery=False)), 0, 1, PodRole.PRIMARY),
    (pod(1, pg=PgStatus(in_recovery=False)), 0, 2, PodRole.SPLIT_BRAIN),
    (pod(0, pg=PgStatus(in_recovery=False)), 0, 2, PodRole.SPLIT_BRAIN),
    (pod(1, state="restarting", guard=True), 0, 1, PodRole.SPLIT_BRAIN),
])
def test_classify(status: PodStatus, target: int, writable: int, role: PodRole) -> None:
    assert classify(status, target_primary=target, writable_count=writable) is role


def test_standby_may_only_start_once_the_primary_serves() -> None:
    down = pod(1, state="absent", exists=False)
    assert not PodMachine(PodRole.DOWN).may("start", view(down, primary_ready=False))
    machine = PodMachine(PodRole.DOWN)
    assert machine.may("start", view(down))
    machine.fire("start", view(down))
    assert machine.role is PodRole.BOOTSTRAPPING


def test_primary_never_starts_next_to_another_writer() -> None:
    down = pod(0, state="exited")
    assert not PodMachine(PodRole.DOWN).may("start", view(down, writable=1))
    machine = PodMachine(PodRole.DOWN)
    machine.fire("start", view(down, writable=0))
    assert machine.role is PodRole.PENDING


def test_split_brain_data_is_never_started() -> None:
    tripped = pod(1, state="exited", guard=True)
    assert not PodMachine(PodRole.DOWN).may("start", view(tripped))


def test_the_primary_cannot_be_removed_and_rolls_last() -> None:
    primary = pod(0, pg=PgStatus(in_recovery=False))
    assert not PodMachine(PodRole.PRIMARY).may("remove", view(primary))
    assert not PodMachine(PodRole.PRIMARY).may("roll", view(primary, streaming=False))
    assert PodMachine(PodRole.PRIMARY).may("roll", view(primary))


def test_promote_and_rejoin_guards() -> None:
    primary = pod(0, pg=PgStatus(in_recovery=False))
    assert not PodMachine(PodRole.PRIMARY).may("promote", view(primary))  # the primary can't be promoted
    assert not PodMachine(PodRole.PRIMARY).may("rejoin", view(primary))  # nor rejoined
    cloning = pod(2)
    assert not PodMachine(PodRole.BOOTSTRAPPING).may("promote", view(cloning))  # still cloning
    assert PodMachine(PodRole.STANDBY).may("promote", view(pod(1, pg=PgStatus(in_recovery=True))))


def test_illegal_trigger_raises() -> None:
    with pytest.raises(MachineError):
        PodMachine(PodRole.PRIMARY).fire("serve", view(pod(0)))


def test_no_auto_transition_back_doors() -> None:
    assert not hasattr(PodMachine(PodRole.DOWN), "to_primary")


def test_readme_diagram_matches_the_table() -> None:
    text = README.read_text()
    match = re.search(r"<!-- pod-machine:start -->\n```mermaid\n(.*?)```\n<!-- pod-machine:end -->", text, re.S)
    assert match, "README lacks the generated pod machine diagram"
    assert match.group(1) == mermaid(POD_TRANSITIONS, initial=PodRole.DOWN), (
        "README diagram drifted from states/pod.py: regenerate it with "
        "`python -m voodu_postgres.states.diagram`")


def test_every_role_in_the_table_is_reachable_from_observation_and_recorded_intents() -> None:
    primary = PgStatus(in_recovery=False)
    standby = PgStatus(in_recovery=True)
    reached = {
        classify(pod(0, state="exited"), target_primary=0, writable_count=0),  # down
        classify(pod(0), target_primary=0, writable_count=0),  # pending
        classify(pod(1), target_primary=0, writable_count=1),  # bootstrapping
        classify(pod(1, pg=standby), target_primary=0, writable_count=1),  # standby
        classify(pod(0, pg=primary), target_primary=0, writable_count=1),  # primary
        classify(pod(1, pg=standby), target_primary=0, writable_count=1, switchover=1),  # promoting
        classify(pod(0, state="exited"), target_primary=0, writable_count=0, switchover=1),  # fenced (old)
        classify(pod(0, state="exited"), target_primary=1, writable_count=1, rejoin=frozenset({0})),  # fenced
        classify(pod(0, pg=standby), target_primary=1, writable_count=1, rejoin=frozenset({0})),  # rejoining
        classify(pod(1, pg=primary), target_primary=0, writable_count=2),  # split brain
    }
    table_states = {row["dest"] for row in POD_TRANSITIONS if row["dest"] != "="} | {
        s for row in POD_TRANSITIONS for s in (row["source"] if isinstance(row["source"], list) else [row["source"]])}
    assert reached == set(PodRole) == table_states


def test_interrupted_switchover_moves() -> None:
    promoting = pod(1, pg=PgStatus(in_recovery=True))
    # the old primary still serves: roll back; it is fenced: promote again
    assert PodMachine(PodRole.PROMOTING).may("abandon", view(promoting, primary_ready=True))
    assert not PodMachine(PodRole.PROMOTING).may("repromote", view(promoting, primary_ready=True))
    assert PodMachine(PodRole.PROMOTING).may("repromote", view(promoting, primary_ready=False, writable=0,
                                                               primary_stopped=True))
    # not while the old primary's container can still run (hung, paused, restarting): fence it first
    assert not PodMachine(PodRole.PROMOTING).may("repromote", view(promoting, primary_ready=False, writable=0))
    promoted = pod(1, pg=PgStatus(in_recovery=False))
    assert PodMachine(PodRole.PROMOTING).may("promoted", view(promoted, primary_ready=False))
    assert not PodMachine(PodRole.PROMOTING).may("abandon", view(promoted, primary_ready=True))


def test_a_paused_or_restarting_old_primary_is_not_fenced_until_stopped() -> None:
    for state in ("paused", "restarting"):
        old = pod(0, state=state)
        assert classify(old, target_primary=0, writable_count=0, switchover=1) is PodRole.DOWN
        machine = PodMachine(PodRole.DOWN)
        assert machine.may("fence", view(old, switchover=1, primary_ready=False))
        assert not machine.may("fence", view(old, primary_ready=False)), "no switchover recorded: no fence"
    hung = pod(0)  # running, Postgres not answering
    assert PodMachine(PodRole.PENDING).may("fence", view(hung, switchover=1, primary_ready=False))
    stopped = pod(0, state="exited")
    assert classify(stopped, target_primary=0, writable_count=0, switchover=1) is PodRole.FENCED


def test_fail_over_needs_the_decision_and_only_fences_the_primary() -> None:
    for role, status in ((PodRole.PRIMARY, pod(0, pg=PgStatus(in_recovery=False))), (PodRole.PENDING, pod(0)),
                         (PodRole.DOWN, pod(0, state="exited"))):
        assert PodMachine(role).may("fail_over", view(status, failover_due=True))
        assert not PodMachine(role).may("fail_over", view(status, failover_due=False))
    standby = pod(1, pg=PgStatus(in_recovery=True))
    assert not PodMachine(PodRole.STANDBY).may("fail_over", view(standby, failover_due=True))
    machine = PodMachine(PodRole.PRIMARY)
    machine.fire("fail_over", view(pod(0, pg=PgStatus(in_recovery=False)), failover_due=True))
    assert machine.role is PodRole.FENCED
