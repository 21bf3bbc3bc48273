"""The pod-role state machine: what each ordinal is, and which moves are legal from there.

``classify`` rebuilds a pod's role from one observation (nothing is remembered between passes).
``POD_TRANSITIONS`` is the whole policy as one table: read it top to bottom as the spec. Guards
are pure functions of a :class:`PodView` — the pod plus the cluster facts a decision needs — and
they are what stops the planner from, say, cloning a standby before the primary serves, removing
the current primary on scale-down, or starting a second writable primary.

Pure: must not import docker, psycopg or subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transitions import Machine

from voodu_postgres.domain.model import PodStatus
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.states import Model, make_machine


@dataclass(frozen=True)
class PodView:
    """A pod as a guard sees it: its own status plus the cluster facts decisions depend on."""

    pod: PodStatus
    target_primary: int
    primary_ready: bool  # the target primary serves writes and accepts replication connections
    writable_count: int  # pods out of recovery right now
    standbys_streaming: bool  # every other desired pod streams from the target primary
    switchover: int | None = None  # the recorded target of an unfinished switchover
    rejoin: frozenset[int] = frozenset()  # former primaries recorded as needing a rejoin
    streams: bool = False  # this pod streams from the target primary
    lowers_minimum: bool = False  # this (primary) pod has a pending decrease of a standby-minimum setting
    port_moves: bool = False  # the cluster's port changes: every pod moves at once
    replicas: int | None = None  # the desired pod count (None: unknown, nothing is surplus)
    primary_stopped: bool = False  # the target primary's container is stopped or gone (it can write nothing)
    failover_due: bool = False  # auto_failover: the primary has failed for failover_timeout, a standby qualifies


# -- guards (pure) ----------------------------------------------------------------------------


def is_target_primary(view: PodView) -> bool:
    return view.pod.ordinal == view.target_primary


def primary_ready(view: PodView) -> bool:
    return view.primary_ready


def no_other_writer(view: PodView) -> bool:
    """Starting a primary is only safe when nothing else accepts writes."""
    return view.writable_count == 0


def others_streaming(view: PodView) -> bool:
    """The primary rolls last: only once every standby is back and streaming."""
    return view.standbys_streaming


def lowers_minimum(view: PodView) -> bool:
    """A decrease of a setting standbys must match restarts the primary *first* (else deadlock)."""
    return view.lowers_minimum


def port_moves(view: PodView) -> bool:
    """A new port: pods on the old and the new port cannot reach each other, so all move at once."""
    return view.port_moves


def not_guarded(view: PodView) -> bool:
    """The entrypoint's split-brain guard refused this pod's data; starting it again is pointless."""
    return not view.pod.guard_tripped


def switchover_elsewhere(view: PodView) -> bool:
    """A switchover to another pod is recorded: this (current) primary may be fenced."""
    return view.switchover is not None and view.switchover != view.pod.ordinal


def marked_for_rejoin(view: PodView) -> bool:
    return view.pod.ordinal in view.rejoin


def is_writable(view: PodView) -> bool:
    return view.pod.writable


def streams(view: PodView) -> bool:
    return view.streams


def detached(view: PodView) -> bool:
    """Running but not on the cluster network (``docker network disconnect``): it can reach nobody."""
    return view.pod.running and view.pod.on_network is False


def primary_stopped(view: PodView) -> bool:
    """Nothing can write on the old primary: promoting another pod cannot make two writers."""
    return view.primary_stopped


def switchover_stale(view: PodView) -> bool:
    """The recorded switchover names this pod, and it already is the primary or no longer exists."""
    ordinal = view.pod.ordinal
    return view.switchover == ordinal and (
        ordinal == view.target_primary or (view.replicas is not None and ordinal >= view.replicas))


def failover_due(view: PodView) -> bool:
    """``auto_failover``: the primary has failed for ``failover_timeout`` and a standby qualifies."""
    return view.failover_due


POD_TRANSITIONS: list[dict[str, Any]] = [
    # cold start and drift repair
    {"trigger": "start", "source": PodRole.DOWN, "dest": PodRole.PENDING,
     "conditions": [is_target_primary, no_other_writer]},
    {"trigger": "start", "source": PodRole.DOWN, "dest": PodRole.BOOTSTRAPPING,
     "conditions": [primary_ready, not_guarded], "unless": [is_target_primary]},
    {"trigger": "serve", "source": PodRole.PENDING, "dest": PodRole.PRIMARY},
    {"trigger": "serve", "source": PodRole.BOOTSTRAPPING, "dest": PodRole.STANDBY},
    # rolling changes (restart or recreate): standbys first, the primary last — or first, when it
    # lowers a setting standbys must match
    {"trigger": "roll", "source": PodRole.STANDBY, "dest": PodRole.BOOTSTRAPPING,
     "conditions": [primary_ready], "unless": [is_target_primary]},
    {"trigger": "roll", "source": PodRole.PRIMARY, "dest": PodRole.PENDING,
     "conditions": [is_target_primary, others_streaming]},
    {"trigger": "roll", "source": PodRole.PRIMARY, "dest": PodRole.PENDING,
     "conditions": [is_target_primary, lowers_minimum]},
    # a port change moves every pod at once
    {"trigger": "move", "source": PodRole.PRIMARY, "dest": PodRole.PENDING,
     "conditions": [is_target_primary, port_moves]},
    {"trigger": "move", "source": [PodRole.STANDBY, PodRole.BOOTSTRAPPING], "dest": PodRole.BOOTSTRAPPING,
     "conditions": [port_moves], "unless": [is_target_primary]},
    # settings applied by reload on the primary (synchronous_standby_names)
    {"trigger": "configure", "source": PodRole.PRIMARY, "dest": PodRole.PRIMARY,
     "conditions": [is_target_primary]},
    # scale-down never removes the primary, nor a pod still accepting writes
    {"trigger": "remove", "source": [PodRole.STANDBY, PodRole.BOOTSTRAPPING, PodRole.DOWN, PodRole.FENCED,
                                     PodRole.REJOINING],
     "dest": PodRole.DOWN, "unless": [is_target_primary]},
    # switchover / failover: the intent (PG_SWITCHOVER_TO) is recorded before anything moves
    {"trigger": "promote", "source": PodRole.STANDBY, "dest": PodRole.PROMOTING, "unless": [is_target_primary]},
    {"trigger": "fence", "source": PodRole.PRIMARY, "dest": PodRole.FENCED, "conditions": [switchover_elsewhere]},
    {"trigger": "fence", "source": PodRole.SPLIT_BRAIN, "dest": PodRole.FENCED, "conditions": [marked_for_rejoin]},
    # a failing old primary that may still come back (booting, hung, paused, restarting) is
    # stopped before its switchover target is promoted: never two writers
    {"trigger": "fence", "source": [PodRole.PENDING, PodRole.DOWN], "dest": PodRole.FENCED,
     "conditions": [is_target_primary, switchover_elsewhere], "unless": [primary_stopped]},
    # automatic failover (auto_failover = true): the failed primary is fenced with the intent
    # recorded, and the chosen standby promoted through the switchover path below
    {"trigger": "fail_over", "source": [PodRole.PRIMARY, PodRole.PENDING, PodRole.DOWN], "dest": PodRole.FENCED,
     "conditions": [is_target_primary, failover_due]},
    # an unfinished switchover: promote again once the old primary is fenced, record the new
    # primary once it accepts writes, or give up while the old one still serves
    {"trigger": "repromote", "source": PodRole.PROMOTING, "dest": PodRole.PROMOTING,
     "conditions": [primary_stopped], "unless": [primary_ready, is_writable]},
    {"trigger": "promoted", "source": PodRole.PROMOTING, "dest": PodRole.PRIMARY, "conditions": [is_writable]},
    {"trigger": "abandon", "source": PodRole.PROMOTING, "dest": PodRole.STANDBY,
     "conditions": [primary_ready], "unless": [is_writable]},
    # the target never came up (or is a former primary still to rejoin) while the old primary
    # serves: the intent is dropped and the target keeps its role
    {"trigger": "abandon", "source": [PodRole.DOWN, PodRole.SPLIT_BRAIN, PodRole.FENCED, PodRole.REJOINING],
     "dest": "=", "conditions": [primary_ready], "unless": [is_writable]},
    # a recorded target that already is the primary, or was scaled away: only the record goes
    {"trigger": "abandon", "source": list(PodRole), "dest": "=", "conditions": [switchover_stale]},
    # a former primary follows the new one (pg_rewind, or a fresh clone)
    {"trigger": "rejoin", "source": [PodRole.FENCED, PodRole.SPLIT_BRAIN, PodRole.DOWN, PodRole.STANDBY],
     "dest": PodRole.REJOINING, "conditions": [primary_ready], "unless": [is_target_primary, is_writable]},
    {"trigger": "rejoined", "source": PodRole.REJOINING, "dest": PodRole.STANDBY, "conditions": [streams]},
    # a standby that follows a pod that is no longer the primary: rewrite primary_conninfo, reload
    {"trigger": "repoint", "source": PodRole.STANDBY, "dest": PodRole.STANDBY, "unless": [is_target_primary]},
    # a standby or former primary detached from the cluster network is recreated on it (same volume)
    {"trigger": "reattach", "source": [PodRole.STANDBY, PodRole.BOOTSTRAPPING, PodRole.REJOINING],
     "dest": PodRole.BOOTSTRAPPING, "conditions": [detached], "unless": [is_target_primary]},
    # observation of a second writer
    {"trigger": "diverge", "source": [PodRole.PRIMARY, PodRole.STANDBY, PodRole.DOWN, PodRole.PENDING],
     "dest": PodRole.SPLIT_BRAIN},
]


#: Transitions the world makes, never a step: a booting pod starts serving, a second writer
#: appears. Observation (:func:`classify`) sees them; every other trigger is performed by a step.
OBSERVED_TRIGGERS = frozenset({"serve", "diverge"})


def settles_to(role: PodRole) -> frozenset[PodRole]:
    """What the next observation may show of a pod the machine just moved to ``role``: that role,
    or where the world's own transitions (``OBSERVED_TRIGGERS``) take it from there."""
    reached = {role}
    for row in POD_TRANSITIONS:
        sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
        if row["trigger"] in OBSERVED_TRIGGERS and role in sources:
            reached.add(role if row["dest"] == "=" else PodRole(row["dest"]))
    return frozenset(reached)


