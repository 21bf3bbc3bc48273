"""Write effects: run a plan's steps through the runtime, with one retry policy at this boundary.

Each step is idempotent (it checks before it acts), so retrying a transient Docker failure is
safe. Retries live only here — never inside the runtime — so they don't multiply. A failing step
becomes a failed :class:`Outcome`; the remaining steps of *other* pods still run (one broken pod
must not stall the cluster), and the loop re-observes afterwards anyway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from voodu_postgres.adapters.docker import Runtime, RuntimeFailure
from voodu_postgres.adapters.files import write_assets
from voodu_postgres.adapters.postgres import Endpoint, Postgres
from voodu_postgres.domain.intents import PLANNED_WAL_WAIT, SwitchoverRequest, clear_switchover
from voodu_postgres.domain.keys import LAST_FAILOVER_KEY, SWITCHOVER_KEY, SWITCHOVER_REQUEST_KEY
from voodu_postgres.domain.model import CLUSTER_KINDS, Desired, Outcome, Plan, Step, StepKind, lsn_text
from voodu_postgres.domain.podspec import PodSpec
from voodu_postgres.domain.record import ClusterRecord
from voodu_postgres.reconciler import effects as repair
from voodu_postgres.reconciler.desired import OVERRIDES_KEY
from voodu_postgres.reconciler.observe import pod_endpoint
from voodu_postgres.reconciler.plan.failover import best_standby

_T = TypeVar("_T")
STOP_TIMEOUT_S = 30  # docker stop grace: SIGINT = fast shutdown, normally well under a second


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeFailure) and exc.transient


def default_retrying(sleep: Callable[[float], None] = time.sleep) -> Retrying:
    return Retrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(4) | stop_after_delay(60),
        wait=wait_exponential(multiplier=0.2, max=5),
        sleep=sleep,
        reraise=True,
    )


@dataclass(frozen=True)
class Records:
    """What the steps that finish an interrupted promote or rejoin need beyond Docker: the bucket
    (to read the intents and record their outcome — ``write`` also updates the state file pods
    read the primary from), the replication role, and the labels for one-shot containers."""

    read: Callable[[], Mapping[str, str]]
    write: Callable[[Mapping[str, str]], None]
    replication_user: str
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    wall: Callable[[], float] = time.time  # epoch seconds, for the failover record
    progress: Callable[[str], None] = lambda _line: None  # what a long step (a rewind) is doing


REPAIR_KINDS = frozenset({StepKind.FAILOVER, StepKind.PROMOTE, StepKind.RECORD_PRIMARY, StepKind.CLEAR_SWITCHOVER,
                          StepKind.FENCE, StepKind.REJOIN, StepKind.CLEAR_REJOIN, StepKind.REPOINT})


def execute(
    plan: Plan,
    desired: Desired,
    runtime: Runtime,
    *,
    assets_dir: Path,
    retrying: Callable[[], Retrying] = default_retrying,
    records: Records | None = None,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    # the reload step writes the overrides itself, keeping the old text to restore on rejection.
    # That text is read once, here, before any attempt writes: a retried attempt must restore what
    # was live before this step, not the new text its failed predecessor already wrote.
    reload_planned = any(s.kind is StepKind.RELOAD_CONFIG for s in plan.steps)
    previous = _read(assets_dir / OVERRIDES_KEY) if reload_planned else None
    for step in plan.steps:
        why = refusal(step)
        if why is not None:
            outcomes.append(Outcome(step, False, why))
            continue
        try:
            for attempt in retrying():
                with attempt:
                    if step.kind in REPAIR_KINDS:
                        detail = _repair(step, desired, runtime, records)
                    else:
                        detail = _run(step, desired, runtime, assets_dir, reload_planned, previous)
        except RuntimeFailure as exc:
            outcomes.append(Outcome(step, False, str(exc), retryable=exc.transient))
            continue
        # the effect happened: only now do the machines move
        outcomes.append(Outcome(step, True, detail, moved=tuple(move.fire() for move in step.moves)))
    return outcomes


def refusal(step: Step) -> str | None:
    """Why the executor will not run ``step``: a pod step that names no machine transition, or one
    the pod machine's table does not allow (a planner bug, or a table row that was removed)."""
    if step.kind not in CLUSTER_KINDS and not step.moves:
        return f"refused: {step.kind.value} changes a pod but names no pod-machine transition"
    refused = [move for move in step.moves if not move.allowed()]
    if refused:
        return "refused by the pod machine: " + ", ".join(str(move) for move in refused)
    return None


