"""The roles a pod can hold (the pod machine's states), named once for every layer. Pure."""

from __future__ import annotations

from enum import StrEnum


class PodRole(StrEnum):
    DOWN = "down"  # no container, or the container is not running
    PENDING = "pending"  # the primary's container runs, Postgres not serving yet (initdb, recovery)
    BOOTSTRAPPING = "bootstrapping"  # a standby's container runs: cloning or starting recovery
    STANDBY = "standby"  # serving, in recovery
    PRIMARY = "primary"  # serving, writable
    PROMOTING = "promoting"  # the target of a recorded switchover (PG_SWITCHOVER_TO), running
    FENCED = "fenced"  # stopped so it takes no writes: a former primary awaiting rejoin (PG_REJOIN), or
    #                    the recorded primary stopped by an unfinished switchover
    REJOINING = "rejoining"  # a former primary (PG_REJOIN) running again, not yet streaming
    SPLIT_BRAIN = "split-brain"  # a second writable primary, or a standby whose data was a primary
