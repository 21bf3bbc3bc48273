"""What a backup is, derived from what can be observed (capture container state, dump file,
sidecar): the backup states and their classification. The backup machine in ``states`` decides
which moves are legal from them. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: How the refusal texts name commands; standalone passes ``"voodu-postgres "``.
PLUGIN_CLI = "vd pg:"


#: Docker states in which the capture process may still write (Go counts only running/created; a
#: paused or restarting container still holds the dump open, so it is not finished either).
ALIVE_CONTAINER_STATES = frozenset({"created", "running", "restarting", "paused"})


class BackupState(StrEnum):
    RUNNING = "running"  # the capture container is alive (or, under Voodu, its job is queued)
    COMPLETE = "complete"  # the final dump exists (it appears only by rename once every stage succeeded)
    FAILED = "failed"  # the capture ended without a dump: non-zero exit, or died leaving a .partial
    CANCELLED = "cancelled"  # a cancel was recorded and the capture ended without a dump
    DELETED = "deleted"  # nothing left to list: deleted, pruned, or an exited-0 container whose file is gone


@dataclass(frozen=True)
class BackupObservation:
    """What one backup looks like right now (every field observed, nothing remembered)."""

    container_state: str | None = None  # Docker's State of the capture container; None when there is none
    exit_code: int | None = None  # from Docker's Status (``Exited (N)``); None when not exited / unknown
    dump_exists: bool = False  # the final ``bNNN-….dump``
    partial_exists: bool = False  # the temporary ``bNNN-….dump.partial`` pg_dump writes into
    recorded: str | None = None  # the metadata sidecar's ``status`` (cancel and a failed capture write it)

    @property
    def alive(self) -> bool:
        return self.container_state in ALIVE_CONTAINER_STATES

    @property
    def exited_badly(self) -> bool:
        return bool(self.exit_code) or self.container_state == "dead"


def classify(obs: BackupObservation) -> BackupState:
    """The state of a backup from one observation. Order matters, and each rule says why."""
    # A live process may still be writing, whatever the files say (Go: running overrides complete).
    if obs.alive:
        return BackupState.RUNNING
    # The final name is the commit point: the capture renames the synced dump only after every stage
    # succeeded, so a file under it is whole — even if a late cancel then stopped the container.
    if obs.dump_exists:
        return BackupState.COMPLETE
    if obs.recorded == BackupState.CANCELLED:
        return BackupState.CANCELLED
    # A non-zero exit, or a capture that died (host reboot, SIGKILL, removed container) and left
    # its temporary file behind: either way no dump exists, so it must not list as complete.
    if obs.exited_badly or obs.partial_exists or obs.recorded == BackupState.FAILED:
        return BackupState.FAILED
    # Under Voodu a capture is recorded running when its job is dispatched: until the controller
    # creates the job's container it is queued, and must list (and be cancellable) as running.
    if obs.recorded == BackupState.RUNNING and obs.container_state is None:
        return BackupState.RUNNING
    # An exited-0 container whose file is gone (deleted or pruned), or nothing at all (Go: no row).
    return BackupState.DELETED
