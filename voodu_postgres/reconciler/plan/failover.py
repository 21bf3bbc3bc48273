"""Automatic failover: what ``auto_failover`` makes of a failing primary this pass — nothing yet
(still within ``failover_timeout``), a refusal (off, cooling down, no qualifying standby, too much
lag, a silent synchronous standby), or fence it and promote the best standby. Once the FAILOVER
step has recorded its target, the switchover path (``plan.switchover``) finishes the promote.

``best_standby`` is the one answer to "which standby has the most WAL" in the planner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voodu_postgres.domain.health import FAILOVER_COOLDOWN, MIN_FAILED_PROBES
from voodu_postgres.domain.model import (
    Desired,
    FailoverPolicy,
    Observed,
    PrimaryHealth,
    Step,
    StepKind,
    Wait,
    lsn_text,
    lsn_value,
)
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.reconciler.plan.draft import Draft, Pass
from voodu_postgres.reconciler.plan.pods import pod_of

FAILOVER_COOLDOWN_TEXT = f"{FAILOVER_COOLDOWN / 60:g} minutes"


@dataclass(frozen=True)
class FailoverDecision:
    """What ``auto_failover`` makes of a failing primary this pass: promote ``target`` now, wait
    (``text`` says for what), or refuse (``refusal``: reported, nothing promoted)."""

    text: str
    target: int | None = None
    refusal: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


def standby_positions(desired: Desired, observed: Observed, roles: dict[int, PodRole]) -> dict[int, int]:
    """The WAL position each promotable standby reports having received: desired, not the
    primary, not a former primary waiting to rejoin, classified STANDBY, and answering."""
    received: dict[int, int] = {}
    for ordinal in range(desired.replicas):
        pod = pod_of(desired, observed, ordinal)
        value = lsn_value(pod.pg.received_lsn) if pod.pg is not None else None
        if ordinal != desired.target_primary and ordinal not in desired.rejoin \
                and roles.get(ordinal) is PodRole.STANDBY and value is not None:
            received[ordinal] = value
    return received


def best_standby(received: dict[int, int]) -> int:
    """The standby with the most WAL; on a tie the lowest ordinal, so the choice is stable."""
    return max(received, key=lambda o: (received[o], -o))


def failover_decision(desired: Desired, observed: Observed, roles: dict[int, PodRole]) -> FailoverDecision | None:
    """None when there is nothing to decide: failover off, the primary healthy, or a switchover
    already in flight (it is finished by ``switchover.finish_switchover``)."""
    policy, health = desired.auto_failover, observed.health
    if health.problem is None or desired.switchover is not None:
        return None
    not_yet = _not_due(desired, policy, health)
    if not_yet is not None or policy is None:  # (a None policy is always refused by _not_due)
        return not_yet
    P, old = desired.target_primary, desired.app_name(desired.target_primary)
    received = standby_positions(desired, observed, roles)
    why = f"primary {old} failed ({health.problem}) {health.failing_for:.0f}s ago"
    if not received:
        return FailoverDecision(text="", refusal=f"{why}; no standby answers in recovery, so none can be "
                                                 "promoted (nothing is done)")
    best = best_standby(received)
    # what the primary really ran with: right after `synchronous` is turned on, or after a restore,
    # synchronous_standby_names is not in force yet, and commits were acknowledged without a standby
    synchronous = desired.sync_names is not None and health.sync_in_force is not False
    # the candidate is chosen again once the old primary is stopped (the executor of PROMOTE): a
    # primary that still ran until the fence may have sent more WAL to another standby
    record: dict[str, Any] = {"from": P, "to": best, "problem": health.problem, "synchronous": synchronous,
                              "last_lsn": health.last_lsn, "state": "fencing"}
    if synchronous:
        return _synchronous(desired, observed, received, best, why, record)
    return _asynchronous(desired, policy, health, received, best, why, record)


def _not_due(desired: Desired, policy: FailoverPolicy | None, health: PrimaryHealth) -> FailoverDecision | None:
    """A refusal or a wait before any standby is looked at: failover off, the primary not failing
    long enough yet, or the last automatic failover too recent. None: a standby may be chosen."""
    old = desired.app_name(desired.target_primary)
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
    return None


def _synchronous(desired: Desired, observed: Observed, received: dict[int, int], best: int, why: str,
                 record: dict[str, Any]) -> FailoverDecision:
    # ANY 1 (every standby): each acknowledged commit is on at least one of them, so the one
    # with the most WAL has them all — provided every one of them answered (surplus pods a
    # scale-down has not removed yet are still named by the primary: they count too)
    P = desired.target_primary
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


def _asynchronous(desired: Desired, policy: FailoverPolicy, health: PrimaryHealth, received: dict[int, int],
                  best: int, why: str, record: dict[str, Any]) -> FailoverDecision:
    # asynchronous: what the best standby lacks of the old primary's last known position is lost,
    # so it is promoted only within max_lag_on_failover
    reference = max(health.last_lsn or 0, max(received.values()))
    behind = reference - received[best]
    if behind > policy.max_lag:
        return FailoverDecision(text="", refusal=f"{why}; the most advanced standby {desired.app_name(best)} is "
                                                 f"{behind} bytes behind its last known position, more than "
                                                 f"max_lag_on_failover = {policy.max_lag}: not promoting "
                                                 "automatically (promote by hand with --force)")
    known = "" if health.last_lsn is not None else " (the watcher never saw it healthy: a lower bound)"
    if desired.sync_names is not None:
        known += "; synchronous_standby_names was not in force on it"
    old = desired.app_name(desired.target_primary)
    return FailoverDecision(
        target=best, record=record,
        text=f"{why}: fence it, promote {desired.app_name(best)} (received up to {lsn_text(received[best])}; "
             f"asynchronous: writes after that point are lost — {behind} bytes behind {old}'s last known "
             f"position{known})")


def failover_step(ctx: Pass, decision: FailoverDecision | None) -> Step | None:
    """The FAILOVER step, when a standby qualifies and the guards let the primary go and the
    standby be promoted."""
    if decision is None:
        return None
    T = decision.target
    if T is not None and ctx.allowed(ctx.primary, "fail_over") and ctx.allowed(ctx.pod(T), "promote"):
        # one effect, two machines: the failed primary is fenced and the standby chosen to promote
        return ctx.step(StepKind.FAILOVER, ctx.pod(T), decision.text, "promote", data=decision.record,
                        others=(ctx.move(ctx.primary, "fail_over"),))
    return None


def report_failover(ctx: Pass, decision: FailoverDecision | None, out: Draft) -> bool:
    """A decision that promotes nothing this pass: a refusal is reported on every pass (the failing
    primary is handled as usual meanwhile); a wait holds the primary. Returns whether it is held."""
    if decision is None:
        return False
    if decision.refusal is not None:
        out.blocked.append(decision.refusal)
        return False
    # not started again while its time runs: a restarted primary racing the failover would be a
    # second writer
    out.waiting.append(Wait(ctx.P, decision.text))
    return True
