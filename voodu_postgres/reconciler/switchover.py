"""Promote and rejoin: moving the primary without losing acknowledged writes.

**Planned switchover** (the old primary is healthy):

1. check the target streams and is not too far behind (unless ``--force``);
2. *fence* the old primary with a clean, fast shutdown. Postgres' walsenders do not exit until
   every standby has flushed all WAL up to the shutdown checkpoint, so once the stop returns
   with exit code 0, every committed (acknowledged) transaction is on the standbys, and nothing
   can write to the old primary any more;
3. wait until the target has received at least the old primary's final LSN, then
   ``pg_promote()`` it and verify: the function returns true and ``pg_is_in_recovery()`` is false;
4. record the new primary (bucket ``PG_PRIMARY_ORDINAL`` + the state file pods read), re-point the
   other standbys (rewrite ``primary_conninfo`` and reload — no restart), and rejoin the old
   primary as a standby.

**Failover** (``--force`` with the old primary down): make sure the old primary is stopped, refuse
if another standby has received more WAL than the target (that WAL would be lost) unless ``--yes``,
then promote and heal as above. The report says how far the target had got.

**Rejoin**: stop the pod, ``CHECKPOINT`` the current primary (pg_rewind needs the new timeline in
its control file), run ``pg_rewind`` as the postgres OS user in a one-shot container sharing the
pod's mounts, arm ``standby.signal`` and start it; if pg_rewind fails, wipe and re-clone, and say
so. The current primary is never touched.

**Intents first** (CloudNativePG's targetPrimary/currentPrimary handshake): promote records its
target (``PG_SWITCHOVER_TO``) before it fences anything, and flips ``PG_PRIMARY_ORDINAL`` together
with recording the old primary in ``PG_REJOIN`` and dropping the target — one bucket write; rejoin
records its pod in ``PG_REJOIN`` before it stops it. Killed at any instant, the next ``reconcile``
(or the same command again) reads those intents and finishes the work: roll forward once the
target is promoted or the old primary is fenced, roll back while the old primary still serves.
Every command and reconcile pass holds the cluster's lease, so an intent found by a lease holder
belongs to an operation that died.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from voodu_postgres.domain.errors import VooduError
from voodu_postgres.domain.intents import DEFAULT_MAX_LAG, SwitchoverRequest
from voodu_postgres.domain.model import Desired, Observed, Plan, PodStatus, Step, StepKind
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.record import ClusterRecord
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.domain.spec import PostgresSpec
from voodu_postgres.reconciler.desired import assets_dir_for, derive, state_dir_for
from voodu_postgres.reconciler.execute import execute
from voodu_postgres.reconciler.loop import (
    Context,
    ConvergeTimeout,
    Report,
    reconcile,
    records_for,
    write_records,
)
from voodu_postgres.reconciler.observe import snapshot
from voodu_postgres.reconciler.plan import describe, pod_move, pod_of, roles_of, streams_from_primary
from voodu_postgres.reconciler.plan.switchover import lag_refusal
from voodu_postgres.states.pod import PodMove, PodView

Progress = Callable[[str], None]
PROMOTE_TIMEOUT = 180.0  # seconds the engine may take to perform a promote (and heal after it)
REJOIN_TIMEOUT = 120.0  # … and for a rejoined pod to stream again


class FailoverError(VooduError, RuntimeError):
    """A refusal or failure the operator can act on (one line)."""


@dataclass(frozen=True)
class Cluster:
    spec: PostgresSpec
    desired: Desired
    observed: Observed

    def pod(self, ordinal: int) -> PodStatus:
        return pod_of(self.desired, self.observed, ordinal)

    def role(self, ordinal: int) -> PodRole:
        return roles_of(self.desired, self.observed)[ordinal]


def load_cluster(spec: PostgresSpec, ctx: Context) -> Cluster:
    bucket = ctx.store.resolve(spec.scope, spec.name)
    desired = derive(spec, bucket, assets_dir=assets_dir_for(ctx.home, spec), network=ctx.network,
                     extra_labels=ctx.extra_labels, state_dir=state_dir_for(ctx.home, spec))
    observed = snapshot(ctx.runtime, desired, assets_dir_for(ctx.home, spec))
    return Cluster(spec, desired, observed)


def finish_interrupted(spec: PostgresSpec, ctx: Context, progress: Progress) -> Cluster:
    """Drive an unfinished switchover or rejoin (recorded intents) to the end with the reconciler."""
    cluster = load_cluster(spec, ctx)
    if cluster.desired.switchover is None and not cluster.desired.rejoin:
        return cluster
    what = (f"switchover to {cluster.desired.app_name(cluster.desired.switchover)}"
            if cluster.desired.switchover is not None else
            "rejoin of " + ", ".join(cluster.desired.app_name(o) for o in sorted(cluster.desired.rejoin)))
    progress(f"finishing an interrupted {what} first")
    report = reconcile(spec, ctx, wait=True, timeout=180, progress=progress)
    if not report.converged:
        raise FailoverError(f"could not finish the interrupted {what}: {report.message}")
    return load_cluster(spec, ctx)


# ------------------------------------------------------------------------------------------
# promote


def promote(spec: PostgresSpec, ctx: Context, *, target: int, force: bool = False, no_restart: bool = False,
            yes: bool = False, max_lag: int = DEFAULT_MAX_LAG, progress: Progress = lambda _l: None) -> str:
    """Check what only the operator's request can decide, record the request, and let the
    reconcile engine perform it (fence, wait for the WAL, promote, record, re-point, rejoin): the
    same steps, machine and executor that finish an interrupted switchover or an automatic
    failover."""
    cluster = load_cluster(spec, ctx)
    d = cluster.desired
    ref = d.ref
    if d.replicas <= 1:
        raise FailoverError(f"postgres {ref} has replicas={d.replicas}; promote needs a standby "
                            "(raise replicas and apply first)")
    if not 0 <= target < d.replicas:
        raise FailoverError(f"--replica {target} out of range (valid: 0..{d.replicas - 1})")
    interrupted = d.switchover
    cluster = finish_interrupted(spec, ctx, progress)
    d = cluster.desired
    old = d.target_primary
    if interrupted is not None and target == old:
        # re-running the promote that was interrupted: it is done now
        return f"postgres {ref}: primary is now {d.app_name(target)} (finished an interrupted switchover); " \
               f"{describe(d, cluster.observed)}"
    request = _request(cluster, target, force=force, yes=yes, max_lag=max_lag, progress=progress)
    # the request, before anything moves: from here on the engine performs it, and any later
    # reconcile finishes it if this command dies
    write_records(spec, ctx, ClusterRecord.ask_switchover(request))
    report = _drive(spec, ctx, progress, hold=frozenset({old}) if no_restart else frozenset())
    after = load_cluster(spec, ctx)
    if after.desired.target_primary != target:
        raise FailoverError(_not_promoted(ref, report, after))
    if no_restart:
        progress(f"--no-restart: {d.app_name(old)} left stopped; run `voodu-postgres rejoin {ref} --replica {old}` "
                 "(or reconcile) to bring it back as a standby")
    note = next((o.detail[o.detail.index(" — failover:"):] for o in (report.outcomes if report else ())
                 if o.ok and o.step.kind is StepKind.PROMOTE and " — failover:" in o.detail), "")
    tail = "" if report is not None and report.converged else \
        f"\n⚠ not settled yet: {report.message if report else 'timed out'} — `voodu-postgres reconcile {ref}` " \
        "finishes it"
    return f"postgres {ref}: primary is now {d.app_name(target)} (was {d.app_name(old)}){note}; " \
           f"{describe(after.desired, after.observed)}{tail}"


def _request(cluster: Cluster, target: int, *, force: bool, yes: bool, max_lag: int,
             progress: Progress) -> SwitchoverRequest:
    """The switchover the operator may ask for now, or the one-line refusal: the target must be a
    standby the pod machine may promote; a served primary must let its target catch up (unless
    ``--force``) and be fenceable; an unreachable one needs ``--force``."""
    d, observed = cluster.desired, cluster.observed
    old = d.target_primary
    role = cluster.role(target)
    if not pod_move(d, observed, target, "promote").allowed():
        # the machine refuses the primary itself (guard) and anything not a standby (no transition)
        if target == old:
            raise FailoverError(f"{d.app_name(target)} is already the primary — nothing to promote "
                                "(pick a standby with --replica)")
        raise FailoverError(f"cannot promote {d.app_name(target)}: it is {role.value}, not a streaming standby")
    old_pod = cluster.pod(old)
    planned = old_pod.writable
    if not planned and not force:
        raise FailoverError(f"primary {d.app_name(old)} is not reachable ({old_pod.error or old_pod.state}); "
                            f"pass --force to fail over to {d.app_name(target)} (writes it has not received are lost)")
    request = SwitchoverRequest(to=target, source=old, planned=planned, force=force, accept_loss=yes, max_lag=max_lag)
    if not planned:
        return request
    refused = lag_refusal(d, old_pod, request)
    if refused is not None:
        raise FailoverError(refused)
    if not pod_move(replace(d, switchover=target), observed, old, "fence").allowed():
        raise FailoverError(f"cannot fence {d.app_name(old)}: it is {cluster.role(old).value}")
    if force:
        progress("--force: skipping the lag check")
    else:
        row = next(r for r in (old_pod.pg.replicas if old_pod.pg else ()) if r.application_name == d.app_name(target))
        progress(f"{d.app_name(target)} streams from {d.app_name(old)}, replay lag {row.lag_bytes or 0} bytes")
    return request


def _drive(spec: PostgresSpec, ctx: Context, progress: Progress, *, hold: frozenset[int],
           timeout: float = PROMOTE_TIMEOUT) -> Report | None:
    """Run the engine until the cluster settles (None: it did not within the time given)."""
    try:
        return reconcile(spec, ctx, wait=True, timeout=timeout, progress=progress, hold=hold)
    except ConvergeTimeout as exc:
        progress(f"⚠ {exc}")
        return None


def _not_promoted(ref: Ref, report: Report | None, after: Cluster) -> str:
    """Why the engine did not make the target the primary: the refusal it recorded, the step that
    failed, or the state it stopped in."""
    outcomes = report.outcomes if report is not None else []
    refused = next((o.step.data["refused"] for o in outcomes if o.ok and o.step.data.get("refused")), None)
    if refused is not None:
        return str(refused)
    failed = next((o for o in reversed(outcomes) if not o.ok), None)
    pending = after.desired.switchover is not None
    finish = f" — `voodu-postgres reconcile {ref}` finishes the switchover" if pending else ""
    if failed is not None:
        return f"{failed.detail}{finish}"
    return f"the switchover did not finish: {report.message if report else 'timed out'}{finish}"


# ------------------------------------------------------------------------------------------
# rejoin


def rejoin(spec: PostgresSpec, ctx: Context, *, ordinal: int, progress: Progress = lambda _l: None) -> str:
    cluster = load_cluster(spec, ctx)
    d = cluster.desired
    ref = d.ref
    if not 0 <= ordinal < d.replicas:
        raise FailoverError(f"--replica {ordinal} out of range (valid: 0..{d.replicas - 1})")
    if d.switchover is not None:
        cluster = finish_interrupted(spec, ctx, progress)
        d = cluster.desired
    primary = d.target_primary
    pod = cluster.pod(ordinal)
    container, name = ref.container(ordinal), d.app_name(ordinal)
    # the primary "serves" when it is writable — also when this pod is a second writer (split
    # brain), since stopping this pod is exactly how rejoin ends it
    primary_pod = cluster.pod(primary)
    serving = primary_pod.writable and (len(cluster.observed.writable) == 1 or pod.writable)
    role = cluster.role(ordinal)
    view = PodView(pod=pod, target_primary=primary, primary_ready=serving,
                   writable_count=len(cluster.observed.writable), standbys_streaming=False,
                   rejoin=d.rejoin | {ordinal})
    steps: list[Step] = []
    fence = PodMove(name, role, "fence", view)
    if role is PodRole.SPLIT_BRAIN and pod.writable and fence.allowed():
        # a second writer is fenced (stopped) first; from there the machine judges the stopped pod
        steps.append(Step(StepKind.FENCE, ordinal, f"{name} accepts writes next to {d.app_name(primary)}",
                          moves=(fence,)))
        role, view = PodRole.FENCED, replace(view, pod=replace(pod, pg=None, state="exited"))
    move = PodMove(name, role, "rejoin", view)
    if not move.allowed():
        if ordinal == primary:
            raise FailoverError(f"refusing to rejoin {name}: it is the current primary")
        if not serving:
            raise FailoverError(f"the primary {d.app_name(primary)} is not serving; rejoin needs a live primary")
        raise FailoverError(f"cannot rejoin {name} while it is {role.value}; "
                            "wait for it to settle, or delete its container and reconcile")
    if not pod.exists:
        raise FailoverError(f"{container} does not exist; `voodu-postgres reconcile {ref}` recreates it")
    # the intent first: killed from here on, reconcile finishes the rejoin
    write_records(spec, ctx, ClusterRecord.of(ctx.store.resolve(spec.scope, spec.name)).mark_rejoin(ordinal))
    steps.append(Step(StepKind.REJOIN, ordinal, f"rewind {name} onto {d.app_name(primary)}", moves=(move,)))
    # the same executor (and machine) as every reconcile pass; the engine then finishes the rejoin
    # (the pod streams: the intent is forgotten)
    how = ""
    for step in steps:
        [outcome] = execute(Plan(ref=ref, steps=(step,)), d, ctx.runtime, assets_dir=assets_dir_for(ctx.home, spec),
                            records=records_for(spec, ctx, progress))
        if not outcome.ok:
            raise FailoverError(outcome.detail)
        how = outcome.detail
        progress(how)
    report = _drive(spec, ctx, progress, hold=frozenset(), timeout=REJOIN_TIMEOUT)
    after = load_cluster(spec, ctx)
    if not streams_from_primary(after.desired, after.pod(ordinal)) or ordinal in after.desired.rejoin:
        raise FailoverError(f"{name} does not stream from {d.app_name(primary)} yet: "
                            f"{report.message if report else 'timed out'} — `voodu-postgres reconcile {ref}` "
                            "finishes the rejoin")
    progress(f"{name} streams from {d.app_name(primary)}")
    return f"postgres {ref}: rejoined {name} as a standby — {how}; " \
           f"{describe(after.desired, after.observed)}"
