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

While a promote runs, the bucket holds ``PG_SWITCHOVER_TO``; the planner sees it and waits
instead of "repairing" the fenced primary (CNPG's target/current handshake).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from voodu_postgres.errors import VooduError
from voodu_postgres.reconciler.desired import assets_dir_for, derive, state_dir_for
from voodu_postgres.reconciler.execute import set_sync_names
from voodu_postgres.reconciler.expand import PRIMARY_ORDINAL_KEY, REPLICATION_PASSWORD_KEY, SWITCHOVER_KEY
from voodu_postgres.reconciler.loop import Context
from voodu_postgres.reconciler.model import Desired, Observed, PodStatus
from voodu_postgres.reconciler.naming import PGDATA
from voodu_postgres.reconciler.observe import run_sql, snapshot
from voodu_postgres.reconciler.plan import describe, pod_of, streams_from_primary
from voodu_postgres.reconciler.runtime import RuntimeFailure, write_state
from voodu_postgres.reconciler.spec import PostgresSpec
from voodu_postgres.render.statefulset import WRAPPER_PATH
from voodu_postgres.states.pod import PodMachine, PodRole, PodView, classify

Progress = Callable[[str], None]
#: pg_rewind output that means "could not talk to the source", not "cannot rewind this data"
_NOT_A_REWIND_PROBLEM = ("could not connect", "password authentication failed", "Connection refused",
                         "could not translate host name", "timeout expired")
DEFAULT_MAX_LAG = 16 * 1024 * 1024  # bytes of replay lag a planned switchover accepts
STOP_TIMEOUT = 60


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
        return classify(self.pod(ordinal), target_primary=self.desired.target_primary,
                        writable_count=len(self.observed.writable))

    def view(self, ordinal: int) -> PodView:
        primary = self.desired.target_primary
        return PodView(pod=self.pod(ordinal), target_primary=primary,
                       primary_ready=self.role(primary) is PodRole.PRIMARY,
                       writable_count=len(self.observed.writable))


def load_cluster(spec: PostgresSpec, ctx: Context) -> Cluster:
    bucket = ctx.store.resolve(spec.scope, spec.name)
    desired = derive(spec, bucket, assets_dir=assets_dir_for(ctx.home, spec), network=ctx.network,
                     extra_labels=ctx.extra_labels, state_dir=state_dir_for(ctx.home, spec))
    observed = snapshot(ctx.runtime, desired, assets_dir_for(ctx.home, spec))
    return Cluster(spec, desired, observed)


def _sql(ctx: Context, d: Desired, ordinal: int, sql: str) -> str:
    try:
        return run_sql(ctx.runtime, d.ref.container(ordinal), port=d.port, user=d.user, database=d.database,
                       sql=sql)
    except RuntimeFailure as exc:
        raise FailoverError(f"{d.app_name(ordinal)}: {exc}") from None


def _lsn(text: str) -> int:
    high, _, low = text.strip().partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except (FailoverError, RuntimeFailure):
            pass
        if time.monotonic() - start > timeout:
            raise FailoverError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------
# promote


def promote(spec: PostgresSpec, ctx: Context, *, target: int, force: bool = False, no_restart: bool = False,
            yes: bool = False, max_lag: int = DEFAULT_MAX_LAG, progress: Progress = lambda _l: None) -> str:
    cluster = load_cluster(spec, ctx)
    d = cluster.desired
    ref = d.ref
    old = d.target_primary
    if d.replicas <= 1:
        raise FailoverError(f"postgres {ref} has replicas={d.replicas}; promote needs a standby "
                            "(raise replicas and apply first)")
    if not 0 <= target < d.replicas:
        raise FailoverError(f"--replica {target} out of range (valid: 0..{d.replicas - 1})")
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

    ctx.store.patch(spec.scope, spec.name, {SWITCHOVER_KEY: str(target)})
    try:
        if planned:
            final_lsn = _fence_planned(ctx, cluster, target, force=force, max_lag=max_lag, progress=progress)
            lost_note = ""
        else:
            final_lsn = None
            lost_note = _fence_failover(ctx, cluster, target, yes=yes, progress=progress)
        t0 = time.monotonic()
        if final_lsn is not None:
            waited = _wait(lambda: _lsn(_sql(ctx, d, target, "SELECT pg_last_wal_receive_lsn()")) >= final_lsn,
                           30, f"{d.app_name(target)} to receive the old primary's last WAL")
            progress(f"{d.app_name(target)} has received all WAL of {d.app_name(old)} ({waited:.2f}s)")
        out = _sql(ctx, d, target, "SELECT pg_promote(true, 60)")
        if out.splitlines()[-1].strip() != "t":
            raise FailoverError(f"pg_promote() on {d.app_name(target)} returned {out!r}")
        _wait(lambda: _sql(ctx, d, target, "SELECT pg_is_in_recovery()") == "f", 30,
              f"{d.app_name(target)} to leave recovery")
        progress(f"promoted {d.app_name(target)}: out of recovery, accepting writes "
                 f"({time.monotonic() - t0:.2f}s after the fence)")

        # record the new primary where pods and later commands read it
        ctx.store.patch(spec.scope, spec.name, {PRIMARY_ORDINAL_KEY: str(target)})
        write_state(state_dir_for(ctx.home, spec), {"primary_ordinal": str(target)})
        progress(f"recorded primary = {d.app_name(target)} (bucket {PRIMARY_ORDINAL_KEY}, pod state file)")

        for ordinal in range(d.replicas):
            if ordinal in (target, old):
                continue
            _repoint(ctx, cluster, ordinal, target, progress)
        _ensure_sync(spec, ctx, progress)
    finally:
        ctx.store.patch(spec.scope, spec.name, {SWITCHOVER_KEY: ""})

    # From here on the promotion has happened and is recorded: a failure to heal the rest is
    # reported, not raised, so the operator is never told "error" about a live new primary.
    problems = []
    if no_restart:
        progress(f"--no-restart: {d.app_name(old)} left stopped; "
                 f"run `voodu-postgres rejoin {ref} --replica {old}` to bring it back as a standby")
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
    before = _lsn(_sql(ctx, d, old, "SELECT pg_current_wal_lsn()"))
    code = ctx.runtime.stop_container(d.ref.container(old), timeout=STOP_TIMEOUT)
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
                received[ordinal] = _lsn(_sql(ctx, d, ordinal, "SELECT pg_last_wal_receive_lsn()"))
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
            f"{_fmt_lsn(mine)}{ahead}; writes after that point on {d.app_name(old)} are lost")
    progress(note.strip(" —"))
    return note


