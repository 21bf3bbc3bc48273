"""Switchover, as the planner sees it: a promote recorded its target (``PG_SWITCHOVER_TO``, written
by ``reconciler.switchover`` or by an automatic failover) and must be finished — fence the old
primary, promote the target, record it — or given up; afterwards the former primaries recorded
for a rejoin are fenced, rewound onto the new primary and forgotten; and a writer that no
promote or rejoin explains is reported as split brain."""

from __future__ import annotations

from voodu_postgres.domain.intents import SwitchoverRequest
from voodu_postgres.domain.model import Desired, PodStatus, StepKind, Wait
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.reconciler.plan.draft import Draft, Pass


def finish_switchover(ctx: Pass, out: Draft) -> None:
    """A promote recorded its target (``PG_SWITCHOVER_TO``) and did not finish.

    Whoever plans this holds the cluster's lease, so the promote that wrote the marker is gone.
    Roll forward when the target is promoted (or the old primary is already fenced, so only the
    target can take over); roll back only while the old primary still serves — then nothing was
    promoted, since promote fences before it promotes.
    """
    desired, roles, allowed = ctx.desired, ctx.roles, ctx.allowed
    P, T = desired.target_primary, desired.switchover
    assert T is not None
    target = ctx.pod(T)
    old, new = ctx.name(P), ctx.name(T)
    if T == P or T >= desired.replicas:
        why = f"a switchover to {new} is recorded but {new} {'is already the primary' if T == P else 'no longer exists'}"
        if allowed(target, "abandon"):
            out.steps.append(ctx.step(StepKind.CLEAR_SWITCHOVER, target, why, "abandon"))
        else:
            out.blocked.append(f"{why}, and the pod machine does not allow dropping it")
        return
    request = desired.switchover_request
    if allowed(target, "promoted"):
        _record_promoted(ctx, out, T)
    elif request is not None and request.planned and roles[P] is PodRole.PRIMARY:
        _planned_fence(ctx, out, request)
    elif allowed(target, "abandon"):
        out.steps.append(ctx.step(StepKind.CLEAR_SWITCHOVER, target, f"the switchover to {new} stopped before "
                                  f"{old} was fenced: {old} stays the primary", "abandon"))
    elif allowed(ctx.pod(P), "fence"):
        # an automatic failover's old primary is failing: a short stop; an interrupted planned
        # promote's still gets the clean shutdown that sends every committed write to the standbys
        out.steps.append(ctx.step(StepKind.FENCE, ctx.pod(P), f"{old} is not stopped ({ctx.pod(P).state}): "
                                  f"stop it before {new} is promoted", "fence",
                                  data={"failing": desired.failover_fencing}))
    elif allowed(target, "repromote"):
        out.steps.append(ctx.step(StepKind.PROMOTE, target, f"{old} is fenced (a switchover or failover was "
                                  f"interrupted): promote {new}", "repromote"))
    elif roles[T] is PodRole.DOWN and target.state == "restarting":
        out.waiting.append(Wait(T, f"{new} (target of an interrupted switchover) is restarting"))
    else:
        out.blocked.append(f"an interrupted switchover to {new} cannot finish: {new} is {roles[T].value} and "
                           f"{old} is {roles[P].value}; start {desired.ref.container(T)} (docker start) "
                           "and reconcile")


def lag_refusal(desired: Desired, primary: PodStatus, request: SwitchoverRequest) -> str | None:
    """Why a planned switchover to ``request.to`` must not fence ``primary`` now (its target is
    not streaming from it, or lags more than ``max_lag``), or None. ``force`` skips the check."""
    if request.force:
        return None
    old, new = desired.app_name(primary.ordinal), desired.app_name(request.to)
    rows = {r.application_name: r for r in (primary.pg.replicas if primary.pg else ())}
    row = rows.get(new)
    if row is None or row.state != "streaming":
        return f"{new} is not streaming from {old}; wait for it to catch up, or pass --force"
    if row.lag_bytes is not None and row.lag_bytes > request.max_lag:
        return (f"{new} is {row.lag_bytes} bytes behind {old} (limit {request.max_lag}); wait for it to "
                "catch up, or pass --force")
    return None


