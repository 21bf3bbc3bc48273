"""Topology: which pods exist and run. Infrastructure first (the network, asset files on disk,
a reload when only ``pg_config`` changed), then the primary, then every standby, then the
scale-down of surplus pods — create, start, reattach, repoint, or wait for them, and refuse what
would lose data (an empty primary next to standbys that hold the real data, a surplus writer)."""

from __future__ import annotations

from voodu_postgres.domain.model import Desired, Observed, PodStatus, Step, StepKind, Wait
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.reconciler.desired import OVERRIDES_KEY
from voodu_postgres.reconciler.plan.draft import Draft, Pass
from voodu_postgres.reconciler.plan.pods import streams_from_primary


def infrastructure(desired: Desired, observed: Observed, out: Draft) -> None:
    """The network, then asset files on disk (a changed ``pg_config`` alone is a reload, not a restart)."""
    if not observed.network_exists:
        out.steps.append(Step(StepKind.ENSURE_NETWORK, None, f"network {desired.network} is missing"))
    wanted = {f.name: f.sha256 for f in desired.files}
    changed = sorted(k for k, digest in wanted.items() if observed.asset_digests.get(k) != digest)
    if changed:
        out.steps.append(Step(StepKind.WRITE_ASSETS, None, f"asset files out of date: {', '.join(changed)}"))
        if OVERRIDES_KEY in changed and any(p.reachable for p in observed.pods):
            out.steps.append(Step(StepKind.RELOAD_CONFIG, None, "pg_config changed: reload running pods"))


def removes_primary(desired: Desired) -> str | None:
    """Why the spec cannot be applied as is: a scale-down that would remove the primary."""
    P = desired.target_primary
    if P < desired.replicas:
        return None
    return (f"refusing to scale to replicas = {desired.replicas}: it would remove "
            f"{desired.app_name(P)}, the current primary (promote one of "
            f"{desired.app_name(0)}..{desired.app_name(desired.replicas - 1)} first)")


def primary(ctx: Pass, out: Draft) -> None:
    """The primary: created or started first; otherwise say what it is waiting for."""
    P, role = ctx.P, ctx.roles[ctx.P]
    if role is PodRole.DOWN:
        _primary_down(ctx, out)
    elif role is PodRole.PENDING:
        out.waiting.append(Wait(P, f"{ctx.name(P)} to accept connections"))
    elif role is PodRole.STANDBY:
        out.waiting.append(Wait(P, f"{ctx.name(P)} is the designated primary but still in recovery "
                                   "(switchover in progress?)"))


def _primary_down(ctx: Pass, out: Draft) -> None:
    P, pod, name = ctx.P, ctx.primary, ctx.name(ctx.P)
    if pod.state == "paused":
        out.waiting.append(Wait(P, f"{name} is paused (`docker unpause {pod.container}`)"))
    elif pod.state == "restarting":
        out.waiting.append(Wait(P, f"{name} is restarting (Docker restarts it; see its log)"))
    elif not pod.exists and not pod.volume_exists and (
            holders := [p for p in ctx.observed.pods if p.ordinal != P and p.volume_exists]):
        # creating the primary now would initdb an EMPTY database next to standbys that hold the
        # real data (and can never follow it): the data must win
        names = ", ".join(ctx.name(p.ordinal) for p in holders)
        out.blocked.append(f"{name} has no data volume but {names} hold data: refusing to "
                           f"initialise an empty primary; promote the most advanced standby instead "
                           f"(voodu-postgres promote {ctx.desired.ref} --replica N --force)")
    elif ctx.allowed(pod, "start"):
        kind = StepKind.START_POD if pod.exists else StepKind.CREATE_POD
        out.steps.append(ctx.step(kind, pod, f"primary {name} is {'stopped' if pod.exists else 'missing'}", "start"))
    else:
        out.blocked.append(f"not starting primary {name}: another pod already accepts writes")


def standbys(ctx: Pass, out: Draft) -> None:
    """Standbys: created all at once — cloned in parallel by their own entrypoints — as soon as the
    primary serves (no fixed sleeps: the trigger is the observed primary). Recorded rejoins are
    left to ``switchover.rejoin_former_primaries``."""
    for ordinal in range(ctx.desired.replicas):
        if ordinal == ctx.P or ordinal in ctx.desired.rejoin:
            continue
        if ctx.roles[ordinal] is PodRole.DOWN:
            _standby_down(ctx, out, ctx.pod(ordinal))
        else:
            _standby_up(ctx, out, ctx.pod(ordinal))


