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

Progress = Callable[[str], None]


#: steps after which the primary is being replaced: the next pass follows at once
_FAILOVER_CHAIN = frozenset({StepKind.FAILOVER, StepKind.FENCE, StepKind.PROMOTE, StepKind.RECORD_PRIMARY})
_MAX_URGENT_PASSES = 8
#: steps that (re)boot the primary: it gets a grace period before "not answering" counts
_BOOTS_PRIMARY = frozenset({StepKind.START_POD, StepKind.CREATE_POD, StepKind.RESTART_POD, StepKind.RECREATE_POD})


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
    timeout: float = 300.0,
    progress: Progress = lambda _line: None,
    health: HealthTracker | None = None,
) -> Report:
    """Converge one resource. ``dry_run`` computes the plan and changes nothing at all.

    ``health`` is a watcher's memory of the primary across passes (``reconcile --watch``): with
    it, a failing primary is reported and, with ``auto_failover``, failed over. Without ``wait``,
    one pass — plus the immediately following passes of a failover in flight (fence → promote →
    record), so the new primary takes writes without waiting for the next watch interval."""
    ref = spec.ref
    bucket = ctx.store.resolve(spec.scope, spec.name)
    seeds = seed_actions(spec, bucket)
    seeded = [f"{a.describe()}" for a in seeds]
    if bucket.get(PASSWORD_KEY) and any(PASSWORD_KEY in (a.kv or {}) for a in seeds) \
            and ctx.store.resource(spec.scope, spec.name) is not None:
        raise SpecError([Problem(str(ref), "password", (
            "differs from the cluster's current password (editing it here would not change the role); "
            f"remove `password` from the block, and rotate with `voodu-postgres new-password {ref}`"))])
    if dry_run:
        simulated = dict(bucket)
        for action in seeds:
            simulated.update(action.kv or {})
        bucket = simulated
    else:
        apply_actions(ctx.store, seeds)
        if body is not None:
            ctx.store.record_resource(spec.scope, spec.name, body, ctx.network)
        bucket = ctx.store.resolve(spec.scope, spec.name)

    assets_dir = assets_dir_for(ctx.home, spec)
    state_dir = state_dir_for(ctx.home, spec)

    def current_desired() -> Desired:
        # the bucket is re-read on every pass: while a long apply waits, a promote may set its
        # switchover marker (PG_SWITCHOVER_TO) or move the primary (PG_PRIMARY_ORDINAL)
        source = bucket if dry_run else ctx.store.resolve(spec.scope, spec.name)
        return derive(spec, source, assets_dir=assets_dir, network=ctx.network, extra_labels=ctx.extra_labels,
                      state_dir=state_dir)

    desired = current_desired()
    if not dry_run:
        write_state(state_dir, {"primary_ordinal": str(desired.target_primary)})
    deadline = ctx.clock() + timeout
    previous: dict[int, PodRole] = {}
    outcomes: list[Outcome] = []
    passes = 0
    urgent = 0

    def write_records(kv: Mapping[str, str]) -> None:
        ctx.store.patch(spec.scope, spec.name, kv)
        if PRIMARY_ORDINAL_KEY in kv:
            write_state(state_dir, {"primary_ordinal": kv[PRIMARY_ORDINAL_KEY]})

    records = Records(read=lambda: ctx.store.resolve(spec.scope, spec.name), write=write_records,
                      replication_user=spec.replication_user, extra_labels=ctx.extra_labels, wall=ctx.wall)
    while True:
        passes += 1
        if passes > 1:
            desired = current_desired()
        observed = snapshot(ctx.runtime, desired, assets_dir)
        if health is not None:
            observed = replace(observed, health=health.observe(
                desired, observed, now=ctx.clock(), wall=ctx.wall(), last_failover_at=desired.last_failover_at))
        roles = {o: r for o, r in roles_of(desired, observed).items() if pod_of(desired, observed, o).exists}
        for ordinal, role in roles.items():
            before = previous.get(ordinal)
            if before is not None and before != role:
                progress(f"{desired.app_name(ordinal)}: {before.value} → {role.value}")
        previous = roles
        current = plan(desired, observed)
        if dry_run:
            return Report(str(ref), current.message, current.converged, current, seeded, [], passes)
        if current.steps:
            results = execute(current, desired, ctx.runtime, assets_dir=assets_dir,
                              retrying=lambda: default_retrying(sleep=ctx.sleep), records=records)
            for outcome in results:
                mark = "✓" if outcome.ok else "✗"
                progress(f"{mark} {outcome.step.kind.value}"
                         f"{'' if outcome.step.ordinal is None else ' ' + desired.app_name(outcome.step.ordinal)}"
                         f" — {outcome.detail}")
            outcomes.extend(results)
            failed = [o for o in results if not o.ok]
            if health is not None and any(o.ok and o.step.ordinal == desired.target_primary
                                          and o.step.kind in _BOOTS_PRIMARY for o in results):
                health.restarted(desired, ctx.clock())
            in_flight = not failed and any(o.step.kind in _FAILOVER_CHAIN for o in results)
            if in_flight and urgent < _MAX_URGENT_PASSES:
                urgent += 1
                continue
            if not wait or any(not o.retryable for o in failed):
                # a permanent failure (missing image, bad config…) won't fix itself: stop and say so
                message = f"{ref}: {failed[0].step}: {failed[0].detail}" if failed else current.message
                return Report(str(ref), message, False, current, seeded, outcomes, passes)
            if ctx.clock() > deadline:
                raise _timeout(desired, current, ctx, timeout)
            if failed:
                ctx.sleep(1.0)  # transient Docker trouble: back off before the next pass
            continue
        if current.converged or not wait:
            return Report(str(ref), current.message, current.converged, current, seeded, outcomes, passes)
        if current.blocked and not current.waiting:
            return Report(str(ref), current.message, False, current, seeded, outcomes, passes)
        if ctx.clock() > deadline:
            raise _timeout(desired, current, ctx, timeout)
        ctx.sleep(0.25)


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
