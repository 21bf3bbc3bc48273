"""The reconcile loop: seed the bucket, then derive desired state → observe → plan → execute
until converged (or one pass, for ``reconcile``).

Each pass starts from scratch: the desired state is derived again from the bucket (a promote may
have moved the primary or recorded a switchover meanwhile) and the cluster observed again; nothing
from a previous pass is carried over as truth, only the previous roles, to print a progress line
when a pod changes role. Only this module sleeps (through ``Context.sleep``, also between the
retries of a step), and only the CLI exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from voodu_postgres.adapters.docker import Runtime
from voodu_postgres.adapters.files import write_state
from voodu_postgres.adapters.store import Store
from voodu_postgres.domain.actions import Action
from voodu_postgres.domain.errors import VooduError
from voodu_postgres.domain.health import HealthTracker
from voodu_postgres.domain.keys import PASSWORD_KEY, PRIMARY_ORDINAL_KEY
from voodu_postgres.domain.model import Desired, Outcome, Plan, StepKind
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.domain.spec import PostgresSpec, Problem, SpecError
from voodu_postgres.reconciler.desired import assets_dir_for, derive, state_dir_for
from voodu_postgres.reconciler.execute import Records, default_retrying, execute
from voodu_postgres.reconciler.observe import snapshot
from voodu_postgres.reconciler.plan import plan, pod_of, roles_of
from voodu_postgres.render.expansion import expand
from voodu_postgres.states.pod import PodMove, settles_to

Progress = Callable[[str], None]


#: steps after which the primary is being replaced: the next pass follows at once
_FAILOVER_CHAIN = frozenset({StepKind.FAILOVER, StepKind.FENCE, StepKind.PROMOTE, StepKind.RECORD_PRIMARY})
_MAX_URGENT_PASSES = 8
#: steps that (re)boot the primary: it gets a grace period before "not answering" counts
_BOOTS_PRIMARY = frozenset({StepKind.START_POD, StepKind.CREATE_POD, StepKind.RESTART_POD, StepKind.RECREATE_POD})
#: seconds between passes while waiting (a primary booting, standbys cloning): half of it is lost
#: on average per wait, and a pass costs one container listing plus a status query per pod on
#: connections kept open (measured: 0.1 s made no difference to a cold start beyond the noise)
IDLE_POLL_S = 0.25
#: how long ``reconcile(wait=True)`` may take, in seconds, unless told otherwise
DEFAULT_TIMEOUT = 300.0


class ConvergeTimeout(VooduError, RuntimeError):
    """Not converged in time; the message names the stuck pod and ends with its log tail."""


@dataclass
class Report:
    ref: str
    message: str
    converged: bool
    plan: Plan
    seeded: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    passes: int = 0


@dataclass(frozen=True)
class Context:
    runtime: Runtime
    store: Store
    home: Path
    network: str
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time  # epoch seconds (the failover record's timestamps)


def seed_actions(spec: PostgresSpec, bucket: Mapping[str, str]) -> list[Action]:
    """The bucket writes a first apply needs (passwords, primary ordinal, retention)."""
    return expand(spec, bucket).actions


def apply_actions(store: Store, actions: list[Action]) -> None:
    for action in actions:
        if action.type == "config_set" and action.kv is not None:
            store.patch(action.scope, action.name, action.kv)
        elif action.type == "config_unset" and action.keys is not None:
            store.unset(action.scope, action.name, action.keys)


def reconcile(
    spec: PostgresSpec,
    ctx: Context,
    *,
    body: Mapping[str, Any] | None = None,
    dry_run: bool = False,
    wait: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress = lambda _line: None,
    health: HealthTracker | None = None,
    hold: frozenset[int] = frozenset(),
) -> Report:
    """Converge one resource. ``dry_run`` computes the plan and changes nothing at all.

    ``health`` is a watcher's memory of the primary across passes (``reconcile --watch``): with
    it, a failing primary is reported and, with ``auto_failover``, failed over. Without ``wait``,
    one pass — plus the immediately following passes of a failover in flight (fence → promote →
    record), so the new primary takes writes without waiting for the next watch interval.

    ``hold``: ordinals this run leaves down — it never starts, creates, rewinds or restarts them,
    nor waits for them (``promote --no-restart`` keeps the old primary stopped this way; the next
    reconcile rejoins it)."""
    bucket, seeded = _seed(spec, ctx, body=body, dry_run=dry_run)
    return _Convergence(spec, ctx, bucket, seeded, dry_run=dry_run, wait=wait, timeout=timeout,
                        progress=progress, health=health, hold=hold).run()


def _seed(spec: PostgresSpec, ctx: Context, *, body: Mapping[str, Any] | None,
          dry_run: bool) -> tuple[Mapping[str, str], list[str]]:
    """Write what a first apply needs into the bucket (a dry run only simulates it) and record the
    applied ``body``; the bucket as the passes start from, and what was seeded."""
    bucket = ctx.store.resolve(spec.scope, spec.name)
    seeds = seed_actions(spec, bucket)
    seeded = [f"{a.describe()}" for a in seeds]
    _refuse_password_edit(spec, ctx, bucket, seeds)
    if dry_run:
        simulated = dict(bucket)
        for action in seeds:
            simulated.update(action.kv or {})
        return simulated, seeded
    apply_actions(ctx.store, seeds)
    if body is not None:
        ctx.store.record_resource(spec.scope, spec.name, body, ctx.network)
    return ctx.store.resolve(spec.scope, spec.name), seeded


def _refuse_password_edit(spec: PostgresSpec, ctx: Context, bucket: Mapping[str, str], seeds: list[Action]) -> None:
    """A ``password`` in the block of an existing cluster that differs from its bucket's would
    only change the bucket, never the role: refuse it and point at the rotation command."""
    if bucket.get(PASSWORD_KEY) and any(PASSWORD_KEY in (a.kv or {}) for a in seeds) \
            and ctx.store.resource(spec.scope, spec.name) is not None:
        raise SpecError([Problem(str(spec.ref), "password", (
            "differs from the cluster's current password (editing it here would not change the role); "
            f"remove `password` from the block, and rotate with `voodu-postgres new-password {spec.ref}`"))])


def write_records(spec: PostgresSpec, ctx: Context, kv: Mapping[str, str]) -> None:
    """One bucket write, plus the primary-ordinal state file pods read when the primary moves."""
    ctx.store.patch(spec.scope, spec.name, kv)
    if PRIMARY_ORDINAL_KEY in kv:
        write_state(state_dir_for(ctx.home, spec), {"primary_ordinal": kv[PRIMARY_ORDINAL_KEY]})


def records_for(spec: PostgresSpec, ctx: Context, progress: Progress) -> Records:
    """What the executor reads and writes the cluster's intents through."""
    return Records(read=lambda: ctx.store.resolve(spec.scope, spec.name),
                   write=lambda kv: write_records(spec, ctx, kv), replication_user=spec.replication_user,
                   extra_labels=ctx.extra_labels, wall=ctx.wall, progress=progress)


