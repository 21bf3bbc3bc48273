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

An interrupted promote is finished (or given up) before anything else moves, and an automatic
failover, once due, is the only step of its pass.

This module owns that order and nothing else; each concern lives in its own module (topology,
switchover, failover, rolling). Every move is checked against the pod state machine
(``states.pod``): the planner asks the machine whether the trigger is allowed, so the guards in
the table are the single source of policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from voodu_postgres.domain.model import Desired, Observed, Plan, PodStatus
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.reconciler.plan import failover, rolling, switchover, topology
from voodu_postgres.reconciler.plan.draft import Draft, Pass, finish
from voodu_postgres.reconciler.plan.pods import pod_of, roles_of, streams_from_primary
from voodu_postgres.states.pod import PodMove, PodView


def plan(desired: Desired, observed: Observed) -> Plan:
    """The next steps for one resource. It has no side effects."""
    out = Draft()
    roles = roles_of(desired, observed)

    # 1. infrastructure
    topology.infrastructure(desired, observed, out)
    refusal = topology.removes_primary(desired)
    if refusal is not None:
        out.blocked.append(refusal)
        return finish(desired, observed, out)

    moving = rolling.port_moves(desired, observed)
    decision = failover.failover_decision(desired, observed, roles)
    ctx = Pass(desired, observed, roles, _Guard.of(desired, observed, roles, moving, decision),
               frozenset(moving))

    # an interrupted promote: finish it (or give it up) before anything else moves
    if desired.switchover is not None:
        switchover.finish_switchover(ctx, out)
        return finish(desired, observed, out)

    switchover.rejoin_former_primaries(ctx, out)
    switchover.unexpected_writers(ctx, out)

    # auto_failover: a primary failing for failover_timeout is fenced and the best standby
    # promoted (the rest follows the switchover path above on the next passes)
    step = failover.failover_step(ctx, decision)
    if step is not None:
        out.steps.append(step)
        return finish(desired, observed, out)
    hold_primary = failover.report_failover(ctx, decision, out)

    # 2. the primary (not while a due failover is waited for: a restarted primary racing it would
    # be a second writer)
    if not hold_primary:
        topology.primary(ctx, out)
    # 3. standbys
    topology.standbys(ctx, out)
    # synchronous commit: only once a standby streams
    rolling.synchronous_names(ctx, out)
    # 4. scale down, top-down
    topology.scale_down(ctx, out)
    # 5. rolling changes
    rolling.rolling_changes(ctx, out)
    return finish(desired, observed, out)


def pod_move(desired: Desired, observed: Observed, ordinal: int, trigger: str) -> PodMove:
    """Pod ``ordinal``'s machine transition ``trigger`` exactly as a planning pass over this
    observation would hand it to a step (for callers that build one step by hand)."""
    roles = roles_of(desired, observed)
    moving = rolling.port_moves(desired, observed)
    guard = _Guard.of(desired, observed, roles, moving, failover.failover_decision(desired, observed, roles))
    return guard(pod_of(desired, observed, ordinal), trigger)


@dataclass(frozen=True)
class _Guard:
    """``move(pod, trigger)`` for one pass: the cluster facts every guard reads, gathered once,
    and the pod's machine transition built with them."""

    desired: Desired
    roles: dict[int, PodRole]
    primary_ready: bool
    writable_count: int
    standbys_streaming: bool
    port_moves: bool
    primary_stopped: bool
    failover_due: bool

    @classmethod
    def of(cls, desired: Desired, observed: Observed, roles: dict[int, PodRole], moving: set[int],
           decision: failover.FailoverDecision | None) -> _Guard:
        P = desired.target_primary
        primary = pod_of(desired, observed, P)
        return cls(
            desired=desired, roles=roles,
            primary_ready=roles[P] is PodRole.PRIMARY,
            writable_count=len(observed.writable),
            standbys_streaming=all(streams_from_primary(desired, pod_of(desired, observed, o))
                                   for o in range(desired.replicas) if o != P),
            port_moves=bool(moving),
            primary_stopped=not primary.exists or primary.stopped,
            failover_due=decision is not None and decision.target is not None,
        )

    def view(self, pod: PodStatus) -> PodView:
        desired, P = self.desired, self.desired.target_primary
        return PodView(pod=pod, target_primary=P, primary_ready=self.primary_ready,
                       writable_count=self.writable_count, standbys_streaming=self.standbys_streaming,
                       switchover=desired.switchover, rejoin=desired.rejoin,
                       streams=streams_from_primary(desired, pod),
                       lowers_minimum=pod.ordinal == P and rolling.lowers_standby_minimum(pod),
                       port_moves=self.port_moves, primary_stopped=self.primary_stopped,
                       failover_due=self.failover_due, replicas=desired.replicas)

    def __call__(self, pod: PodStatus, trigger: str) -> PodMove:
        role = self.roles.get(pod.ordinal, PodRole.DOWN)  # an ordinal nothing exists for (a stale switchover target)
        return PodMove(self.desired.app_name(pod.ordinal), role, trigger, self.view(pod))