def _repair(step: Step, desired: Desired, runtime: Runtime, records: Records | None) -> str:
    """The steps that finish what an interrupted promote or rejoin left (see ``plan``)."""
    assert step.ordinal is not None
    ordinal, name = step.ordinal, desired.app_name(step.ordinal)
    if records is None:
        raise RuntimeFailure(f"{step.kind.value} {name} needs the state store")
    if step.kind is StepKind.PROMOTE:
        note = _check_target(desired, runtime, records, ordinal)
        return repair.promote_pod(runtime, desired, ordinal) + note
    if step.kind is StepKind.RECORD_PRIMARY:
        records.write(ClusterRecord.of(records.read()).flip(ordinal))
        return f"recorded {name} as the primary; {desired.app_name(desired.target_primary)} will rejoin it"
    if step.kind is StepKind.CLEAR_SWITCHOVER:
        # an automatic failover that never got past its fence did not happen: no record of it
        records.write(ClusterRecord.of(records.read()).drop_switchover())
        refused = step.data.get("refused")
        return f"dropped the switchover to {name}: {refused}" if refused else \
            f"dropped the unfinished switchover to {name}"
    if step.kind is StepKind.FENCE and ordinal == desired.target_primary and step.data.get("planned"):
        return _fence_planned(desired, runtime, records, ordinal)
    if step.kind is StepKind.FENCE and ordinal == desired.target_primary:
        # the old primary of an unfinished switchover or failover, not stopped: a failing one gets
        # a short stop, a planned promote's the clean shutdown
        return repair.fence_failing(runtime, desired, ordinal, timeout=repair.FAILING_FENCE_TIMEOUT
                                    if step.data.get("failing") else repair.STOP_TIMEOUT)
    if step.kind is StepKind.FENCE:
        code = repair.fence(runtime, desired, ordinal)
        return f"fenced {name} (stopped, exit code {code})"
    if step.kind is StepKind.FAILOVER:
        # the intent and the record first (one write): killed after it, the next pass finishes
        # the failover from PG_SWITCHOVER_TO; then the fence, before anything is promoted
        records.write({**clear_switchover(), SWITCHOVER_KEY: str(ordinal),
                       LAST_FAILOVER_KEY: json.dumps(dict(step.data), sort_keys=True)})
        fenced = repair.fence_failing(runtime, desired, desired.target_primary)
        return f"{step.reason} — {fenced}; recorded the failover to {name} (it is promoted next)"
    if step.kind is StepKind.REJOIN:
        records.write(ClusterRecord.of(records.read()).mark_rejoin(ordinal))
        return repair.rejoin_pod(runtime, desired, ordinal, replication_user=records.replication_user,
                                 bucket=records.read(), extra_labels=records.extra_labels,
                                 progress=records.progress)
    if step.kind is StepKind.CLEAR_REJOIN:
        records.write(ClusterRecord.of(records.read()).forget_rejoin(ordinal))
        return f"{name} rejoined: streaming from {desired.app_name(desired.target_primary)}"
    if step.kind is StepKind.REPOINT:
        return repair.repoint(runtime, desired, ordinal)
    raise AssertionError(f"unhandled step {step.kind}")  # pragma: no cover


def _fence_planned(desired: Desired, runtime: Runtime, records: Records, ordinal: int) -> str:
    """A planned switchover's fence: record the old primary's last WAL position, then stop it
    cleanly. Postgres' walsenders do not exit before every standby has flushed the shutdown
    checkpoint, so a stop with exit code 0 means every committed write reached the standbys. An
    unclean stop gives no such promise: the switchover is dropped and the old primary restarts."""
    name, request = desired.app_name(ordinal), desired.switchover_request
    assert request is not None
    final = repair.current_position(runtime, desired, ordinal)
    request = replace(request, final_lsn=final, fenced_at=None)
    records.write({SWITCHOVER_REQUEST_KEY: request.to_json()})  # before the stop: promote waits for it
    code = repair.fence(runtime, desired, ordinal)
    if code != 0:
        records.write(clear_switchover())
        raise RuntimeFailure(f"fencing {name}: it stopped with exit code {code}, not cleanly; inspect it, then "
                             "retry with --force (the switchover was dropped; reconcile restarts it)")
    records.write({SWITCHOVER_REQUEST_KEY: replace(request, fenced_at=records.wall()).to_json()})
    return f"fenced {name}: clean shutdown, so every committed write was sent to the standbys"


