"""Is the primary failing, and for how long? The watcher's memory across passes. Pure.

One observation cannot tell a dead primary from a slow answer, so ``reconcile --watch`` keeps a
:class:`HealthTracker` per process: the first pass that sees the primary failing starts a clock,
any pass that sees it healthy stops it. The planner gets the result as ``Observed.health`` and
decides (``plan._consider_failover``); nothing here acts.

What counts as failing (:func:`primary_problem`): its container exited, restarting, paused (a hung
server — ``docker pause`` freezes every process), Postgres on it not answering a query within the
connect timeout (a server that replies with an error — ``too many clients`` — is alive, as
``pg_isready`` judges), or the container detached from the cluster network (it may still answer
over loopback, but no standby or app reaches it). A primary the reconciler or Docker just
(re)started is given :data:`OWN_RESTART_GRACE` seconds to boot before "not answering" counts. A
failure counts after :data:`MIN_FAILED_PROBES` observations in a row, no two further apart than
:data:`MAX_PROBE_GAP`.

The tracker also remembers the primary's WAL position at its last healthy observation: after it
dies, that is the best known lower bound of what it had written, used to say how much an
asynchronous failover may lose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voodu_postgres.domain.model import Desired, Observed, PrimaryHealth, lsn_value

#: seconds a primary (re)started by the reconciler, or by Docker, may take to answer
OWN_RESTART_GRACE = 60.0
#: seconds after an automatic failover during which another one is not started (flapping)
FAILOVER_COOLDOWN = 300.0
#: a failure counts only when seen this many times in a row …
MIN_FAILED_PROBES = 3
#: … by observations no further apart than this (a probe waits at most 5 s to connect): after a
#: longer gap — a pass skipped for a busy lease, a long step — the count starts again
MAX_PROBE_GAP = 8.0
#: Postgres' "cannot connect now" (57P03): the server answers, but does not serve
_NOT_SERVING = ("the database system is starting up", "the database system is shutting down",
                "the database system is not yet accepting connections", "the database system is in recovery mode")


def primary_problem(desired: Desired, observed: Observed) -> str | None:
    """What is wrong with the designated primary right now, or None when nothing is."""
    pod = observed.pod(desired.target_primary)
    if pod is None or not pod.exists:
        if (pod is None or not pod.volume_exists) and any(
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
    if pod.running and pod.pg is None and not server_replied(pod.error):
        return f"Postgres does not answer ({pod.error or 'no reply'})"
    return None


def server_replied(error: str | None) -> bool:
    """Did Postgres itself answer with an error (``too many clients``, a bad password…)? Then it
    is alive — as ``pg_isready`` judges — unless the answer is that it does not serve yet/any more."""
    if not error or ("FATAL:" not in error and "ERROR:" not in error):
        return False
    return not any(phrase in error for phrase in _NOT_SERVING)


@dataclass
class _Memory:
    ordinal: int
    failing_since: float | None = None
    failed_probes: int = 0
    last_seen: float | None = None
    last_lsn: int | None = None
    sync_in_force: bool | None = None
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
        """The reconciler started, created or restarted the primary itself at ``now`` (or tried to)."""
        mem = self._of(desired)
        mem.grace_until = now + OWN_RESTART_GRACE
        mem.failing_since, mem.failed_probes = None, 0

    def forget(self, ref: str) -> None:
        """A pass of this cluster was skipped: what was counted no longer describes a run of probes."""
        self.memory.pop(ref, None)

    def observe(self, desired: Desired, observed: Observed, *, now: float, wall: float,
                last_failover_at: float | None = None) -> PrimaryHealth:
        """Fold one observation in; what the planner should know. ``now`` is monotonic seconds,
        ``wall`` and ``last_failover_at`` are epoch seconds (the failover record is in the bucket)."""
        mem = self._of(desired)
        if mem.last_seen is not None and now - mem.last_seen > MAX_PROBE_GAP:
            mem.failing_since, mem.failed_probes = None, 0  # not a continuous run of failures
        mem.last_seen = now
        problem = primary_problem(desired, observed)
        pod = observed.pod(desired.target_primary)
        cooldown = _cooldown(wall, last_failover_at)
        booting = problem is not None and pod is not None and pod.running and pod.pg is None \
            and pod.on_network is not False and (
                now < mem.grace_until  # we started it
                or (pod.started_at is not None and wall - pod.started_at < OWN_RESTART_GRACE))  # Docker did
        if problem is None or booting:
            mem.failing_since, mem.failed_probes = None, 0
            if pod is not None and pod.pg is not None and not pod.pg.in_recovery:
                mem.last_lsn = lsn_value(pod.pg.lsn) or mem.last_lsn
                # what the primary really ran with, not what the spec asks for
                mem.sync_in_force = desired.sync_names is not None and pod.pg.sync_auto == desired.sync_names
            return PrimaryHealth(last_lsn=mem.last_lsn, sync_in_force=mem.sync_in_force, cooldown_left=cooldown)
        if mem.failing_since is None:
            mem.failing_since = now
        mem.failed_probes += 1
        return PrimaryHealth(failing_for=now - mem.failing_since, problem=problem, failed_probes=mem.failed_probes,
                             last_lsn=mem.last_lsn, sync_in_force=mem.sync_in_force, cooldown_left=cooldown)


def _cooldown(wall: float, last_failover_at: float | None) -> float:
    if last_failover_at is None:
        return 0.0
    return max(0.0, FAILOVER_COOLDOWN - (wall - last_failover_at))