def _fmt_lsn(value: int | None) -> str:
    if value is None:
        return "an unknown point"
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _repoint(ctx: Context, cluster: Cluster, ordinal: int, primary: int, progress: Progress) -> None:
    d = cluster.desired
    pod = cluster.pod(ordinal)
    if not pod.running:
        progress(f"{d.app_name(ordinal)} is not running; it follows {d.app_name(primary)} when it starts")
        return
    result = ctx.runtime.exec(d.ref.container(ordinal), ["bash", WRAPPER_PATH, "--repoint"], user="root")
    if result.exit_code != 0:
        progress(f"⚠ could not re-point {d.app_name(ordinal)}: {result.output.strip().splitlines()[-1:]}")
        return
    _sql(ctx, d, ordinal, "SELECT pg_reload_conf()")
    progress(f"re-pointed {d.app_name(ordinal)} at {d.app_name(primary)} (primary_conninfo reloaded, no restart)")


def _wait_streaming(ctx: Context, spec: PostgresSpec, *, skip: set[int], timeout: float) -> None:
    def healed() -> bool:
        c = load_cluster(spec, ctx)
        return all(streams_from_primary(c.desired, c.pod(o)) for o in range(c.desired.replicas)
                   if o != c.desired.target_primary and o not in skip)

    _wait(healed, timeout, "every standby to stream from the new primary")


# ------------------------------------------------------------------------------------------
# rejoin