def _planned_fence(ctx: Pass, out: Draft, request: SwitchoverRequest) -> None:
    """A planned switchover while the old primary serves: fence it (clean shutdown) once the
    target is close enough; drop the request — the old primary stays — when it is not."""
    P, T = ctx.P, request.to
    primary, target = ctx.primary, ctx.pod(T)
    refused = lag_refusal(ctx.desired, primary, request)
    if refused is not None:
        if ctx.allowed(target, "abandon"):
            out.steps.append(ctx.step(StepKind.CLEAR_SWITCHOVER, target, f"switchover refused: {refused}",
                                      "abandon", data={"refused": refused}))
        else:
            out.blocked.append(f"switchover refused: {refused}")
    elif ctx.allowed(primary, "fence"):
        out.steps.append(ctx.step(StepKind.FENCE, primary, f"switchover to {ctx.name(T)}: fence {ctx.name(P)} with "
                                  "a clean shutdown (every committed write reaches the standbys)", "fence",
                                  data={"planned": True}))
    else:
        out.blocked.append(f"cannot fence {ctx.name(P)} for the switchover to {ctx.name(T)}: it is "
                           f"{ctx.roles[P].value}")


def _record_promoted(ctx: Pass, out: Draft, T: int) -> None:
    """The target was promoted: record it as the primary — unless the old one still writes too."""
    old, new = ctx.name(ctx.P), ctx.name(T)
    if ctx.pod(ctx.P).writable:
        out.blocked.append(f"split brain: {old} and {new} both accept writes after an interrupted switchover; "
                           f"stop the one whose writes you keep last — `voodu-postgres rejoin "
                           f"{ctx.desired.ref} --replica {ctx.P}` keeps {new}")
    else:
        out.steps.append(ctx.step(StepKind.RECORD_PRIMARY, ctx.pod(T), f"{new} was promoted by an interrupted "
                                  f"switchover: record it as the primary ({old} rejoins it)", "promoted"))


def rejoin_former_primaries(ctx: Pass, out: Draft) -> None:
    """Former primaries recorded for a rejoin: fence, rewind, then forget the intent."""
    for ordinal in sorted(ctx.desired.rejoin):
        if ordinal < ctx.desired.replicas:
            _rejoin(ctx, out, ordinal)


def _rejoin(ctx: Pass, out: Draft, ordinal: int) -> None:
    desired, allowed, role = ctx.desired, ctx.allowed, ctx.roles[ordinal]
    pod, name, primary = ctx.pod(ordinal), ctx.name(ordinal), ctx.name(ctx.P)
    if allowed(pod, "fence"):
        out.steps.append(ctx.step(StepKind.FENCE, pod, f"{name} was the primary and still accepts writes", "fence"))
    elif role is PodRole.FENCED and allowed(pod, "rejoin"):
        out.steps.append(ctx.step(StepKind.REJOIN, pod, f"{name} was the primary: rewind it onto "
                                                       f"{primary} (re-clone if that fails)", "rejoin"))
    elif allowed(pod, "reattach"):
        out.steps.append(ctx.step(StepKind.RECREATE_POD, pod, f"{name} is detached from the cluster network "
                                                             f"{desired.network}: recreate it on it (volume kept)",
                                  "reattach"))
    elif not pod.exists and allowed(pod, "start"):
        # its container is gone (removed by hand, or a re-clone failed half way): create it; the
        # entrypoint refuses data that was last a primary's, and the rewind above follows
        out.steps.append(ctx.step(StepKind.CREATE_POD, pod, f"{name} (a former primary to rejoin) has no container",
                                  "start"))
    elif allowed(pod, "rejoined"):
        out.steps.append(ctx.step(StepKind.CLEAR_REJOIN, pod, f"{name} streams from {primary} again", "rejoined"))
    elif role in (PodRole.FENCED, PodRole.REJOINING):
        out.waiting.append(Wait(ordinal, f"{name} to rejoin {primary}"))


def unexpected_writers(ctx: Pass, out: Draft) -> None:
    """More than one writer and no promote or rejoin recorded why: split brain, left to a human."""
    desired, writable = ctx.desired, ctx.observed.writable
    if len(writable) <= 1:
        return
    unexpected = [p for p in writable if p.ordinal != ctx.P and p.ordinal not in desired.rejoin]
    if unexpected:
        names = ", ".join(ctx.name(p.ordinal) for p in unexpected)
        out.blocked.append(f"split brain: {names} accept(s) writes next to the primary {ctx.name(ctx.P)} and "
                           "no promote or rejoin recorded why; keep the primary with `voodu-postgres rejoin "
                           f"{desired.ref} --replica {unexpected[0].ordinal}` (that pod's own writes are discarded)")
