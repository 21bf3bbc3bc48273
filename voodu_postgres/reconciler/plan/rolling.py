"""Changes applied to running pods: ``synchronous_standby_names`` on the primary, and the rolling
changes — recreations for a changed pod spec, restarts for settings Postgres reports as
``pending_restart`` (or a boot override now caught up), and a port change, which moves every pod
at once. Rolls go one pod per pass, only when nothing else is in flight, standbys first (highest
ordinal first) and the primary last — except that a *decrease* of a setting standbys must match
restarts the primary first."""

from __future__ import annotations

from collections.abc import Iterable

from voodu_postgres.domain.model import Desired, Observed, PodStatus, Step, StepKind
from voodu_postgres.reconciler.plan.draft import Draft, Pass
from voodu_postgres.reconciler.plan.pods import streams_from_primary

#: Hot standby refuses to replay WAL from a primary whose value of these is higher than its own
#: ("recovery aborted because of insufficient parameter settings"). So a decrease must restart
#: the primary first; an increase, the standbys first.
STANDBY_MINIMUMS = frozenset({"max_connections", "max_prepared_transactions", "max_locks_per_transaction",
                              "max_wal_senders", "max_worker_processes"})


def port_moves(desired: Desired, observed: Observed) -> set[int]:
    """Desired pods whose container still listens on another port than the spec's."""
    return {p.ordinal for p in observed.pods
            if p.exists and p.ordinal < desired.replicas and p.port is not None and p.port != desired.port}


def roll_order(desired: Desired, *, primary_first: bool = False) -> Iterable[int]:
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


def synchronous_names(ctx: Pass, out: Draft) -> None:
    """Synchronous commit: set only once a standby streams, or every write would hang until one does."""
    desired, primary = ctx.desired, ctx.primary
    any_streaming = any(streams_from_primary(desired, ctx.pod(o))
                        for o in range(desired.replicas) if o != ctx.P)
    if primary.pg is not None and primary.pg.sync_auto != desired.sync_names and ctx.allowed(primary, "configure") \
            and (desired.sync_names is None or any_streaming):
        want = desired.sync_names or "(unset)"
        out.steps.append(ctx.step(StepKind.SET_SYNC, primary, f"synchronous_standby_names should be {want}",
                                  "configure"))


def rolling_changes(ctx: Pass, out: Draft) -> None:
    """Only when the cluster is otherwise settled — except that a pending *decrease* of a
    standby-minimum setting restarts the primary first and at once: standbys cannot run with a
    lower value than the primary, so waiting for them would deadlock."""
    primary = ctx.primary
    if not out.steps and not out.blocked and lowers_standby_minimum(primary) and ctx.allowed(primary, "roll"):
        out.steps.append(ctx.step(StepKind.RESTART_POD, primary,
                                  f"{ctx.name(ctx.P)} lowers a setting standbys must match "
                                  "(restarting the primary first)", "roll"))
    elif not out.steps and not out.waiting and not out.blocked and ctx.moving:
        out.steps.extend(_move_port(ctx))
    elif not out.steps and not out.waiting and not out.blocked:
        roll = next_roll(ctx)
        if roll is not None:
            out.steps.append(roll)


def _move_port(ctx: Pass) -> list[Step]:
    """A new port: a standby on the new port cannot reach a primary on the old one and vice
    versa, so a one-at-a-time roll would deadlock. Recreate every pod now, primary first."""
    return [ctx.step(StepKind.RECREATE_POD, ctx.pod(ordinal),
                     f"port changes to {ctx.desired.port}: all pods move together (brief outage)", "move")
            for ordinal in roll_order(ctx.desired, primary_first=True)
            if ordinal in ctx.moving and ctx.allowed(ctx.pod(ordinal), "move")]


def next_roll(ctx: Pass) -> Step | None:
    """The one pod to recreate (outdated spec) or restart (pending settings) this pass, if any."""
    desired = ctx.desired
    for ordinal in roll_order(desired):
        pod = ctx.pod(ordinal)
        if pod.spec_hash != desired.pod(ordinal).spec_hash and ctx.allowed(pod, "roll"):
            return ctx.step(StepKind.RECREATE_POD, pod,
                            f"{ctx.name(ordinal)} runs an outdated spec (image, env, resources or scripts changed)",
                            "roll")
    primary_first = lowers_standby_minimum(ctx.primary)
    for ordinal in roll_order(desired, primary_first=primary_first):
        pod = ctx.pod(ordinal)
        if pod.pg is not None and pod.pg.pending_restart and ctx.allowed(pod, "roll"):
            return ctx.step(StepKind.RESTART_POD, pod,
                            f"{ctx.name(ordinal)} has {pod.pg.pending_restart} setting(s) pending a restart", "roll")
        if pod.pg is not None and pod.pg.boot_overrides and ctx.allowed(pod, "roll"):
            return ctx.step(StepKind.RESTART_POD, pod,
                            f"{ctx.name(ordinal)} booted with {', '.join(pod.pg.boot_overrides)} raised to "
                            "the primary's old value; now caught up, restart it on the configured value", "roll")
    return None
