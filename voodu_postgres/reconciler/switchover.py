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

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from voodu_postgres.adapters.docker import RuntimeFailure
from voodu_postgres.adapters.files import write_state
from voodu_postgres.domain.errors import VooduError
from voodu_postgres.domain.keys import PRIMARY_ORDINAL_KEY, SWITCHOVER_KEY
from voodu_postgres.domain.model import Desired, Observed, PodStatus, lsn_text
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.domain.spec import PostgresSpec
from voodu_postgres.reconciler import effects as repair
from voodu_postgres.reconciler.desired import assets_dir_for, derive, state_dir_for
from voodu_postgres.reconciler.execute import set_sync_names
from voodu_postgres.reconciler.loop import Context, reconcile
from voodu_postgres.reconciler.observe import snapshot
from voodu_postgres.reconciler.plan import describe, pod_of, roles_of, streams_from_primary
from voodu_postgres.states.pod import PodMachine, PodView

Progress = Callable[[str], None]
DEFAULT_MAX_LAG = 16 * 1024 * 1024  # bytes of replay lag a planned switchover accepts
STOP_TIMEOUT = repair.STOP_TIMEOUT


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

    def view(self, ordinal: int, *, switchover: int | None = None) -> PodView:
        d = self.desired
        primary = d.target_primary
        return PodView(pod=self.pod(ordinal), target_primary=primary,
                       primary_ready=self.role(primary) is PodRole.PRIMARY,
                       writable_count=len(self.observed.writable),
                       standbys_streaming=all(streams_from_primary(d, self.pod(o))
                                              for o in range(d.replicas) if o != primary),
                       switchover=switchover if switchover is not None else d.switchover,
                       rejoin=d.rejoin, streams=streams_from_primary(d, self.pod(ordinal)))


def load_cluster(spec: PostgresSpec, ctx: Context) -> Cluster:
    bucket = ctx.store.resolve(spec.scope, spec.name)
    desired = derive(spec, bucket, assets_dir=assets_dir_for(ctx.home, spec), network=ctx.network,
                     extra_labels=ctx.extra_labels, state_dir=state_dir_for(ctx.home, spec))
    observed = snapshot(ctx.runtime, desired, assets_dir_for(ctx.home, spec))
    return Cluster(spec, desired, observed)


def _sql(ctx: Context, d: Desired, ordinal: int, sql: str) -> str:
    try:
        return repair.sql(ctx.runtime, d, ordinal, sql)
    except RuntimeFailure as exc:
        raise FailoverError(str(exc)) from exc


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    try:
        return repair.wait_until(lambda: _ok(predicate), timeout, what)
    except RuntimeFailure as exc:
        raise FailoverError(str(exc)) from exc


def _ok(predicate: Callable[[], bool]) -> bool:
    try:
        return predicate()
    except FailoverError:
        return False


