"""The reconciler's vocabulary: observed state, desired state, plans, outcomes, reports.

All frozen dataclasses. Observation is rebuilt from scratch on every pass (nothing here is
remembered truth — except ``Observed.health``, the watcher's count of how long the primary has
been failing), and the planner is a pure function from (Desired, Observed) to a Plan.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from voodu_postgres.domain.intents import SwitchoverRequest
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.podspec import PodSpec
from voodu_postgres.domain.rendered import Rendered

# ---------------------------------------------------------------------------------------------
# observed


@dataclass(frozen=True)
class Replica:
    """One row of the primary's ``pg_stat_replication``."""

    application_name: str
    state: str
    lag_bytes: int | None


@dataclass(frozen=True)
class PendingSetting:
    """A parameter changed in the conf files that only takes effect after a restart."""

    name: str
    current: str  # the running value (pg_settings.setting)
    next: str | None  # the value in the files now (pg_file_settings), None when removed


@dataclass(frozen=True)
class PgStatus:
    """What Postgres itself reports about one pod (None fields: unknown)."""

    in_recovery: bool
    timeline: int | None = None
    lsn: str | None = None
    pending: tuple[PendingSetting, ...] = ()
    receiver_status: str | None = None  # standby: pg_stat_wal_receiver.status ("streaming")
    receiver_host: str | None = None  # standby: the host it streams from
    conninfo_host: str | None = None  # standby: the host its primary_conninfo names (streaming or not)
    replicas: tuple[Replica, ...] = ()  # primary: pg_stat_replication
    sync_auto: str | None = None  # synchronous_standby_names as set in postgresql.auto.conf
    boot_overrides: tuple[str, ...] = ()  # settings the entrypoint raised for this boot only
    received_lsn: str | None = None  # standby: pg_last_wal_receive_lsn() (received and flushed)

    @property
    def pending_restart(self) -> int:
        return len(self.pending)


#: Docker states in which a container runs nothing and will not run again by itself
STOPPED_STATES = frozenset({"exited", "created", "dead"})


def lsn_value(text: str | None) -> int | None:
    """``"0/3000148"`` → its byte position; None for None or text that is not an LSN."""
    if not text:
        return None
    high, sep, low = text.strip().partition("/")
    try:
        return (int(high, 16) << 32) + int(low, 16) if sep else None
    except ValueError:
        return None


def lsn_text(value: int | None) -> str:
    return "an unknown point" if value is None else f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class PrimaryHealth:
    """What a watcher has seen of the primary *across* passes (``reconcile --watch``); one pass
    alone cannot tell a failure from a slow answer. The default is "nothing known": no failover."""

    failing_for: float = 0.0  # seconds the primary has been failing without a break (0: healthy)
    problem: str | None = None  # what is wrong with it now, for people
    failed_probes: int = 0  # consecutive observations that found it failing
    last_lsn: int | None = None  # its pg_current_wal_lsn() at the last healthy observation
    sync_in_force: bool | None = None  # its synchronous_standby_names matched the spec then (None: unknown)
    cooldown_left: float = 0.0  # seconds before another automatic failover is allowed


@dataclass(frozen=True)
class FailoverPolicy:
    """``auto_failover = true``: after ``timeout`` seconds of a failing primary, fence it and promote
    the best standby if it is at most ``max_lag`` bytes behind (async) / was synchronous."""

    timeout: float
    max_lag: int


@dataclass(frozen=True)
class PodStatus:
    """One ordinal as observed: its container (if any) and, when reachable, its Postgres."""

    ordinal: int
    container: str
    exists: bool = False
    state: str = "absent"  # docker state: running, exited, restarting, created, absent
    health: str | None = None  # docker healthcheck status
    spec_hash: str | None = None  # voodu.manifest_hash label
    restart_count: int = 0
    pg: PgStatus | None = None  # None: not reachable over SQL
    error: str | None = None  # why pg is None, when known
    guard_tripped: bool = False  # the entrypoint's split-brain guard refused to start it
    volume_exists: bool = False
    port: int | None = None  # the port the container was created with
    published: str | None = None  # where the host reaches it ("127.0.0.1:49153"), when published
    on_network: bool | None = None  # attached to the cluster network (None: not known)
    started_at: float | None = None  # epoch seconds Docker last started the container (None: not known)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def stopped(self) -> bool:
        """The container exists and no process of it can run (a paused or restarting one can)."""
        return self.exists and self.state in STOPPED_STATES

    @property
    def reachable(self) -> bool:
        return self.pg is not None

    @property
    def writable(self) -> bool:
        return self.pg is not None and not self.pg.in_recovery


@dataclass(frozen=True)
class Observed:
    ref: Ref
    pods: tuple[PodStatus, ...]  # every ordinal that has a container or a data volume, ascending
    network_exists: bool = True
    asset_digests: dict[str, str] = field(default_factory=dict)  # asset files on disk now
    health: PrimaryHealth = field(default_factory=PrimaryHealth)  # the watcher's memory of the primary

    def pod(self, ordinal: int) -> PodStatus | None:
        return next((p for p in self.pods if p.ordinal == ordinal), None)

    @property
    def writable(self) -> list[PodStatus]:
        return [p for p in self.pods if p.writable]