def _check_target(desired: Desired, runtime: Runtime, records: Records, target: int) -> str:
    """Before ``pg_promote()`` of a switchover target, with the old primary stopped (the planner
    only promotes then): every standby's received WAL is final now, so measure it again.

    A planned switchover waits (up to ``PLANNED_WAL_WAIT`` after the fence) until its target has
    received the old primary's last position. Otherwise a primary that ran until its fence may
    have sent more WAL to another standby than to the target chosen before it (with ``ANY 1``
    those bytes hold acknowledged commits): an automatic or interrupted switchover then moves to
    that standby and this pass ends, so the planner promotes it; a forced failover the operator
    asked for is refused instead, unless ``--yes`` accepts the loss. With ``synchronous``, a silent
    standby may hold acknowledged commits nobody else has: the switchover is dropped (the old
    primary, which has them all, is started again) rather than lose them. An automatic failover's
    record gets what the promoted standby had: its LSN and how much less than the old primary's
    last known position."""
    P = desired.target_primary
    request = desired.switchover_request
    standbys, answering = _received(desired, runtime, target)
    if request is not None and request.planned and request.final_lsn is not None:
        waited = _planned_wal(desired, records, request, answering[target])
        if waited is not None:
            return waited
    record = ClusterRecord.of(records.read()).last_failover
    automatic = record.get("state") == "fencing" and record.get("from") == P
    manual = request is not None and not request.planned
    accept_loss = manual and request is not None and request.accept_loss
    synchronous = desired.sync_names is not None and (record.get("synchronous", True) if automatic else True)
    silent = [o for o in standbys if o not in answering]
    if synchronous and silent and not accept_loss:
        _drop_for_silent(desired, records, target, silent, automatic=automatic)
    best = best_standby(answering)
    if answering[best] > answering[target] and not accept_loss:
        _move_or_refuse(desired, records, record if automatic else None, answering, target, best, manual=manual)
    if manual:
        return _failover_note(desired, answering, target, best)
    return _record_automatic(desired, records, record, answering, target) if automatic else ""


def _received(desired: Desired, runtime: Runtime, target: int) -> tuple[list[int], dict[int, int]]:
    """The standbys that count, and the received WAL position of each that answers (the target must)."""
    P = desired.target_primary
    standbys = [o for o in range(desired.replicas) if o != P and o not in desired.rejoin]
    received = repair.received_positions(runtime, desired, standbys)
    answering = {o: v for o, v in received.items() if v is not None}
    if target not in answering:
        raise RuntimeFailure(f"{desired.app_name(target)} does not report its received WAL", transient=True)
    return standbys, answering


def _drop_for_silent(desired: Desired, records: Records, target: int, silent: list[int], *, automatic: bool) -> None:
    """Synchronous, and a standby does not answer: it may hold acknowledged commits nobody else
    has, so the switchover is dropped and the old primary started again. Always raises."""
    names = ", ".join(desired.app_name(o) for o in silent)
    records.write({**clear_switchover(), **({LAST_FAILOVER_KEY: ""} if automatic else {})})
    raise RuntimeFailure(f"not promoting {desired.app_name(target)}: {names} did not answer and may hold "
                         f"acknowledged writes (synchronous); dropped the switchover — "
                         f"{desired.app_name(desired.target_primary)} is started again")


def _move_or_refuse(desired: Desired, records: Records, automatic: Mapping[str, Any] | None,
                    answering: Mapping[int, int], target: int, best: int, *, manual: bool) -> None:
    """Another standby has more WAL than the target: a forced failover the operator asked for is
    refused (it names the better one); any other switchover moves to it. Always raises."""
    more = f"{desired.app_name(best)} has received {answering[best] - answering[target]} bytes more WAL than " \
           f"{desired.app_name(target)}"
    if manual:
        records.write(clear_switchover())
        raise RuntimeFailure(f"{more}; promote --replica {best} instead, or add --yes to accept losing them")
    records.write({SWITCHOVER_KEY: str(best), SWITCHOVER_REQUEST_KEY: "",
                   **({LAST_FAILOVER_KEY: json.dumps({**automatic, "to": best}, sort_keys=True)}
                      if automatic is not None else {})})
    raise RuntimeFailure(f"{more} since the choice: the switchover now targets {desired.app_name(best)}")