def _record(spec: PostgresSpec, ctx: Context, kv: dict[str, str]) -> None:
    """A bucket write, plus the primary-ordinal state file pods read when the primary moves."""
    ctx.store.patch(spec.scope, spec.name, kv)
    if PRIMARY_ORDINAL_KEY in kv:
        write_state(state_dir_for(ctx.home, spec), {"primary_ordinal": kv[PRIMARY_ORDINAL_KEY]})


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
    role = cluster.role(target)
    if not PodMachine(role).may("promote", cluster.view(target)):
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
    if planned and not PodMachine(cluster.role(old)).may("fence", cluster.view(old, switchover=target)):
        raise FailoverError(f"cannot fence {d.app_name(old)}: it is {cluster.role(old).value}")

    # the intent, before anything moves: an interruption from here on is finished by reconcile
    _record(spec, ctx, {SWITCHOVER_KEY: str(target)})
    try:
        if planned:
            final_lsn: int | None = _fence_planned(ctx, cluster, target, force=force, max_lag=max_lag,
                                                   progress=progress)
            lost_note = ""
        else:
            final_lsn = None
            lost_note = _fence_failover(ctx, cluster, target, yes=yes, progress=progress)
    except FailoverError:
        # nothing was promoted: the old primary stays (reconcile restarts it if it stopped)
        _record(spec, ctx, {SWITCHOVER_KEY: ""})
        raise
    t0 = time.monotonic()
    if final_lsn is not None:
        waited = _wait(lambda: repair.lsn(_sql(ctx, d, target, "SELECT pg_last_wal_receive_lsn()")) >= final_lsn,
                       30, f"{d.app_name(target)} to receive the old primary's last WAL")
        progress(f"{d.app_name(target)} has received all WAL of {d.app_name(old)} ({waited:.2f}s)")
    try:
        repair.promote_pod(ctx.runtime, d, target)
    except RuntimeFailure as exc:
        # the intent stays recorded: reconcile rolls forward (or back) from what it observes
        raise FailoverError(f"{exc} — `voodu-postgres reconcile {ref}` finishes the switchover") from exc
    progress(f"promoted {d.app_name(target)}: out of recovery, accepting writes "
             f"({time.monotonic() - t0:.2f}s after the fence)")

    # one write: the new primary, the old one to rejoin, the switchover over
    _record(spec, ctx, repair.flip(ctx.store.resolve(spec.scope, spec.name), target, old))
    progress(f"recorded primary = {d.app_name(target)} (bucket PG_PRIMARY_ORDINAL, pod state file)")
    after_flip = load_cluster(spec, ctx)
    for ordinal in range(d.replicas):
        if ordinal in (target, old):
            continue
        _repoint(ctx, after_flip, ordinal, target, progress)
    _ensure_sync(spec, ctx, progress)

    # From here on the promotion has happened and is recorded: a failure to heal the rest is
    # reported, not raised, so the operator is never told "error" about a live new primary.
    problems = []
    if no_restart:
        progress(f"--no-restart: {d.app_name(old)} left stopped; "
                 f"run `voodu-postgres rejoin {ref} --replica {old}` (or reconcile) to bring it back as a standby")
    else:
        try:
            rejoin(spec, ctx, ordinal=old, progress=progress)
        except (FailoverError, RuntimeFailure) as exc:
            problems.append(f"⚠ rejoin of {d.app_name(old)} failed: {exc} — run "
                            f"`voodu-postgres rejoin {ref} --replica {old}`")
    try:
        _wait_streaming(ctx, spec, skip={old} if no_restart or problems else set(), timeout=60)
        _ensure_sync(spec, ctx, progress)
    except (FailoverError, RuntimeFailure) as exc:
        problems.append(f"⚠ {exc}")
    after = load_cluster(spec, ctx)
    tail = "".join(f"\n{p}" for p in problems)
    return f"postgres {ref}: primary is now {d.app_name(target)} (was {d.app_name(old)}){lost_note}; " \
           f"{describe(after.desired, after.observed)}{tail}"


def _ensure_sync(spec: PostgresSpec, ctx: Context, progress: Progress) -> None:
    """With ``synchronous``, put synchronous_standby_names on the new primary — once a standby
    streams from it (ALTER SYSTEM on the old primary never reached this pod's
    postgresql.auto.conf; setting it with no standby streaming would hang every commit)."""
    if not spec.synchronous:
        return
    c = load_cluster(spec, ctx)
    d = c.desired
    P = d.target_primary
    primary = c.pod(P)
    streaming = any(streams_from_primary(d, c.pod(o)) for o in range(d.replicas) if o != P)
    if primary.pg is not None and streaming and primary.pg.sync_auto != d.sync_names:
        progress(set_sync_names(ctx.runtime, d, P))


def _fence_planned(ctx: Context, cluster: Cluster, target: int, *, force: bool, max_lag: int,
                   progress: Progress) -> int:
    d = cluster.desired
    old = d.target_primary
    old_pod = cluster.pod(old)
    rows = {r.application_name: r for r in (old_pod.pg.replicas if old_pod.pg else ())}
    row = rows.get(d.app_name(target))
    if force:
        progress("--force: skipping the lag check")
    elif row is None or row.state != "streaming":
        raise FailoverError(f"{d.app_name(target)} is not streaming from {d.app_name(old)}; "
                            "wait for it to catch up, or pass --force")
    elif row.lag_bytes is not None and row.lag_bytes > max_lag:
        raise FailoverError(f"{d.app_name(target)} is {row.lag_bytes} bytes behind {d.app_name(old)} "
                            f"(limit {max_lag}); wait for it to catch up, or pass --force")
    else:
        progress(f"{d.app_name(target)} streams from {d.app_name(old)}, replay lag {row.lag_bytes or 0} bytes")
    before = repair.lsn(_sql(ctx, d, old, "SELECT pg_current_wal_lsn()"))
    code = repair.fence(ctx.runtime, d, old)
    if code != 0:
        raise FailoverError(f"fencing {d.app_name(old)}: it stopped with exit code {code}, not cleanly; "
                            f"inspect it, then retry with --force")
    progress(f"fenced {d.app_name(old)}: clean shutdown, so every committed write was sent to the standbys")
    return before


