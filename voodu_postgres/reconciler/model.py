"""The reconciler's vocabulary: observed state, desired state, plans, outcomes, reports.

All frozen dataclasses. Observation is rebuilt from scratch on every pass (nothing here is
remembered truth), and the planner is a pure function from (Desired, Observed) to a Plan.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from voodu_postgres.reconciler.naming import Ref
from voodu_postgres.reconciler.podspec import PodSpec
from voodu_postgres.render import Rendered

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

    @property
    def pending_restart(self) -> int:
        return len(self.pending)


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

    @property
    def running(self) -> bool:
        return self.state == "running"

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
    rejoin: frozenset[int] = frozenset()  # former primaries recorded as needing a rejoin (PG_REJOIN)
    sync_names: str | None = None  # synchronous_standby_names wanted in postgresql.auto.conf

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


@dataclass(frozen=True)
class Step:
    """One effect to perform, with the reason a human will read in the plan."""

    kind: StepKind
    ordinal: int | None
    reason: str

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
