"""Is the primary failing, and for how long? The watcher's memory across passes. Pure.

One observation cannot tell a dead primary from a slow answer, so ``reconcile --watch`` keeps a
:class:`HealthTracker` per process: the first pass that sees the primary failing starts a clock,
any pass that sees it healthy stops it. The planner gets the result as ``Observed.health`` and
decides (``plan._consider_failover``); nothing here acts.

What counts as failing (:func:`primary_problem`): its container exited, restarting, paused (a hung
server — ``docker pause`` freezes every process), Postgres on it not answering a query within the
connect timeout, or the container detached from the cluster network (it may still answer over
loopback, but no standby or app reaches it). A primary the reconciler itself just restarted or
created is given :data:`OWN_RESTART_GRACE` seconds to boot before "not answering" counts.

The tracker also remembers the primary's WAL position at its last healthy observation: after it
dies, that is the best known lower bound of what it had written, used to say how much an
asynchronous failover may lose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voodu_postgres.reconciler.model import Desired, Observed, PrimaryHealth, lsn_value

#: seconds a primary the reconciler started or restarted itself may take to answer
OWN_RESTART_GRACE = 60.0
#: seconds after an automatic failover during which another one is not started (flapping)
FAILOVER_COOLDOWN = 300.0


def primary_problem(desired: Desired, observed: Observed) -> str | None:
    """What is wrong with the designated primary right now, or None when nothing is."""
    pod = observed.pod(desired.target_primary)
    if pod is None or not pod.exists:
        if pod is not None and not pod.volume_exists and any(
                p.volume_exists for p in observed.pods if p.ordinal != desired.target_primary):
            return "its container and its data volume are gone"
        return None  # a missing container is recreated from its volume, not failed over
    if pod.state == "paused":
        return "its container is paused (frozen: it answers nothing)"
    if pod.state == "restarting":
        return f"its container keeps restarting (restart count {pod.restart_count})"
    if pod.stopped:
        return f"its container is {pod.state}"
    if pod.on_network is False:
        return f"it is detached from the cluster network {desired.network}"
    if pod.running and pod.pg is None:
        return f"Postgres does not answer ({pod.error or 'no reply'})"
    return None


@dataclass
class _Memory:
    ordinal: int
    failing_since: float | None = None
    last_lsn: int | None = None
    grace_until: float = 0.0


@dataclass
class HealthTracker:
    """Per-cluster memory of the primary for one watcher process (keyed by ``scope/name``)."""

    memory: dict[str, _Memory] = field(default_factory=dict)

    def _of(self, desired: Desired) -> _Memory:
        key = str(desired.ref)
        mem = self.memory.get(key)
        if mem is None or mem.ordinal != desired.target_primary:
            # a new primary (a failover or promote happened): nothing known about it yet
            mem = self.memory[key] = _Memory(desired.target_primary)
        return mem

    def restarted(self, desired: Desired, now: float) -> None:
        """The reconciler started, created or restarted the primary itself at ``now``."""
        mem = self._of(desired)
        mem.grace_until = now + OWN_RESTART_GRACE
        mem.failing_since = None

    def observe(self, desired: Desired, observed: Observed, *, now: float, wall: float,
                last_failover_at: float | None = None) -> PrimaryHealth:
        """Fold one observation in; what the planner should know. ``now`` is monotonic seconds,
        ``wall`` and ``last_failover_at`` are epoch seconds (the failover record is in the bucket)."""
        mem = self._of(desired)
        problem = primary_problem(desired, observed)
        pod = observed.pod(desired.target_primary)
        booting = problem is not None and pod is not None and pod.running and pod.pg is None \
            and pod.on_network is not False
        if problem is None or (booting and now < mem.grace_until):
            mem.failing_since = None
            if pod is not None and pod.pg is not None and not pod.pg.in_recovery:
                mem.last_lsn = lsn_value(pod.pg.lsn) or mem.last_lsn
            return PrimaryHealth(last_lsn=mem.last_lsn, cooldown_left=_cooldown(wall, last_failover_at))
        if mem.failing_since is None:
            mem.failing_since = now
        return PrimaryHealth(failing_for=now - mem.failing_since, problem=problem, last_lsn=mem.last_lsn,
                             cooldown_left=_cooldown(wall, last_failover_at))


def _cooldown(wall: float, last_failover_at: float | None) -> float:
    if last_failover_at is None:
        return 0.0
    return max(0.0, FAILOVER_COOLDOWN - (wall - last_failover_at))