# ---------------------------------------------------------------------------------------------
# desired


@dataclass(frozen=True)
class Desired:
    """What should exist for one resource, derived from spec + bucket."""

    ref: Ref
    replicas: int
    target_primary: int
    port: int
    user: str
    database: str
    pods: tuple[PodSpec, ...]  # ordinals 0..replicas-1
    files: tuple[Rendered, ...]
    overrides_sha: str
    network: str
    statefulset: dict[str, Any] = field(default_factory=dict, compare=False)
    switchover: int | None = None  # a promote to this ordinal was recorded and has not finished
    switchover_request: SwitchoverRequest | None = None  # how that promote was asked (PG_SWITCHOVER_REQUEST)
    rejoin: frozenset[int] = frozenset()  # former primaries recorded as needing a rejoin (PG_REJOIN)
    sync_names: str | None = None  # synchronous_standby_names wanted in postgresql.auto.conf
    auto_failover: FailoverPolicy | None = None  # None: a failing primary is reported, never replaced
    last_failover_at: float | None = None  # epoch seconds of the last automatic failover (PG_LAST_FAILOVER)
    failover_fencing: bool = False  # an automatic failover of this primary is recorded, not yet promoted
    #: the superuser's password, then the next one while a rotation is pending (never printed)
    passwords: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def pod(self, ordinal: int) -> PodSpec:
        return self.pods[ordinal]

    def host(self, ordinal: int) -> str:
        return self.ref.pod_host(ordinal)

    def app_name(self, ordinal: int) -> str:
        """The application_name a standby uses in primary_conninfo (see the entrypoint)."""
        return f"{self.ref.name}-{ordinal}"


# ---------------------------------------------------------------------------------------------
# plans and results


class StepKind(StrEnum):
    ENSURE_NETWORK = "ensure network"
    WRITE_ASSETS = "write assets"
    CREATE_POD = "create pod"
    START_POD = "start pod"
    RECREATE_POD = "recreate pod"
    RESTART_POD = "restart pod"
    RELOAD_CONFIG = "reload config"
    REMOVE_POD = "remove pod"
    SET_SYNC = "set synchronous standbys"
    # finishing what an interrupted promote or rejoin left (the intents recorded in the bucket)
    PROMOTE = "promote"  # pg_promote() the switchover target: the old primary is fenced
    RECORD_PRIMARY = "record primary"  # the switchover target accepts writes: make it the primary
    CLEAR_SWITCHOVER = "abandon switchover"  # the old primary still serves: nothing was promoted
    FENCE = "fence"  # stop a former primary that still accepts writes
    REJOIN = "rejoin"  # pg_rewind (or re-clone) a former primary onto the current one
    CLEAR_REJOIN = "rejoined"  # a former primary streams again: forget the intent
    REPOINT = "repoint"  # a standby's primary_conninfo names another host: rewrite and reload
    FAILOVER = "failover"  # record the intent to promote this standby, then fence the failed primary


#: Steps that change no pod's role: the cluster's network, its files on disk, a reload of every
#: running pod. Every other kind moves a pod through the pod state machine and must carry the move.
CLUSTER_KINDS = frozenset({StepKind.ENSURE_NETWORK, StepKind.WRITE_ASSETS, StepKind.RELOAD_CONFIG})


class Move(Protocol):
    """One state-machine transition a step performs (``states.pod.PodMove``): the machine in the
    role the planner observed, the trigger, and the facts its guards read. The executor asks
    ``allowed()`` before the effect and calls ``fire()`` only after the effect succeeded."""

    @property
    def trigger(self) -> str: ...

    def allowed(self) -> bool: ...

    def fire(self) -> str:
        """Perform the transition; the one-line ``db-1: standby → promoting (promote)``."""
        ...


@dataclass(frozen=True)
class Step:
    """One effect to perform, with the reason a human will read in the plan, and the machine
    transitions (``moves``) that record it once it succeeded."""

    kind: StepKind
    ordinal: int | None
    reason: str
    data: Mapping[str, Any] = field(default_factory=dict, compare=False)  # what the executor records
    moves: tuple[Move, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        target = f" {self.ordinal}" if self.ordinal is not None else ""
        return f"{self.kind.value}{target}: {self.reason}"


@dataclass(frozen=True)
class Wait:
    """Something the plan waits for, and the pod it waits on (None: the whole resource)."""

    ordinal: int | None
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Plan:
    """Steps to run now, what we are waiting for, and problems only a human can fix."""

    ref: Ref
    steps: tuple[Step, ...] = ()
    waiting: tuple[Wait, ...] = ()  # e.g. db-0 to accept connections
    blocked: tuple[str, ...] = ()  # refusals and split-brain reports (never auto-fixed)
    message: str = ""

    @property
    def converged(self) -> bool:
        """Nothing to do, nothing to wait for, and nothing blocked on a human."""
        return not self.steps and not self.waiting and not self.blocked


@dataclass(frozen=True)
class Outcome:
    step: Step
    ok: bool
    detail: str = ""
    retryable: bool = False  # a failure worth another pass (Docker 5xx, timeouts)
    moved: tuple[str, ...] = ()  # the transitions fired once the effect succeeded