class _Convergence:
    """The passes of one :func:`reconcile` over a seeded resource, and what they carry from one
    pass to the next: the previous roles (for the role-change lines), the outcomes so far, the
    count of passes and of urgent (failover chain) passes, and the deadline."""

    def __init__(self, spec: PostgresSpec, ctx: Context, bucket: Mapping[str, str], seeded: list[str], *,
                 dry_run: bool, wait: bool, timeout: float, progress: Progress,
                 health: HealthTracker | None, hold: frozenset[int] = frozenset()) -> None:
        self.spec, self.ctx, self.bucket, self.seeded = spec, ctx, bucket, seeded
        self.hold = hold
        self.dry_run, self.wait, self.timeout = dry_run, wait, timeout
        self.progress, self.health = progress, health
        self.assets_dir = assets_dir_for(ctx.home, spec)
        self.state_dir = state_dir_for(ctx.home, spec)
        self.desired = self._current_desired()
        if not dry_run:
            write_state(self.state_dir, {"primary_ordinal": str(self.desired.target_primary)})
        self.deadline = ctx.clock() + timeout
        self.previous: dict[int, PodRole] = {}
        self.outcomes: list[Outcome] = []
        self.expected: dict[int, tuple[str, frozenset[PodRole]]] = {}  # the last moves' destinations
        self.passes = 0
        self.urgent = 0
        self.records = records_for(spec, ctx, progress)

    def run(self) -> Report:
        while True:
            self.passes += 1
            if self.passes > 1:
                self.desired = self._current_desired()
            current = self._plan_pass()
            if self.dry_run:
                return self._report(current, current.message, current.converged, outcomes=[])
            done = self._after_steps(current) if current.steps else self._after_idle(current)
            if done is not None:
                return done

    def _current_desired(self) -> Desired:
        # the bucket is re-read on every pass: while a long apply waits, a promote may set its
        # switchover marker (PG_SWITCHOVER_TO) or move the primary (PG_PRIMARY_ORDINAL)
        spec, ctx = self.spec, self.ctx
        source = self.bucket if self.dry_run else ctx.store.resolve(spec.scope, spec.name)
        return derive(spec, source, assets_dir=self.assets_dir, network=ctx.network,
                      extra_labels=ctx.extra_labels, state_dir=self.state_dir)

    def _plan_pass(self) -> Plan:
        """Observe the cluster (and, watching, the primary's health), say which pods changed role
        since the last pass, and plan."""
        desired, ctx = self.desired, self.ctx
        observed = snapshot(ctx.runtime, desired, self.assets_dir)
        if self.health is not None:
            observed = replace(observed, health=self.health.observe(
                desired, observed, now=ctx.clock(), wall=ctx.wall(), last_failover_at=desired.last_failover_at))
        all_roles = roles_of(desired, observed)
        roles = {o: r for o, r in all_roles.items() if pod_of(desired, observed, o).exists}
        for ordinal, role in roles.items():
            before = self.previous.get(ordinal)
            if before is not None and before != role:
                self.progress(f"{desired.app_name(ordinal)}: {before.value} → {role.value}")
        self.previous = roles
        self._check_expected(desired, all_roles)
        return _without(plan(desired, observed), self.hold)

    def _check_expected(self, desired: Desired, roles: Mapping[int, PodRole]) -> None:
        """The roles the last steps' machine moves lead to are what this observation should show
        (or where the world's own transitions take them): say so when it does not — a step that
        succeeded without the effect it claims, or something else acting on the pod meanwhile."""
        for ordinal, (trigger, allowed) in self.expected.items():
            role = roles.get(ordinal, PodRole.DOWN)
            if role not in allowed:
                want = " or ".join(sorted(r.value for r in allowed))
                self.progress(f"⚠ {desired.app_name(ordinal)}: the pod machine expected {want} after "
                              f"{trigger}; observed {role.value}")
        self.expected = {}

    def _execute(self, current: Plan) -> list[Outcome]:
        """Run the plan's steps, one progress line each; a primary (re)booted gets its grace."""
        desired = self.desired
        results = execute(current, desired, self.ctx.runtime, assets_dir=self.assets_dir,
                          retrying=lambda: default_retrying(sleep=self.ctx.sleep), records=self.records)
        for outcome in results:
            mark = "✓" if outcome.ok else "✗"
            self.progress(f"{mark} {outcome.step.kind.value}"
                          f"{'' if outcome.step.ordinal is None else ' ' + desired.app_name(outcome.step.ordinal)}"
                          f" — {outcome.detail}")
        self.outcomes.extend(results)
        for outcome in results:
            if outcome.ok:
                for move in outcome.step.moves:
                    if isinstance(move, PodMove):
                        self.expected[move.ordinal] = (move.trigger, settles_to(move.dest()))
        if self.health is not None and any(o.ok and o.step.ordinal == desired.target_primary
                                           and o.step.kind in _BOOTS_PRIMARY for o in results):
            self.health.restarted(desired, self.ctx.clock())
        return results

    def _after_steps(self, current: Plan) -> Report | None:
        """After a pass that ran steps: the report when done, None for another pass."""
        results = self._execute(current)
        failed = [o for o in results if not o.ok]
        in_flight = not failed and any(o.step.kind in _FAILOVER_CHAIN for o in results)
        if in_flight and self.urgent < _MAX_URGENT_PASSES:
            self.urgent += 1  # the failover chain's next step follows at once, without a wait
            return None
        if not self.wait or any(not o.retryable for o in failed):
            # a permanent failure (missing image, bad config…) won't fix itself: stop and say so
            message = f"{self.spec.ref}: {failed[0].step}: {failed[0].detail}" if failed else current.message
            return self._report(current, message, False)
        self._check_deadline(current)
        if failed:
            self.ctx.sleep(1.0)  # transient Docker trouble: back off before the next pass
        return None

    def _after_idle(self, current: Plan) -> Report | None:
        """After a pass with nothing to do: the report when done, None (after a short wait) for
        another pass."""
        if current.converged or not self.wait:
            return self._report(current, current.message, current.converged)
        if current.blocked and not current.waiting:
            return self._report(current, current.message, False)
        self._check_deadline(current)
        self.ctx.sleep(IDLE_POLL_S)
        return None

    def _check_deadline(self, current: Plan) -> None:
        if self.ctx.clock() > self.deadline:
            raise _timeout(self.desired, current, self.ctx, self.timeout)

    def _report(self, current: Plan, message: str, converged: bool, *,
                outcomes: list[Outcome] | None = None) -> Report:
        return Report(str(self.spec.ref), message, converged, current, self.seeded,
                      self.outcomes if outcomes is None else outcomes, self.passes)