class PodMachine(Model):
    """One pod's machine, put in its observed role."""

    def __init__(self, role: PodRole) -> None:
        self.machine: Machine = make_machine(self, PodRole, POD_TRANSITIONS, role)

    @property
    def role(self) -> PodRole:
        return PodRole(self.state)


@dataclass(frozen=True)
class PodMove:
    """One transition of one pod's machine, as a plan step carries it (``domain.model.Move``).

    The machine is rebuilt from ``POD_TRANSITIONS`` on every call, so the table as it is now
    decides: the executor asks :meth:`allowed` before the effect and :meth:`fire` after it."""

    name: str  # the pod, e.g. ``db-1``, for the line fire() returns
    role: PodRole  # the role the planner observed
    trigger: str
    view: PodView

    def allowed(self) -> bool:
        return PodMachine(self.role).may(self.trigger, self.view)

    def __str__(self) -> str:
        return f"{self.trigger} {self.name} from {self.role.value}"

    @property
    def ordinal(self) -> int:
        return self.view.pod.ordinal

    def dest(self) -> PodRole:
        """The role the move leads to (raises ``MachineError`` when the table does not allow it)."""
        machine = PodMachine(self.role)
        machine.fire(self.trigger, self.view)
        return machine.role

    def fire(self) -> str:
        return f"{self.name}: {self.role.value} → {self.dest().value} ({self.trigger})"


