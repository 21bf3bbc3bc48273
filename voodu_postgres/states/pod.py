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
from enum import StrEnum
from typing import Any

from transitions import Machine

from voodu_postgres.reconciler.model import PodStatus
from voodu_postgres.states import Model, make_machine


class PodRole(StrEnum):
    DOWN = "down"  # no container, or the container is not running
    PENDING = "pending"  # the primary's container runs, Postgres not serving yet (initdb, recovery)
    BOOTSTRAPPING = "bootstrapping"  # a standby's container runs: cloning or starting recovery
    STANDBY = "standby"  # serving, in recovery
    PRIMARY = "primary"  # serving, writable
    PROMOTING = "promoting"  # pg_promote issued, still in recovery
    FENCED = "fenced"  # an old primary stopped so it can take no more writes
    REJOINING = "rejoining"  # being rewound / re-cloned to follow the current primary
    SPLIT_BRAIN = "split-brain"  # a second writable primary, or a standby whose data was a primary


@dataclass(frozen=True)
class PodView:
    """A pod as a guard sees it: its own status plus the cluster facts decisions depend on."""

    pod: PodStatus
    target_primary: int
    primary_ready: bool  # the target primary serves writes and accepts replication connections
    writable_count: int  # pods out of recovery right now
    standbys_streaming: bool = True  # every other desired pod streams from the target primary


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


def not_guarded(view: PodView) -> bool:
    """The entrypoint's split-brain guard refused this pod's data; starting it again is pointless."""
    return not view.pod.guard_tripped


POD_TRANSITIONS: list[dict[str, Any]] = [
    # cold start and drift repair
    {"trigger": "start", "source": PodRole.DOWN, "dest": PodRole.PENDING,
     "conditions": [is_target_primary, no_other_writer]},
    {"trigger": "start", "source": PodRole.DOWN, "dest": PodRole.BOOTSTRAPPING,
     "conditions": [primary_ready, not_guarded], "unless": [is_target_primary]},
    {"trigger": "serve", "source": PodRole.PENDING, "dest": PodRole.PRIMARY},
    {"trigger": "serve", "source": PodRole.BOOTSTRAPPING, "dest": PodRole.STANDBY},
    # rolling changes: standbys first, the primary last
    {"trigger": "roll", "source": PodRole.STANDBY, "dest": PodRole.BOOTSTRAPPING,
     "conditions": [primary_ready], "unless": [is_target_primary]},
    {"trigger": "roll", "source": PodRole.PRIMARY, "dest": PodRole.PENDING,
     "conditions": [is_target_primary, others_streaming]},
    # scale-down never removes the primary
    {"trigger": "remove", "source": [PodRole.STANDBY, PodRole.BOOTSTRAPPING, PodRole.DOWN, PodRole.SPLIT_BRAIN,
                                     PodRole.REJOINING],
     "dest": PodRole.DOWN, "unless": [is_target_primary]},
    # failover (promote / rejoin)
    {"trigger": "promote", "source": PodRole.STANDBY, "dest": PodRole.PROMOTING, "unless": [is_target_primary]},
    {"trigger": "promoted", "source": PodRole.PROMOTING, "dest": PodRole.PRIMARY},
    {"trigger": "fence", "source": PodRole.PRIMARY, "dest": PodRole.FENCED},
    {"trigger": "rejoin", "source": [PodRole.FENCED, PodRole.SPLIT_BRAIN, PodRole.DOWN, PodRole.STANDBY],
     "dest": PodRole.REJOINING, "conditions": [primary_ready], "unless": [is_target_primary]},
    {"trigger": "rejoined", "source": PodRole.REJOINING, "dest": PodRole.STANDBY},
    # observation of a second writer
    {"trigger": "diverge", "source": [PodRole.PRIMARY, PodRole.STANDBY, PodRole.DOWN, PodRole.PENDING],
     "dest": PodRole.SPLIT_BRAIN},
]


class PodMachine(Model):
    """One pod's machine, put in its observed role."""

    def __init__(self, role: PodRole) -> None:
        self.machine: Machine = make_machine(self, PodRole, POD_TRANSITIONS, role)

    @property
    def role(self) -> PodRole:
        return PodRole(self.state)


def classify(pod: PodStatus, *, target_primary: int, writable_count: int) -> PodRole:
    """The role a pod is in right now, from observation alone."""
    if pod.guard_tripped and not pod.reachable:
        return PodRole.SPLIT_BRAIN
    if not pod.exists or not pod.running:
        return PodRole.DOWN
    if pod.pg is None:
        return PodRole.PENDING if pod.ordinal == target_primary else PodRole.BOOTSTRAPPING
    if pod.pg.in_recovery:
        return PodRole.STANDBY
    # writable: fine when it is the only writer and the designated primary
    if writable_count > 1 or pod.ordinal != target_primary:
        return PodRole.SPLIT_BRAIN
    return PodRole.PRIMARY