def _planned_wal(desired: Desired, records: Records, request: SwitchoverRequest, got: int) -> str | None:
    """A planned switchover's target and the old primary's last position: the note once it has
    it, a (transient) failure while it may still come, None once waiting is over — the target is
    then judged as after any fence."""
    final = request.final_lsn
    assert final is not None
    name, old = desired.app_name(request.to), desired.app_name(desired.target_primary)
    if got >= final:
        return f" ({name} had received all WAL of {old}, up to {lsn_text(final)})"
    now = records.wall()
    if request.fenced_at is None:  # stopped by a fence killed before it recorded the time
        records.write({SWITCHOVER_REQUEST_KEY: replace(request, fenced_at=now).to_json()})
        request = replace(request, fenced_at=now)
    assert request.fenced_at is not None
    if now - request.fenced_at < PLANNED_WAL_WAIT:
        raise RuntimeFailure(f"waiting for {name} to receive {old}'s last WAL ({lsn_text(got)} of "
                             f"{lsn_text(final)})", transient=True)
    return None


def _failover_note(desired: Desired, answering: Mapping[int, int], target: int, best: int) -> str:
    """What a forced failover the operator asked for may have lost (its promote message)."""
    old, name = desired.app_name(desired.target_primary), desired.app_name(target)
    mine = answering[target]
    ahead = f", {answering[best] - mine} bytes behind {desired.app_name(best)}" if answering[best] > mine else ""
    return (f" — failover: {old} was down; {name} had received WAL up to {lsn_text(mine)}{ahead}; "
            f"writes after that point on {old} are lost")


def _record_automatic(desired: Desired, records: Records, record: Mapping[str, Any], answering: Mapping[int, int],
                      target: int) -> str:
    """An automatic failover's record, completed with what its promoted standby had."""
    top = max([record.get("last_lsn") or 0, *answering.values()])
    lost = 0 if record.get("synchronous") else top - answering[target]
    now = records.wall()
    records.write({LAST_FAILOVER_KEY: json.dumps({
        **record, "to": target, "received_lsn": lsn_text(answering[target]), "lost_bytes": lost,
        "state": "promoted", "epoch": round(now, 3), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))},
        sort_keys=True)})
    return (" (synchronous: no acknowledged write lost)" if record.get("synchronous") else
            f" (received up to {lsn_text(answering[target])}: {lost} bytes behind the old primary's last known "
            "position are lost)")


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def _run(step: Step, desired: Desired, runtime: Runtime, assets_dir: Path, reload_planned: bool,
         previous: str | None) -> str:
    ordinal = step.ordinal
    if step.kind is StepKind.ENSURE_NETWORK:
        runtime.ensure_network(desired.network)
        return f"network {desired.network} ready"
    if step.kind is StepKind.WRITE_ASSETS:
        files = [f for f in desired.files if not (reload_planned and f.name == OVERRIDES_KEY)]
        write_assets(assets_dir, files)
        return f"asset files written to {assets_dir}"
    if step.kind is StepKind.SET_SYNC:
        assert step.ordinal is not None
        return set_sync_names(runtime, desired, step.ordinal)
    if step.kind is StepKind.RELOAD_CONFIG:
        return _reload_config(desired, runtime, assets_dir, previous)
    assert ordinal is not None
    pod = desired.pod(ordinal) if ordinal < desired.replicas else None
    container = desired.ref.container(ordinal)
    if step.kind is StepKind.CREATE_POD:
        assert pod is not None
        if runtime.container_state(container) is not None:
            runtime.remove_container(container, timeout=STOP_TIMEOUT_S)
        runtime.run_pod(pod)
        return f"created {container}"
    if step.kind is StepKind.START_POD:
        runtime.start_container(container)
        return f"started {container}"
    if step.kind is StepKind.RECREATE_POD:
        assert pod is not None
        runtime.remove_container(container, timeout=STOP_TIMEOUT_S)
        runtime.run_pod(pod)
        return f"recreated {container}"
    if step.kind is StepKind.RESTART_POD:
        runtime.restart_container(container, timeout=STOP_TIMEOUT_S)
        return f"restarted {container}"
    if step.kind is StepKind.REMOVE_POD:
        runtime.remove_container(container, timeout=STOP_TIMEOUT_S)
        return f"removed {container} (volume {desired.ref.volume(ordinal)} kept)"
    raise AssertionError(f"unhandled step {step.kind}")  # pragma: no cover