def classify(pod: PodStatus, *, target_primary: int, writable_count: int, switchover: int | None = None,
             rejoin: frozenset[int] = frozenset()) -> PodRole:
    """The role a pod is in right now, from observation plus the recorded in-flight intents
    (``switchover``: the target of an unfinished promote; ``rejoin``: former primaries to rejoin)."""
    ordinal = pod.ordinal
    if ordinal in rejoin and ordinal != target_primary:
        if not pod.running or (pod.guard_tripped and not pod.reachable):
            return PodRole.FENCED if pod.exists else PodRole.DOWN
        return PodRole.SPLIT_BRAIN if pod.writable else PodRole.REJOINING
    if pod.guard_tripped and not pod.reachable:
        return PodRole.SPLIT_BRAIN
    if not pod.exists or not pod.running:
        # only a stopped container is fenced: a paused or restarting one can write again by itself
        if pod.stopped and ordinal == target_primary and switchover is not None and switchover != ordinal:
            return PodRole.FENCED
        return PodRole.DOWN
    if switchover == ordinal and ordinal != target_primary:
        return PodRole.PROMOTING
    if pod.pg is None:
        return PodRole.PENDING if ordinal == target_primary else PodRole.BOOTSTRAPPING
    if pod.pg.in_recovery:
        return PodRole.STANDBY
    # writable: fine when it is the only writer and the designated primary
    if writable_count > 1 or ordinal != target_primary:
        return PodRole.SPLIT_BRAIN
    return PodRole.PRIMARY
