"""The planner: (Desired, Observed) → Plan. Pure — it has no side effects.

Level-triggered: every pass compares what exists with what should exist; it never diffs old
and new HCL. The plan holds the steps to run *now*, what we are waiting for (a primary still
booting, a standby still cloning), and what is blocked on a human (split brain, a refused
scale-down). The loop executes the steps, re-observes, and plans again.

Ordering rules, in priority order:

1. infrastructure: the network, then asset files on disk (a changed ``pg_config`` alone is a
   reload, not a restart);
2. the primary: created or started first;
3. standbys: created all at once — cloned in parallel by their own entrypoints — as soon as the
   primary serves (no fixed sleeps: the trigger is the observed primary);
4. scale-down: highest ordinals first, never the primary;
5. rolling changes, one pod per pass, only when nothing else is in flight: recreations for a
   changed pod hash, then restarts for parameters Postgres reports as ``pending_restart``;
   standbys first (highest ordinal first), the primary last.

Every move is checked against the pod state machine (``states.pod``): the planner asks the
machine whether the trigger is allowed, so the guards in the table are the single source of
policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from voodu_postgres.domain.health import FAILOVER_COOLDOWN, MIN_FAILED_PROBES
from voodu_postgres.domain.model import (
    Desired,
    Observed,
    Plan,
    PodStatus,
    Step,
    StepKind,
    Wait,
    lsn_text,
    lsn_value,
)
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.reconciler.desired import OVERRIDES_KEY
from voodu_postgres.states.pod import PodMachine, PodView, classify

FAILOVER_COOLDOWN_TEXT = f"{FAILOVER_COOLDOWN / 60:g} minutes"


def streams_from_primary(desired: Desired, pod: PodStatus) -> bool:
    pg = pod.pg
    return (
        pg is not None
        and pg.in_recovery
        and pg.receiver_status == "streaming"
        and pg.receiver_host == desired.host(desired.target_primary)
    )


def roles_of(desired: Desired, observed: Observed) -> dict[int, PodRole]:
    """The classified role of every desired or observed ordinal (absent pods are DOWN)."""
    writable = len(observed.writable)
    ordinals = set(range(desired.replicas)) | {p.ordinal for p in observed.pods}
    out: dict[int, PodRole] = {}
    for ordinal in sorted(ordinals):
        pod = observed.pod(ordinal) or PodStatus(ordinal=ordinal, container=desired.ref.container(ordinal))
        out[ordinal] = classify(pod, target_primary=desired.target_primary, writable_count=writable,
                                switchover=desired.switchover, rejoin=desired.rejoin)
    return out


def pod_of(desired: Desired, observed: Observed, ordinal: int) -> PodStatus:
    """The observed pod, or an absent placeholder for an ordinal nothing exists for."""
    return observed.pod(ordinal) or PodStatus(ordinal=ordinal, container=desired.ref.container(ordinal))


def describe(desired: Desired, observed: Observed) -> str:
    """One phrase per pod, e.g. ``db-0 primary, db-1 streaming, db-2 cloning``."""
    roles = roles_of(desired, observed)
    parts = []
    for ordinal, role in roles.items():
        name = desired.app_name(ordinal)
        pod = pod_of(desired, observed, ordinal)
        if ordinal >= desired.replicas and not pod.exists:
            continue
        if role is PodRole.STANDBY:
            parts.append(f"{name} {'streaming' if streams_from_primary(desired, pod) else 'standby (not streaming)'}")
        elif role is PodRole.BOOTSTRAPPING:
            parts.append(f"{name} cloning")
        elif role is PodRole.PENDING:
            parts.append(f"{name} starting")
        elif role is PodRole.REJOINING:
            parts.append(f"{name} rejoining")
        else:
            parts.append(f"{name} {role.value}")
    return ", ".join(parts)


def plan(desired: Desired, observed: Observed) -> Plan:
    """The next steps for one resource. It has no side effects."""
    steps: list[Step] = []
    waiting: list[Wait] = []
    blocked: list[str] = []
    ref = desired.ref
    P = desired.target_primary
    roles = roles_of(desired, observed)
    writable = observed.writable

    # 1. infrastructure
    if not observed.network_exists:
        steps.append(Step(StepKind.ENSURE_NETWORK, None, f"network {desired.network} is missing"))
    wanted = {f.name: f.sha256 for f in desired.files}
    changed = sorted(k for k, digest in wanted.items() if observed.asset_digests.get(k) != digest)
    if changed:
        steps.append(Step(StepKind.WRITE_ASSETS, None, f"asset files out of date: {', '.join(changed)}"))
        if OVERRIDES_KEY in changed and any(p.reachable for p in observed.pods):
            steps.append(Step(StepKind.RELOAD_CONFIG, None, "pg_config changed: reload running pods"))

    if P >= desired.replicas:
        blocked.append(f"refusing to scale to replicas = {desired.replicas}: it would remove "
                       f"{desired.app_name(P)}, the current primary (promote one of "
                       f"{desired.app_name(0)}..{desired.app_name(desired.replicas - 1)} first)")
        return _finish(desired, observed, steps, waiting, blocked)

    primary = pod_of(desired, observed, P)
    primary_is_ready = roles[P] is PodRole.PRIMARY
    streaming = all(
        streams_from_primary(desired, pod_of(desired, observed, o)) for o in range(desired.replicas) if o != P
    )
    moving = _port_moves(desired, observed)

    decision = failover_decision(desired, observed, roles)

    def view(pod: PodStatus) -> PodView:
        return PodView(pod=pod, target_primary=P, primary_ready=primary_is_ready,
                       writable_count=len(writable), standbys_streaming=streaming,
                       switchover=desired.switchover, rejoin=desired.rejoin,
                       streams=streams_from_primary(desired, pod),
                       lowers_minimum=pod.ordinal == P and lowers_standby_minimum(pod),
                       port_moves=bool(moving), primary_stopped=not primary.exists or primary.stopped,
                       failover_due=decision is not None and decision.target is not None)

    def allowed(pod: PodStatus, trigger: str) -> bool:
        return PodMachine(roles[pod.ordinal]).may(trigger, view(pod))

    # an interrupted promote: finish it (or give it up) before anything else moves
    if desired.switchover is not None:
        _finish_switchover(desired, observed, roles, allowed, steps, waiting, blocked)
        return _finish(desired, observed, steps, waiting, blocked)

    # former primaries recorded for a rejoin: fence, rewind, then forget the intent
    for ordinal in sorted(desired.rejoin):
        if ordinal >= desired.replicas:
            continue
        pod = pod_of(desired, observed, ordinal)
        name = desired.app_name(ordinal)
        if allowed(pod, "fence"):
            steps.append(Step(StepKind.FENCE, ordinal, f"{name} was the primary and still accepts writes"))
        elif roles[ordinal] is PodRole.FENCED and allowed(pod, "rejoin"):
            steps.append(Step(StepKind.REJOIN, ordinal, f"{name} was the primary: rewind it onto "
                                                        f"{desired.app_name(P)} (re-clone if that fails)"))
        elif allowed(pod, "reattach"):
            steps.append(Step(StepKind.RECREATE_POD, ordinal, f"{name} is detached from the cluster network "
                                                              f"{desired.network}: recreate it on it (volume kept)"))
        elif not pod.exists and allowed(pod, "start"):
            # its container is gone (removed by hand, or a re-clone failed half way): create it; the
            # entrypoint refuses data that was last a primary's, and the rewind above follows
            steps.append(Step(StepKind.CREATE_POD, ordinal, f"{name} (a former primary to rejoin) has no container"))
        elif allowed(pod, "rejoined"):
            steps.append(Step(StepKind.CLEAR_REJOIN, ordinal, f"{name} streams from {desired.app_name(P)} again"))
        elif roles[ordinal] in (PodRole.FENCED, PodRole.REJOINING):
            waiting.append(Wait(ordinal, f"{name} to rejoin {desired.app_name(P)}"))

    if len(writable) > 1:
        unexpected = [p for p in writable if p.ordinal != P and p.ordinal not in desired.rejoin]
        if unexpected:
            names = ", ".join(desired.app_name(p.ordinal) for p in unexpected)
            blocked.append(f"split brain: {names} accept(s) writes next to the primary {desired.app_name(P)} and "
                           "no promote or rejoin recorded why; keep the primary with `voodu-postgres rejoin "
                           f"{ref} --replica {unexpected[0].ordinal}` (that pod's own writes are discarded)")

    # auto_failover: a primary failing for failover_timeout is fenced and the best standby
    # promoted (the rest follows the switchover path above on the next passes)
    hold_primary = False
    if decision is not None:
        T = decision.target
        if T is not None and allowed(primary, "fail_over") and allowed(pod_of(desired, observed, T), "promote"):
            steps.append(Step(StepKind.FAILOVER, T, decision.text, data=decision.record))
            return _finish(desired, observed, steps, waiting, blocked)
        if decision.refusal is not None:
            # reported on every pass; the failing primary is handled as usual meanwhile
            blocked.append(decision.refusal)
        else:
            # not started again while its time runs: a restarted primary racing the failover
            # would be a second writer
            waiting.append(Wait(P, decision.text))
            hold_primary = True

    # 2. the primary
    if hold_primary:
        pass
    elif roles[P] is PodRole.DOWN and primary.state == "paused":
        waiting.append(Wait(P, f"{desired.app_name(P)} is paused (`docker unpause {primary.container}`)"))
    elif roles[P] is PodRole.DOWN and primary.state == "restarting":
        waiting.append(Wait(P, f"{desired.app_name(P)} is restarting (Docker restarts it; see its log)"))
    elif roles[P] is PodRole.DOWN and not primary.exists and not primary.volume_exists and (
            holders := [p for p in observed.pods if p.ordinal != P and p.volume_exists]):
        # creating the primary now would initdb an EMPTY database next to standbys that hold the
        # real data (and can never follow it): the data must win
        names = ", ".join(desired.app_name(p.ordinal) for p in holders)
        blocked.append(f"{desired.app_name(P)} has no data volume but {names} hold data: refusing to "
                       f"initialise an empty primary; promote the most advanced standby instead "
                       f"(voodu-postgres promote {ref} --replica N --force)")
    elif roles[P] is PodRole.DOWN:
        if allowed(primary, "start"):
            kind = StepKind.START_POD if primary.exists else StepKind.CREATE_POD
            steps.append(Step(kind, P, f"primary {desired.app_name(P)} is {'stopped' if primary.exists else 'missing'}"))
        else:
            blocked.append(f"not starting primary {desired.app_name(P)}: another pod already accepts writes")
    elif roles[P] is PodRole.PENDING:
        waiting.append(Wait(P, f"{desired.app_name(P)} to accept connections"))
    elif roles[P] is PodRole.STANDBY:
        waiting.append(Wait(P, f"{desired.app_name(P)} is the designated primary but still in recovery "
                                  "(switchover in progress?)"))

    # 3. standbys
    for ordinal in range(desired.replicas):
        if ordinal == P or ordinal in desired.rejoin:
            continue
        pod = pod_of(desired, observed, ordinal)
        role = roles[ordinal]
        name = desired.app_name(ordinal)
        if role is PodRole.DOWN and pod.state == "restarting":
            waiting.append(Wait(ordinal, f"{name} is restarting (Docker restarts it; see its log)"))
        elif role is PodRole.DOWN and pod.state == "paused":
            waiting.append(Wait(ordinal, f"{name} is paused (`docker unpause {pod.container}`)"))
        elif role is PodRole.DOWN:
            if allowed(pod, "start"):
                kind = StepKind.START_POD if pod.exists else StepKind.CREATE_POD
                what = "stopped" if pod.exists else ("missing (data volume kept)" if pod.volume_exists else "missing")
                steps.append(Step(kind, ordinal, f"standby {name} is {what}"))
            else:
                waiting.append(Wait(P, f"{desired.app_name(P)} to serve before {name} can clone"))
        elif allowed(pod, "reattach"):
            steps.append(Step(StepKind.RECREATE_POD, ordinal, f"{name} is detached from the cluster network "
                                                              f"{desired.network}: recreate it on it (volume kept)"))
        elif role is PodRole.BOOTSTRAPPING:
            waiting.append(Wait(ordinal, f"{name} to finish cloning and start streaming"))
        elif role is PodRole.STANDBY and pod.pg is not None and pod.pg.conninfo_host not in (
                None, desired.host(P)):
            # it follows a pod that is no longer the primary (an interrupted promote re-pointed
            # nobody): rewrite primary_conninfo and reload — no restart
            steps.append(Step(StepKind.REPOINT, ordinal, f"{name} follows {pod.pg.conninfo_host}, not "
                                                         f"{desired.app_name(P)}"))
        elif role is PodRole.STANDBY and not streams_from_primary(desired, pod):
            waiting.append(Wait(ordinal, f"{name} to stream from {desired.app_name(P)}"))
        elif role is PodRole.SPLIT_BRAIN and not pod.writable and allowed(pod, "rejoin"):
            # the entrypoint guard refused it: its data was last a primary's. The recorded primary
            # wins; pg_rewind discards what it wrote after the fork
            steps.append(Step(StepKind.REJOIN, ordinal, f"{name}'s data was last a primary's (the entrypoint "
                                                        f"refused it): rewind it onto {desired.app_name(P)}"))
        elif role is PodRole.SPLIT_BRAIN and not pod.writable:
            waiting.append(Wait(P, f"{desired.app_name(P)} to serve before {name} can rejoin"))

    # synchronous commit: only once a standby streams, or every write would hang until one does
    any_streaming = any(streams_from_primary(desired, pod_of(desired, observed, o))
                        for o in range(desired.replicas) if o != P)
    if primary.pg is not None and primary.pg.sync_auto != desired.sync_names and allowed(primary, "configure") \
            and (desired.sync_names is None or any_streaming):
        want = desired.sync_names or "(unset)"
        steps.append(Step(StepKind.SET_SYNC, P, f"synchronous_standby_names should be {want}"))

    # 4. scale down, top-down
    extra = sorted((p for p in observed.pods if p.ordinal >= desired.replicas and p.exists),
                   key=lambda p: -p.ordinal)
    for pod in extra:
        if allowed(pod, "remove"):
            steps.append(Step(StepKind.REMOVE_POD, pod.ordinal,
                              f"replicas = {desired.replicas}: {desired.app_name(pod.ordinal)} is surplus "
                              "(its data volume is kept)"))
        elif pod.writable:
            blocked.append(f"refusing to remove {desired.app_name(pod.ordinal)}: it is surplus but accepts writes "
                           f"(split brain next to {desired.app_name(P)}); end it with `voodu-postgres rejoin "
                           f"{ref} --replica {pod.ordinal}` or raise replicas")
        elif roles[pod.ordinal] is PodRole.SPLIT_BRAIN:
            blocked.append(f"not removing {desired.app_name(pod.ordinal)} yet: its data was last a primary's")

    # 5. rolling changes: only when the cluster is otherwise settled — except that a pending
    # *decrease* of a standby-minimum setting restarts the primary first and at once: standbys
    # cannot run with a lower value than the primary, so waiting for them would deadlock.
    if not steps and not blocked and lowers_standby_minimum(primary) and allowed(primary, "roll"):
        steps.append(Step(StepKind.RESTART_POD, P,
                          f"{desired.app_name(P)} lowers a setting standbys must match "
                          "(restarting the primary first)"))
    elif not steps and not waiting and not blocked and moving:
        # a new port: a standby on the new port cannot reach a primary on the old one and vice
        # versa, so a one-at-a-time roll would deadlock. Recreate every pod now, primary first.
        for ordinal in _roll_order(desired, primary_first=True):
            pod = pod_of(desired, observed, ordinal)
            if ordinal in moving and allowed(pod, "move"):
                steps.append(Step(StepKind.RECREATE_POD, ordinal,
                                  f"port changes to {desired.port}: all pods move together (brief outage)"))
    elif not steps and not waiting and not blocked:
        roll = _next_roll(desired, observed, roles, allowed)
        if roll is not None:
            steps.append(roll)
    return _finish(desired, observed, steps, waiting, blocked)


def _finish_switchover(desired: Desired, observed: Observed, roles: dict[int, PodRole],
                       allowed: Callable[[PodStatus, str], bool], steps: list[Step], waiting: list[Wait],
                       blocked: list[str]) -> None:
    """A promote recorded its target (``PG_SWITCHOVER_TO``) and did not finish.

    Whoever plans this holds the cluster's lease, so the promote that wrote the marker is gone.
    Roll forward when the target is promoted (or the old primary is already fenced, so only the
    target can take over); roll back only while the old primary still serves — then nothing was
    promoted, since promote fences before it promotes.
    """
    P, T = desired.target_primary, desired.switchover
    assert T is not None
    target = pod_of(desired, observed, T)
    old, new = desired.app_name(P), desired.app_name(T)
    if T == P or T >= desired.replicas:
        steps.append(Step(StepKind.CLEAR_SWITCHOVER, T, f"a switchover to {new} is recorded but {new} "
                                                       f"{'is already the primary' if T == P else 'no longer exists'}"))
    elif allowed(target, "promoted"):
        if pod_of(desired, observed, P).writable:
            blocked.append(f"split brain: {old} and {new} both accept writes after an interrupted switchover; "
                           f"stop the one whose writes you keep last — `voodu-postgres rejoin "
                           f"{desired.ref} --replica {P}` keeps {new}")
        else:
            steps.append(Step(StepKind.RECORD_PRIMARY, T, f"{new} was promoted by an interrupted switchover: "
                                                         f"record it as the primary ({old} rejoins it)"))
    elif allowed(target, "abandon") or (roles[P] is PodRole.PRIMARY and roles[T] is not PodRole.PROMOTING):
        steps.append(Step(StepKind.CLEAR_SWITCHOVER, T, f"the switchover to {new} stopped before {old} was "
                                                       f"fenced: {old} stays the primary"))
    elif allowed(pod_of(desired, observed, P), "fence"):
        # an automatic failover's old primary is failing: a short stop; an interrupted planned
        # promote's still gets the clean shutdown that sends every committed write to the standbys
        steps.append(Step(StepKind.FENCE, P, f"{old} is not stopped ({pod_of(desired, observed, P).state}): "
                                             f"stop it before {new} is promoted",
                          data={"failing": desired.failover_fencing}))
    elif allowed(target, "repromote"):
        steps.append(Step(StepKind.PROMOTE, T, f"{old} is fenced (a switchover or failover was interrupted): "
                                              f"promote {new}"))
    elif roles[T] is PodRole.DOWN and target.state == "restarting":
        waiting.append(Wait(T, f"{new} (target of an interrupted switchover) is restarting"))
    else:
        blocked.append(f"an interrupted switchover to {new} cannot finish: {new} is {roles[T].value} and {old} "
                       f"is {roles[P].value}; start {desired.ref.container(T)} (docker start) and reconcile")


@dataclass(frozen=True)
class FailoverDecision:
    """What ``auto_failover`` makes of a failing primary this pass: promote ``target`` now, wait
    (``text`` says for what), or refuse (``refusal``: reported, nothing promoted)."""

    text: str
    target: int | None = None
    refusal: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


def failover_decision(desired: Desired, observed: Observed, roles: dict[int, PodRole]) -> FailoverDecision | None:
    """None when there is nothing to decide: failover off, the primary healthy, or a switchover
    already in flight (it is finished by ``_finish_switchover``)."""
    policy, health = desired.auto_failover, observed.health
    P = desired.target_primary
    if health.problem is None or desired.switchover is not None:
        return None
    old = desired.app_name(P)
    if policy is None:
        return FailoverDecision(text="", refusal=f"primary {old} is failing for {health.failing_for:.0f}s: "
                                                 f"{health.problem}; auto_failover is off — promote by hand: "
                                                 f"voodu-postgres promote {desired.ref} --replica N --force")
    if health.failing_for < policy.timeout or health.failed_probes < MIN_FAILED_PROBES:
        return FailoverDecision(text=f"{old} to recover: {health.problem} for {health.failing_for:.1f}s "
                                     f"(failover after {policy.timeout:g}s)")
    if health.cooldown_left > 0:
        return FailoverDecision(text="", refusal=f"primary {old} is failing ({health.problem}) but the last automatic "
                                                 f"failover was less than {FAILOVER_COOLDOWN_TEXT} ago "
                                                 f"({health.cooldown_left:.0f}s of cooldown left); promote by hand: "
                                                 f"voodu-postgres promote {desired.ref} --replica N --force")
    received: dict[int, int] = {}
    for ordinal in range(desired.replicas):
        pod = pod_of(desired, observed, ordinal)
        value = lsn_value(pod.pg.received_lsn) if pod.pg is not None else None
        if ordinal != P and ordinal not in desired.rejoin and roles.get(ordinal) is PodRole.STANDBY \
                and value is not None:
            received[ordinal] = value
    why = f"primary {old} failed ({health.problem}) {health.failing_for:.0f}s ago"
    if not received:
        return FailoverDecision(text="", refusal=f"{why}; no standby answers in recovery, so none can be "
                                                 "promoted (nothing is done)")
    best = max(received, key=lambda o: (received[o], -o))
    reference = max(health.last_lsn or 0, max(received.values()))
    behind = reference - received[best]
    # what the primary really ran with: right after `synchronous` is turned on, or after a restore,
    # synchronous_standby_names is not in force yet, and commits were acknowledged without a standby
    synchronous = desired.sync_names is not None and health.sync_in_force is not False
    # the candidate is chosen again once the old primary is stopped (the executor of PROMOTE): a
    # primary that still ran until the fence may have sent more WAL to another standby
    record: dict[str, Any] = {"from": P, "to": best, "problem": health.problem, "synchronous": synchronous,
                              "last_lsn": health.last_lsn, "state": "fencing"}
    if synchronous:
        # ANY 1 (every standby): each acknowledged commit is on at least one of them, so the one
        # with the most WAL has them all — provided every one of them answered (surplus pods a
        # scale-down has not removed yet are still named by the primary: they count too)
        named = set(range(desired.replicas)) | {p.ordinal for p in observed.pods if p.exists}
        silent = sorted(o for o in named if o != P and o not in received and o not in desired.rejoin)
        if silent:
            names = ", ".join(desired.app_name(o) for o in silent)
            return FailoverDecision(text="", refusal=f"{why}; synchronous: {names} did not answer and may hold "
                                                     "acknowledged writes the others lack, so nothing is promoted "
                                                     "(start it, or promote by hand with --force)")
        return FailoverDecision(
            target=best, record=record,
            text=f"{why}: fence it, promote {desired.app_name(best)} (most WAL: {lsn_text(received[best])}; "
                 "synchronous, so no acknowledged write is lost)")
    if behind > policy.max_lag:
        return FailoverDecision(text="", refusal=f"{why}; the most advanced standby {desired.app_name(best)} is "
                                                 f"{behind} bytes behind its last known position, more than "
                                                 f"max_lag_on_failover = {policy.max_lag}: not promoting "
                                                 "automatically (promote by hand with --force)")
    known = "" if health.last_lsn is not None else " (the watcher never saw it healthy: a lower bound)"
    if desired.sync_names is not None:
        known += "; synchronous_standby_names was not in force on it"
    return FailoverDecision(
        target=best, record=record,
        text=f"{why}: fence it, promote {desired.app_name(best)} (received up to {lsn_text(received[best])}; "
             f"asynchronous: writes after that point are lost — {behind} bytes behind {old}'s last known "
             f"position{known})")


#: Hot standby refuses to replay WAL from a primary whose value of these is higher than its own
#: ("recovery aborted because of insufficient parameter settings"). So a decrease must restart
#: the primary first; an increase, the standbys first.
STANDBY_MINIMUMS = frozenset({"max_connections", "max_prepared_transactions", "max_locks_per_transaction",
                              "max_wal_senders", "max_worker_processes"})


def _port_moves(desired: Desired, observed: Observed) -> set[int]:
    return {p.ordinal for p in observed.pods
            if p.exists and p.ordinal < desired.replicas and p.port is not None and p.port != desired.port}


def _roll_order(desired: Desired, *, primary_first: bool = False) -> Iterable[int]:
    standbys = sorted((o for o in range(desired.replicas) if o != desired.target_primary), reverse=True)
    P = desired.target_primary
    return [P, *standbys] if primary_first else [*standbys, P]


def lowers_standby_minimum(pod: PodStatus) -> bool:
    """Does this pod have a pending *decrease* of a setting standbys must match or exceed?"""
    if pod.pg is None:
        return False
    for setting in pod.pg.pending:
        if setting.name in STANDBY_MINIMUMS and setting.next is not None:
            try:
                if int(setting.next) < int(setting.current):
                    return True
            except ValueError:
                continue
    return False


def _next_roll(desired: Desired, observed: Observed, roles: dict[int, PodRole],
               allowed: Callable[[PodStatus, str], bool]) -> Step | None:
    for ordinal in _roll_order(desired):
        pod = pod_of(desired, observed, ordinal)
        if pod.spec_hash != desired.pod(ordinal).spec_hash and allowed(pod, "roll"):
            return Step(StepKind.RECREATE_POD, ordinal,
                        f"{desired.app_name(ordinal)} runs an outdated spec (image, env, resources or scripts changed)")
    primary_first = lowers_standby_minimum(pod_of(desired, observed, desired.target_primary))
    for ordinal in _roll_order(desired, primary_first=primary_first):
        pod = pod_of(desired, observed, ordinal)
        if pod.pg is not None and pod.pg.pending_restart and allowed(pod, "roll"):
            return Step(StepKind.RESTART_POD, ordinal,
                        f"{desired.app_name(ordinal)} has {pod.pg.pending_restart} setting(s) pending a restart")
        if pod.pg is not None and pod.pg.boot_overrides and allowed(pod, "roll"):
            return Step(StepKind.RESTART_POD, ordinal,
                        f"{desired.app_name(ordinal)} booted with {', '.join(pod.pg.boot_overrides)} raised to "
                        "the primary's old value; now caught up, restart it on the configured value")
    return None


def _finish(desired: Desired, observed: Observed, steps: list[Step], waiting: list[Wait],
            blocked: list[str]) -> Plan:
    state = describe(desired, observed) or "no pods yet"
    if steps:
        message = f"{desired.ref}: {'; '.join(str(s) for s in steps)}"
    elif blocked:
        message = f"{desired.ref}: blocked: {blocked[0]}"
    elif waiting:
        message = f"{desired.ref}: waiting for {waiting[0]} ({state})"
    else:
        message = f"{desired.ref}: no action: {state}"
    return Plan(ref=desired.ref, steps=tuple(steps), waiting=tuple(waiting), blocked=tuple(blocked),
                message=message)
