"""The backup machine: classification from observation, every transition and refusal, reachability,
and the README diagram."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from transitions import MachineError

from voodu_postgres.domain.backup_status import BackupObservation, BackupState, classify
from voodu_postgres.domain.errors import CommandError
from voodu_postgres.states import mermaid
from voodu_postgres.states.backup import (
    BACKUP_TRANSITIONS,
    TRIGGERS,
    BackupMachine,
    BackupRefused,
    BackupView,
    ensure,
    may,
    refusal,
)
from voodu_postgres.states.diagram import block

README = Path(__file__).resolve().parents[2] / "README.md"
S = BackupState
Obs = BackupObservation


@pytest.mark.parametrize("obs,state", [
    # a live container: running, whatever the files say (Go: running overrides complete)
    (Obs(container_state="running"), S.RUNNING),
    (Obs(container_state="created"), S.RUNNING),
    (Obs(container_state="restarting"), S.RUNNING),
    (Obs(container_state="paused"), S.RUNNING),
    (Obs(container_state="running", dump_exists=True), S.RUNNING),
    (Obs(container_state="running", partial_exists=True, recorded="cancelled"), S.RUNNING),  # stop in flight
    # the final dump is the commit point
    (Obs(dump_exists=True), S.COMPLETE),
    (Obs(container_state="exited", exit_code=0, dump_exists=True), S.COMPLETE),
    (Obs(container_state="exited", exit_code=143, dump_exists=True, recorded="cancelled"), S.COMPLETE),
    # cancelled: recorded by cancel, and no dump
    (Obs(recorded="cancelled"), S.CANCELLED),
    (Obs(container_state="exited", exit_code=143, recorded="cancelled"), S.CANCELLED),
    (Obs(partial_exists=True, recorded="cancelled"), S.CANCELLED),
    # failed: a bad exit, a dead container, an orphaned partial, or a recorded failure
    (Obs(container_state="exited", exit_code=1), S.FAILED),
    (Obs(container_state="exited", exit_code=137, partial_exists=True), S.FAILED),
    (Obs(container_state="dead"), S.FAILED),
    (Obs(partial_exists=True), S.FAILED),  # died without cleaning up (host reboot, container removed)
    (Obs(container_state="exited", exit_code=0, partial_exists=True), S.FAILED),
    (Obs(recorded="failed"), S.FAILED),
    # a Voodu job dispatched but not started yet: running (listed, cancellable)
    (Obs(recorded="running"), S.RUNNING),
    (Obs(recorded="running", partial_exists=True), S.FAILED),  # it ran, and its container is gone
    (Obs(container_state="exited", exit_code=0, recorded="running"), S.DELETED),
    # nothing to list: an exited-0 container whose file is gone, or nothing at all
    (Obs(container_state="exited", exit_code=0), S.DELETED),
    (Obs(), S.DELETED),
    (Obs(recorded="complete"), S.DELETED),  # the dump was removed by hand; the sidecar is an orphan
    (Obs(container_state="removing", exit_code=0), S.DELETED),
])
def test_classify(obs: BackupObservation, state: BackupState) -> None:
    assert classify(obs) is state


def test_every_state_in_the_table_is_reachable_from_observation() -> None:
    reached = {
        classify(Obs(container_state="running")),
        classify(Obs(dump_exists=True)),
        classify(Obs(container_state="exited", exit_code=1)),
        classify(Obs(recorded="cancelled")),
        classify(Obs(container_state="exited", exit_code=0)),
    }
    table_states = {row["dest"] for row in BACKUP_TRANSITIONS} | {
        s for row in BACKUP_TRANSITIONS for s in (row["source"] if isinstance(row["source"], list) else [row["source"]])}
    assert reached == set(BackupState) == table_states


def view(*, dump_present: bool = False, dump_major: int | None = None, target_major: int | None = None,
         reason: str | None = None) -> BackupView:
    return BackupView("b005", "s/db", dump_present=dump_present, dump_major=dump_major, target_major=target_major,
                      reason=reason)


#: (state, trigger) → destination, for every legal move with guards satisfied.
LEGAL = {
    (S.RUNNING, "finish"): S.COMPLETE,
    (S.RUNNING, "fail"): S.FAILED,
    (S.RUNNING, "cancel"): S.CANCELLED,
    (S.COMPLETE, "restore"): S.COMPLETE,
    (S.COMPLETE, "download"): S.COMPLETE,
    (S.COMPLETE, "verify"): S.COMPLETE,
    (S.COMPLETE, "delete"): S.DELETED,
    (S.FAILED, "delete"): S.DELETED,
    (S.CANCELLED, "delete"): S.DELETED,
}


def _satisfying_view(state: BackupState, trigger: str) -> BackupView:
    # finish needs the dump; fail needs it absent
    return view(dump_present=trigger == "finish")


@pytest.mark.parametrize("state", list(BackupState))
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_the_whole_table(state: BackupState, trigger: str) -> None:
    v = _satisfying_view(state, trigger)
    machine = BackupMachine(state)
    if (state, trigger) in LEGAL:
        assert may(state, trigger, v) and refusal(state, trigger, v) is None
        ensure(state, trigger, v)
        machine.fire(trigger, v)
        assert machine.backup_state is LEGAL[(state, trigger)]
    else:
        reason = refusal(state, trigger, v)
        assert not may(state, trigger, v) and reason
        assert "\n" not in reason and "b005" in reason
        with pytest.raises(BackupRefused, match=re.escape(reason)):
            ensure(state, trigger, v)
        with pytest.raises(MachineError):
            machine.fire(trigger, v)


def test_commands_ask_the_machine() -> None:
    # restore, download and verify of a backup that is not complete are refused
    for state in (S.RUNNING, S.FAILED, S.CANCELLED):
        for trigger in ("restore", "download", "verify"):
            assert not may(state, trigger, view())
    assert refusal(S.RUNNING, "restore", view()) == (
        "backup b005 is still running; it can be restored once it is complete")
    assert refusal(S.FAILED, "download", view(reason="pg_dump exited 1")) == (
        "backup b005 failed: pg_dump exited 1; only a complete backup can be downloaded")
    assert refusal(S.CANCELLED, "verify", view()) == "backup b005 was cancelled; only a complete backup can be verified"
    # deleting a running backup is refused: cancel it
    assert refusal(S.RUNNING, "delete", view()) == (
        "backup b005 is still running: cancel it first (vd pg:backups:cancel s/db b005)")
    assert refusal(S.RUNNING, "delete", view(), cli="voodu-postgres ") == (
        "backup b005 is still running: cancel it first (voodu-postgres backups:cancel s/db b005)")
    # cancelling a finished one says so (Go's text)
    for state in (S.COMPLETE, S.FAILED, S.CANCELLED):
        assert refusal(state, "cancel", view()) == "backup b005 is not running (nothing to cancel)"
    assert refusal(S.DELETED, "restore", view()) == "backup b005 no longer exists"


def test_a_capture_finishes_only_with_its_dump() -> None:
    assert not may(S.RUNNING, "finish", view(dump_present=False))
    assert refusal(S.RUNNING, "finish", view()) == "backup b005 has not produced its dump yet"
    assert not may(S.RUNNING, "fail", view(dump_present=True))
    assert may(S.RUNNING, "fail", view(dump_present=False))
    assert refusal(S.COMPLETE, "fail", view()) == "backup b005 already ended (complete)"


def test_a_dump_from_a_newer_major_is_refused() -> None:
    newer = view(dump_major=16, target_major=15)
    for trigger in ("restore", "verify"):
        assert not may(S.COMPLETE, trigger, newer)
    assert refusal(S.COMPLETE, "restore", newer) == (
        "backup b005 was dumped from PostgreSQL 16, newer than the target's 15: "
        "it can only be restored into PostgreSQL 16 or later")
    assert may(S.COMPLETE, "download", newer)  # reading the file needs no server
    assert may(S.COMPLETE, "restore", view(dump_major=15, target_major=16))
    assert may(S.COMPLETE, "restore", view(dump_major=15, target_major=15))
    assert may(S.COMPLETE, "restore", view(dump_major=None, target_major=15))  # unknown: not refused
    assert may(S.COMPLETE, "restore", view(dump_major=16, target_major=None))


def test_refusals_are_command_errors() -> None:
    with pytest.raises(CommandError):
        ensure(S.RUNNING, "delete", view())


def test_unknown_trigger_is_a_bug() -> None:
    with pytest.raises(ValueError):
        may(S.COMPLETE, "explode", view())


def test_no_auto_transition_back_doors() -> None:
    assert not hasattr(BackupMachine(S.RUNNING), "to_complete")


def test_readme_diagram_matches_the_table() -> None:
    text = README.read_text()
    match = re.search(r"<!-- backup-machine:start -->\n```mermaid\n(.*?)```\n<!-- backup-machine:end -->", text, re.S)
    assert match, ("README lacks the generated backup machine diagram: add the "
                   "<!-- backup-machine:start --> / <!-- backup-machine:end --> markers and run "
                   "`python -m voodu_postgres.states.diagram`")
    assert match.group(1) == mermaid(BACKUP_TRANSITIONS, initial=BackupState.RUNNING), (
        "README diagram drifted from states/backup.py: regenerate it with `python -m voodu_postgres.states.diagram`")


def test_diagram_tool_regenerates_both_machines(tmp_path: Path) -> None:
    from voodu_postgres.states import diagram

    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- pod-machine:start -->\nold\n<!-- pod-machine:end -->\ny\n"
                      "<!-- backup-machine:start -->\nstale\n<!-- backup-machine:end -->\nz\n")
    assert diagram.main(str(readme)) == 0
    assert readme.read_text() == f"x\n{block('pod-machine')}\ny\n{block('backup-machine')}\nz\n"
    readme.write_text("x\n<!-- pod-machine:start -->\nold\n<!-- pod-machine:end -->\n")
    assert diagram.main(str(readme)) == 1  # backup markers missing: says so, still regenerates the pod block
    assert block("pod-machine") in readme.read_text()
