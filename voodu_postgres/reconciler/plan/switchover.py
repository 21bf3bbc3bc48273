"""Switchover, as the planner sees it: a promote recorded its target (``PG_SWITCHOVER_TO``, written
by ``reconciler.switchover`` or by an automatic failover) and must be finished — fence the old
primary, promote the target, record it — or given up; afterwards the former primaries recorded
for a rejoin are fenced, rewound onto the new primary and forgotten; and a writer that no
promote or rejoin explains is reported as split brain."""

from __future__ import annotations

from voodu_postgres.domain.model import Step, StepKind, Wait
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
        out.steps.append(Step(StepKind.CLEAR_SWITCHOVER, T, f"a switchover to {new} is recorded but {new} "
                                                           f"{'is already the primary' if T == P else 'no longer exists'}"))
    elif allowed(target, "promoted"):
        _record_promoted(ctx, out, T)
    elif allowed(target, "abandon") or (roles[P] is PodRole.PRIMARY and roles[T] is not PodRole.PROMOTING):
        out.steps.append(Step(StepKind.CLEAR_SWITCHOVER, T, f"the switchover to {new} stopped before {old} was "
                                                           f"fenced: {old} stays the primary"))
    elif allowed(ctx.pod(P), "fence"):
        # an automatic failover's old primary is failing: a short stop; an interrupted planned
        # promote's still gets the clean shutdown that sends every committed write to the standbys
        out.steps.append(Step(StepKind.FENCE, P, f"{old} is not stopped ({ctx.pod(P).state}): "
                                                 f"stop it before {new} is promoted",
                              data={"failing": desired.failover_fencing}))
    elif allowed(target, "repromote"):
        out.steps.append(Step(StepKind.PROMOTE, T, f"{old} is fenced (a switchover or failover was interrupted): "
                                                  f"promote {new}"))
    elif roles[T] is PodRole.DOWN and target.state == "restarting":
        out.waiting.append(Wait(T, f"{new} (target of an interrupted switchover) is restarting"))
    else:
        out.blocked.append(f"an interrupted switchover to {new} cannot finish: {new} is {roles[T].value} and "
                           f"{old} is {roles[P].value}; start {desired.ref.container(T)} (docker start) "
                           "and reconcile")


def _record_promoted(ctx: Pass, out: Draft, T: int) -> None:
    """The target was promoted: record it as the primary — unless the old one still writes too."""
    old, new = ctx.name(ctx.P), ctx.name(T)
    if ctx.pod(ctx.P).writable:
        out.blocked.append(f"split brain: {old} and {new} both accept writes after an interrupted switchover; "
                           f"stop the one whose writes you keep last — `voodu-postgres rejoin "
                           f"{ctx.desired.ref} --replica {ctx.P}` keeps {new}")
    else:
        out.steps.append(Step(StepKind.RECORD_PRIMARY, T, f"{new} was promoted by an interrupted switchover: "
                                                         f"record it as the primary ({old} rejoins it)"))


def rejoin_former_primaries(ctx: Pass, out: Draft) -> None:
    """Former primaries recorded for a rejoin: fence, rewind, then forget the intent."""
    for ordinal in sorted(ctx.desired.rejoin):
        if ordinal < ctx.desired.replicas:
            _rejoin(ctx, out, ordinal)


def _rejoin(ctx: Pass, out: Draft, ordinal: int) -> None:
    desired, allowed, role = ctx.desired, ctx.allowed, ctx.roles[ordinal]
    pod, name, primary = ctx.pod(ordinal), ctx.name(ordinal), ctx.name(ctx.P)
    if allowed(pod, "fence"):
        out.steps.append(Step(StepKind.FENCE, ordinal, f"{name} was the primary and still accepts writes"))
    elif role is PodRole.FENCED and allowed(pod, "rejoin"):
        out.steps.append(Step(StepKind.REJOIN, ordinal, f"{name} was the primary: rewind it onto "
                                                        f"{primary} (re-clone if that fails)"))
    elif allowed(pod, "reattach"):
        out.steps.append(Step(StepKind.RECREATE_POD, ordinal, f"{name} is detached from the cluster network "
                                                              f"{desired.network}: recreate it on it (volume kept)"))
    elif not pod.exists and allowed(pod, "start"):
        # its container is gone (removed by hand, or a re-clone failed half way): create it; the
        # entrypoint refuses data that was last a primary's, and the rewind above follows
        out.steps.append(Step(StepKind.CREATE_POD, ordinal, f"{name} (a former primary to rejoin) has no container"))
    elif allowed(pod, "rejoined"):
        out.steps.append(Step(StepKind.CLEAR_REJOIN, ordinal, f"{name} streams from {primary} again"))
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