def set_sync_names(runtime: Runtime, desired: Desired, ordinal: int) -> str:
    """Set (or reset) ``synchronous_standby_names`` on a primary, in postgresql.auto.conf."""
    pg, endpoint = runtime.postgres(), pod_endpoint(runtime, desired, ordinal)
    pg.alter_system(endpoint, "synchronous_standby_names", desired.sync_names or None)
    pg.reload(endpoint)
    return f"synchronous_standby_names = {desired.sync_names or '(unset)'}"


def _reload_config(desired: Desired, runtime: Runtime, assets_dir: Path, previous: str | None) -> str:
    """Rewrite the overrides file and reload every running pod — unless Postgres rejects it.

    ``pg_reload_conf()`` succeeds even when a line is invalid (a typo in a parameter name, a bad
    value): the server just keeps the old value and would refuse to start on its next restart.
    So ``pg_file_settings`` is checked on the first pod whose reload *succeeded* (the next one, if
    the check itself cannot run there); on any error the previous file — ``previous``, the text
    live before this step — is put back, the pods already reloaded are reloaded again, and the step
    fails with Postgres' own words. When running pods exist but none could be reloaded and
    checked, the new file is not left behind unverified either: the previous one is restored and
    the step fails (transiently: the next pass tries again).
    """
    overrides = assets_dir / OVERRIDES_KEY
    write_assets(assets_dir, desired.files)
    reloaded: list[PodSpec] = []
    not_reloaded: list[str] = []  # "db-1 (why)"
    try:
        running = [p for p in desired.pods if runtime.container_state(p.container) == "running"]
        unchecked: list[str] = []
        verified = False
        for pod in running:
            name = desired.app_name(pod.ordinal)
            problem = _try(runtime, desired, pod, lambda pg, ep: pg.reload(ep))[1]
            if problem is not None:
                not_reloaded.append(f"{name} ({problem})")
                continue
            reloaded.append(pod)
            if verified:
                continue
            errors, problem = _try(runtime, desired, pod, lambda pg, ep: pg.config_errors(ep))
            if problem is not None:
                unchecked.append(f"{name} (pg_file_settings: {problem})")
                continue
            if errors:
                raise RuntimeFailure(f"pg_config rejected by Postgres ({'; '.join(errors)}); previous settings kept")
            verified = True
        if running and not verified:
            raise RuntimeFailure(f"could not reload pg_config on any running pod "
                                 f"({', '.join(not_reloaded + unchecked)}); previous settings kept", transient=True)
    except RuntimeFailure:
        _restore(desired, runtime, overrides, previous, reloaded)
        raise
    names = ", ".join(desired.app_name(p.ordinal) for p in reloaded) or "no running pod"
    return f"reloaded {names}" + (f"; not reloaded: {', '.join(not_reloaded)}" if not_reloaded else "")


def _try(runtime: Runtime, desired: Desired, pod: PodSpec,
         call: Callable[[Postgres, Endpoint], _T]) -> tuple[_T | None, str | None]:
    """One call on a pod's Postgres: (its result, None), or (None, why it failed)."""
    name = desired.app_name(pod.ordinal)
    try:
        return call(runtime.postgres(), pod_endpoint(runtime, desired, pod.ordinal)), None
    except RuntimeFailure as exc:
        return None, str(exc).removeprefix(f"{name}: ")


def _restore(desired: Desired, runtime: Runtime, overrides: Path, previous: str | None,
             reloaded: list[PodSpec]) -> None:
    """Put the previous overrides back (in place: pods bind the inode) and reload the pods that
    already read the new text. Best effort: the step fails anyway. With no file before this step,
    an empty one: no overrides, never the rejected text."""
    overrides.write_text(previous or "", encoding="utf-8")
    for pod in reloaded:
        _try(runtime, desired, pod, lambda pg, ep: pg.reload(ep))