def rejoin(spec: PostgresSpec, ctx: Context, *, ordinal: int, progress: Progress = lambda _l: None) -> str:
    cluster = load_cluster(spec, ctx)
    d = cluster.desired
    ref = d.ref
    primary = d.target_primary
    if not 0 <= ordinal < d.replicas:
        raise FailoverError(f"--replica {ordinal} out of range (valid: 0..{d.replicas - 1})")
    pod = cluster.pod(ordinal)
    container = ref.container(ordinal)
    primary_pod = cluster.pod(primary)
    # the primary "serves" when it is writable — also when this pod is a second writer (split
    # brain), since stopping this pod is exactly how rejoin ends it
    serving = primary_pod.writable and (len(cluster.observed.writable) == 1 or pod.writable)
    role = cluster.role(ordinal)
    view = PodView(pod=pod, target_primary=primary, primary_ready=serving,
                   writable_count=len(cluster.observed.writable))
    if not PodMachine(role).may("rejoin", view):
        if ordinal == primary:
            raise FailoverError(f"refusing to rejoin {d.app_name(ordinal)}: it is the current primary")
        if not serving:
            raise FailoverError(f"the primary {d.app_name(primary)} is not serving; rejoin needs a live primary")
        raise FailoverError(f"cannot rejoin {d.app_name(ordinal)} while it is {role.value}; "
                            "wait for it to settle, or delete its container and reconcile")
    if not pod.exists:
        raise FailoverError(f"{container} does not exist; `voodu-postgres reconcile {ref}` recreates it")
    if pod.running:
        # stopping first also ends a split brain: this pod may be a second writable primary
        ctx.runtime.stop_container(container, timeout=STOP_TIMEOUT)
        progress(f"stopped {d.app_name(ordinal)}")
    # pg_rewind compares timelines from the control files: right after a promotion the new
    # primary's control file still shows the old timeline until a checkpoint is written.
    _sql(ctx, d, primary, "CHECKPOINT")
    repl_password = ctx.store.resolve(spec.scope, spec.name).get(REPLICATION_PASSWORD_KEY, "")
    script = ('pg_rewind --target-pgdata="$PGDATA" --source-server="$SOURCE" --progress '
              '&& touch "$PGDATA/standby.signal"')
    env = {
        "PGDATA": PGDATA,
        "PGPASSWORD": repl_password,
        "SOURCE": f"host={d.host(primary)} port={d.port} user={spec.replication_user} dbname=postgres",
        # pg_rewind runs crash recovery through `sh -c postgres --single`; in a one-shot container
        # pg_rewind is PID 1, which a stale postmaster.pid may name. This tells postgres that PID
        # is its grandparent, not a live postmaster.
        "PG_GRANDPARENT_PID": "1",
    }
    t0 = time.monotonic()
    result = ctx.runtime.run_oneshot(ctx.runtime.image_of(container), ["bash", "-c", script],
                                     volumes_from=container, network=d.network, env=env,
                                     labels=dict(ctx.extra_labels))
    if result.exit_code == 0:
        ctx.runtime.start_container(container)
        how = f"pg_rewind kept its data ({time.monotonic() - t0:.2f}s)"
        progress(f"rewound {d.app_name(ordinal)} onto {d.app_name(primary)}'s timeline; starting it as a standby")
    else:
        reason = (result.output.strip().splitlines() or ["pg_rewind failed"])[-1]
        if any(marker in result.output for marker in _NOT_A_REWIND_PROBLEM):
            # the source was unreachable: a re-clone would fail the same way, and wiping this
            # pod's data for nothing would be a loss
            raise FailoverError(f"pg_rewind could not reach {d.app_name(primary)} ({reason}); "
                                f"{d.app_name(ordinal)} is stopped with its data intact — fix it and retry rejoin")
        progress(f"pg_rewind failed ({reason}); falling back to wipe and re-clone")
        ctx.runtime.remove_container(container)
        ctx.runtime.remove_volume(ref.volume(ordinal))
        ctx.runtime.run_pod(d.pod(ordinal))
        how = "pg_rewind failed, so it was wiped and re-cloned from the primary"
    _wait(lambda: streams_from_primary(d, load_cluster(spec, ctx).pod(ordinal)), 120,
          f"{d.app_name(ordinal)} to stream from {d.app_name(primary)}")
    progress(f"{d.app_name(ordinal)} streams from {d.app_name(primary)}")
    after = load_cluster(spec, ctx)
    return f"postgres {ref}: rejoined {d.app_name(ordinal)} as a standby — {how}; " \
           f"{describe(after.desired, after.observed)}"