def _fence_failover(ctx: Context, cluster: Cluster, target: int, *, yes: bool, progress: Progress) -> str:
    d = cluster.desired
    old = d.target_primary
    old_pod = cluster.pod(old)
    if old_pod.exists and old_pod.state != "exited":
        # running but unreachable (hung, partitioned) or being restarted by Docker: stop it (which
        # also cancels its restart policy) so it can take no more writes
        ctx.runtime.stop_container(d.ref.container(old), timeout=10)
        progress(f"fenced {d.app_name(old)}: stopped its {old_pod.state} container")
    received: dict[int, int] = {}
    for ordinal in range(d.replicas):
        pod = cluster.pod(ordinal)
        if ordinal != old and pod.pg is not None and pod.pg.in_recovery:
            try:
                received[ordinal] = repair.lsn(_sql(ctx, d, ordinal, "SELECT pg_last_wal_receive_lsn()"))
            except (FailoverError, ValueError):
                continue
    mine = received.get(target)
    best = max(received, key=lambda o: received[o]) if received else target
    if mine is not None and received[best] > mine and not yes:
        raise FailoverError(f"{d.app_name(best)} has received {received[best] - mine} bytes more WAL than "
                            f"{d.app_name(target)}; promote --replica {best} instead, or add --yes to accept "
                            "losing them")
    ahead = f", {received[best] - mine} bytes behind {d.app_name(best)}" if mine is not None and best != target \
        and received[best] > mine else ""
    note = (f" — failover: {d.app_name(old)} was down; {d.app_name(target)} had received WAL up to "
            f"{lsn_text(mine)}{ahead}; writes after that point on {d.app_name(old)} are lost")
    progress(note.strip(" —"))
    return note


def _repoint(ctx: Context, cluster: Cluster, ordinal: int, primary: int, progress: Progress) -> None:
    d = cluster.desired
    if not cluster.pod(ordinal).running:
        progress(f"{d.app_name(ordinal)} is not running; it follows {d.app_name(primary)} when it starts")
        return
    try:
        progress(repair.repoint(ctx.runtime, d, ordinal))
    except RuntimeFailure as exc:
        progress(f"⚠ {exc} (reconcile re-points it)")


def _wait_streaming(ctx: Context, spec: PostgresSpec, *, skip: set[int], timeout: float) -> None:
    def healed() -> bool:
        c = load_cluster(spec, ctx)
        # a standby that is not running follows the new primary when it starts: nothing to wait for
        return all(streams_from_primary(c.desired, c.pod(o)) for o in range(c.desired.replicas)
                   if o != c.desired.target_primary and o not in skip and c.pod(o).running)

    _wait(healed, timeout, "every standby to stream from the new primary")


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
    container = ref.container(ordinal)
    # the primary "serves" when it is writable — also when this pod is a second writer (split
    # brain), since stopping this pod is exactly how rejoin ends it
    primary_pod = cluster.pod(primary)
    serving = primary_pod.writable and (len(cluster.observed.writable) == 1 or pod.writable)
    role = cluster.role(ordinal)
    view = PodView(pod=pod, target_primary=primary, primary_ready=serving,
                   writable_count=len(cluster.observed.writable), standbys_streaming=False,
                   rejoin=d.rejoin | {ordinal})
    machine = PodMachine(role)
    if role is PodRole.SPLIT_BRAIN and pod.writable and machine.may("fence", view):
        # a second writer is fenced (stopped) first; from there the machine judges the stopped pod
        machine.fire("fence", view)
        view = replace(view, pod=replace(pod, pg=None, state="exited"))
    if not machine.may("rejoin", view):
        if ordinal == primary:
            raise FailoverError(f"refusing to rejoin {d.app_name(ordinal)}: it is the current primary")
        if not serving:
            raise FailoverError(f"the primary {d.app_name(primary)} is not serving; rejoin needs a live primary")
        raise FailoverError(f"cannot rejoin {d.app_name(ordinal)} while it is {role.value}; "
                            "wait for it to settle, or delete its container and reconcile")
    if not pod.exists:
        raise FailoverError(f"{container} does not exist; `voodu-postgres reconcile {ref}` recreates it")
    # the intent first: killed from here on, reconcile finishes the rejoin
    _record(spec, ctx, repair.mark_rejoin(ctx.store.resolve(spec.scope, spec.name), ordinal))
    try:
        how = repair.rejoin_pod(ctx.runtime, d, ordinal, replication_user=spec.replication_user,
                                bucket=ctx.store.resolve(spec.scope, spec.name), extra_labels=ctx.extra_labels,
                                progress=progress)
    except RuntimeFailure as exc:
        raise FailoverError(str(exc)) from exc
    _wait(lambda: streams_from_primary(d, load_cluster(spec, ctx).pod(ordinal)), 120,
          f"{d.app_name(ordinal)} to stream from {d.app_name(primary)}")
    _record(spec, ctx, repair.forget_rejoin(ctx.store.resolve(spec.scope, spec.name), ordinal))
    progress(f"{d.app_name(ordinal)} streams from {d.app_name(primary)}")
    after = load_cluster(spec, ctx)
    return f"postgres {ref}: rejoined {d.app_name(ordinal)} as a standby — {how}; " \
           f"{describe(after.desired, after.observed)}"