#: what ``hold`` keeps from a held ordinal: anything that would bring it (back) up
_BRINGS_UP = frozenset({StepKind.START_POD, StepKind.CREATE_POD, StepKind.RECREATE_POD, StepKind.RESTART_POD,
                        StepKind.REJOIN, StepKind.CLEAR_REJOIN})


def _without(current: Plan, hold: frozenset[int]) -> Plan:
    """The plan minus the steps that would bring a held ordinal up, and minus waits on it."""
    if not hold:
        return current
    steps = tuple(s for s in current.steps if not (s.ordinal in hold and s.kind in _BRINGS_UP))
    waiting = tuple(w for w in current.waiting if w.ordinal not in hold)
    return replace(current, steps=steps, waiting=waiting)


def _timeout(desired: Desired, current: Plan, ctx: Context, timeout: float) -> ConvergeTimeout:
    wait = current.waiting[0] if current.waiting else None
    ordinal = wait.ordinal if wait is not None and wait.ordinal is not None else desired.target_primary
    container = desired.ref.container(ordinal)
    tail = ctx.runtime.logs_tail(container, 15).rstrip()
    what = wait.text if wait is not None else current.message
    message = f"{desired.ref}: not converged after {timeout:.0f}s — still waiting for {what}"
    if tail:
        message += f"\nlast log lines of {container}:\n" + "\n".join(f"  {line}" for line in tail.splitlines())
    return ConvergeTimeout(message)