def _standby_down(ctx: Pass, out: Draft, pod: PodStatus) -> None:
    ordinal, name = pod.ordinal, ctx.name(pod.ordinal)
    if pod.state == "restarting":
        out.waiting.append(Wait(ordinal, f"{name} is restarting (Docker restarts it; see its log)"))
    elif pod.state == "paused":
        out.waiting.append(Wait(ordinal, f"{name} is paused (`docker unpause {pod.container}`)"))
    elif ctx.allowed(pod, "start"):
        kind = StepKind.START_POD if pod.exists else StepKind.CREATE_POD
        what = "stopped" if pod.exists else ("missing (data volume kept)" if pod.volume_exists else "missing")
        out.steps.append(ctx.step(kind, pod, f"standby {name} is {what}", "start"))
    else:
        out.waiting.append(Wait(ctx.P, f"{ctx.name(ctx.P)} to serve before {name} can clone"))


def _standby_up(ctx: Pass, out: Draft, pod: PodStatus) -> None:
    """A standby whose container runs (or at least exists and is not DOWN)."""
    desired, P = ctx.desired, ctx.P
    ordinal, role, name = pod.ordinal, ctx.roles[pod.ordinal], ctx.name(pod.ordinal)
    if ctx.allowed(pod, "reattach"):
        out.steps.append(ctx.step(StepKind.RECREATE_POD, pod, f"{name} is detached from the cluster network "
                                                             f"{desired.network}: recreate it on it (volume kept)",
                                  "reattach"))
    elif role is PodRole.BOOTSTRAPPING:
        out.waiting.append(Wait(ordinal, f"{name} to finish cloning and start streaming"))
    elif role is PodRole.STANDBY and pod.pg is not None and pod.pg.conninfo_host not in (
            None, desired.host(P)) and ctx.allowed(pod, "repoint"):
        # it follows a pod that is no longer the primary (an interrupted promote re-pointed
        # nobody): rewrite primary_conninfo and reload — no restart
        out.steps.append(ctx.step(StepKind.REPOINT, pod, f"{name} follows {pod.pg.conninfo_host}, not "
                                                        f"{ctx.name(P)}", "repoint"))
    elif role is PodRole.STANDBY and not streams_from_primary(desired, pod):
        out.waiting.append(Wait(ordinal, f"{name} to stream from {ctx.name(P)}"))
    elif role is PodRole.SPLIT_BRAIN and not pod.writable and ctx.allowed(pod, "rejoin"):
        # the entrypoint guard refused it: its data was last a primary's. The recorded primary
        # wins; pg_rewind discards what it wrote after the fork
        out.steps.append(ctx.step(StepKind.REJOIN, pod, f"{name}'s data was last a primary's (the entrypoint "
                                                       f"refused it): rewind it onto {ctx.name(P)}", "rejoin"))
    elif role is PodRole.SPLIT_BRAIN and not pod.writable:
        out.waiting.append(Wait(P, f"{ctx.name(P)} to serve before {name} can rejoin"))


def scale_down(ctx: Pass, out: Draft) -> None:
    """Surplus pods are removed highest ordinal first, never a writer (their volumes are kept)."""
    desired, observed = ctx.desired, ctx.observed
    extra = sorted((p for p in observed.pods if p.ordinal >= desired.replicas and p.exists),
                   key=lambda p: -p.ordinal)
    for pod in extra:
        name = ctx.name(pod.ordinal)
        if ctx.allowed(pod, "remove"):
            out.steps.append(ctx.step(StepKind.REMOVE_POD, pod,
                                      f"replicas = {desired.replicas}: {name} is surplus "
                                      "(its data volume is kept)", "remove"))
        elif pod.writable:
            out.blocked.append(f"refusing to remove {name}: it is surplus but accepts writes "
                               f"(split brain next to {ctx.name(ctx.P)}); end it with `voodu-postgres rejoin "
                               f"{desired.ref} --replica {pod.ordinal}` or raise replicas")
        elif ctx.roles[pod.ordinal] is PodRole.SPLIT_BRAIN:
            out.blocked.append(f"not removing {name} yet: its data was last a primary's")
