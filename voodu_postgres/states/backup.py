"""The backup state machine: what a backup is right now, and what a command may do with it.

A backup's state is never stored. :func:`classify` derives it on every read from what is
observed — the capture container (its Docker state and exit code), the files in the host backups
directory (the final ``.dump``, the temporary ``.partial``) and the outcome a cancel or a failed
capture recorded in the metadata sidecar — so a stale record can never make a half-written dump
look complete. ``BACKUP_TRANSITIONS`` is the whole policy as one table; commands ask it
(:func:`may`, :func:`refusal`, :func:`ensure`) before acting: restore, download and verify need a
complete backup, a running backup cannot be deleted (cancel it), and only a running one can be
cancelled.

Verification is not a state: a verified backup is still ``complete`` (verify may run again), and
the verdict lives in the metadata's verification record, which the listing shows beside the state.

Pure: must not import docker, psycopg, subprocess or sqlite3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transitions import Machine

from voodu_postgres.domain.backup_status import PLUGIN_CLI, BackupState
from voodu_postgres.domain.errors import CommandError
from voodu_postgres.states import Model, make_machine

#: Every trigger of the table, in the order the commands meet them.
TRIGGERS = ("finish", "fail", "cancel", "restore", "download", "verify", "delete")






@dataclass(frozen=True)
class BackupView:
    """A backup as a guard (and a refusal message) sees it."""

    backup: str  # display id, e.g. ``b005``
    ref: str = ""  # the cluster, for the hints in refusal texts
    dump_present: bool = False  # the final dump file exists now
    dump_major: int | None = None  # server major the dump came from (metadata, or the TOC header)
    target_major: int | None = None  # server major of the server it would be restored into
    reason: str | None = None  # why a failed capture failed, when recorded


# -- guards (pure) ----------------------------------------------------------------------------


def dump_landed(view: BackupView) -> bool:
    """A capture finishes only by producing its dump; without one it can only fail."""
    return view.dump_present


def target_not_older(view: BackupView) -> bool:
    """pg_restore cannot read archives (nor replay objects) from a newer major than its server;
    refuse up front instead of failing half-way. Unknown versions are not refused."""
    return view.dump_major is None or view.target_major is None or view.dump_major <= view.target_major


BACKUP_TRANSITIONS: list[dict[str, Any]] = [
    # a capture ends: with its dump (renamed into place), without one, or because it was cancelled
    {"trigger": "finish", "source": BackupState.RUNNING, "dest": BackupState.COMPLETE, "conditions": [dump_landed]},
    {"trigger": "fail", "source": BackupState.RUNNING, "dest": BackupState.FAILED, "unless": [dump_landed]},
    {"trigger": "cancel", "source": BackupState.RUNNING, "dest": BackupState.CANCELLED},
    # reading a backup needs a complete one; restoring (for real, or to verify) needs a server at
    # least as new as the one it was dumped from
    {"trigger": "restore", "source": BackupState.COMPLETE, "dest": BackupState.COMPLETE,
     "conditions": [target_not_older]},
    {"trigger": "download", "source": BackupState.COMPLETE, "dest": BackupState.COMPLETE},
    {"trigger": "verify", "source": BackupState.COMPLETE, "dest": BackupState.COMPLETE,
     "conditions": [target_not_older]},
    # anything finished may go (delete, retention); a running capture must be cancelled first
    {"trigger": "delete", "source": [BackupState.COMPLETE, BackupState.FAILED, BackupState.CANCELLED],
     "dest": BackupState.DELETED},
]


class BackupMachine(Model):
    """One backup's machine, put in its observed state."""

    def __init__(self, state: BackupState) -> None:
        self.machine: Machine = make_machine(self, BackupState, BACKUP_TRANSITIONS, state)

    @property
    def backup_state(self) -> BackupState:
        return BackupState(self.state)


class BackupRefused(CommandError):
    """A command asked for a move the backup's state does not allow."""


@dataclass(frozen=True)
class BackupMove:
    """One transition of one backup's machine, as a command performs it: ``ensure()`` before the
    effect (a one-line refusal), ``fire()`` once the effect succeeded — its result is the state a
    sidecar records. The machine is rebuilt from ``BACKUP_TRANSITIONS`` on every call, so the table
    as it is now decides."""

    state: BackupState
    trigger: str
    view: BackupView
    cli: str = PLUGIN_CLI

    def allowed(self) -> bool:
        return may(self.state, self.trigger, self.view)

    def ensure(self) -> BackupMove:
        ensure(self.state, self.trigger, self.view, cli=self.cli)
        return self

    def fire(self) -> BackupState:
        self.ensure()
        machine = BackupMachine(self.state)
        machine.fire(self.trigger, self.view)
        return machine.backup_state


def may(state: BackupState, trigger: str, view: BackupView) -> bool:
    """Is ``trigger`` legal for a backup in ``state`` (guards included)? Changes nothing."""
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown backup trigger {trigger!r}")
    return BackupMachine(state).may(trigger, view)


_VERB = {"restore": "restored", "download": "downloaded", "verify": "verified"}


def refusal(state: BackupState, trigger: str, view: BackupView, *, cli: str = PLUGIN_CLI) -> str | None:
    """The one-line reason ``trigger`` is refused in ``state``, or None when it is allowed."""
    if may(state, trigger, view):
        return None
    b = view.backup
    if state is BackupState.DELETED:
        return f"backup {b} no longer exists"
    if state in (BackupState.RUNNING, BackupState.COMPLETE) and trigger in _GUARDED[state] \
            and not _has_row(state, trigger):
        # a move the policy has (its guards explain refusals below) is missing from the table
        return f"backup {b} is {state}: the backup machine has no {trigger!r} move from there"
    if trigger == "cancel":
        return f"backup {b} is not running (nothing to cancel)"  # Go's wording
    if trigger in ("finish", "fail"):
        if state is BackupState.RUNNING:
            return (f"backup {b} has not produced its dump yet" if trigger == "finish"
                    else f"backup {b} produced its dump; it cannot fail any more")
        return f"backup {b} already ended ({state})"
    if trigger == "delete":  # only RUNNING refuses it
        return f"backup {b} is still running: cancel it first ({cli}backups:cancel {view.ref} {b})"
    verb = _VERB[trigger]
    if state is BackupState.RUNNING:
        return f"backup {b} is still running; it can be {verb} once it is complete"
    if state is BackupState.FAILED:
        why = f": {view.reason}" if view.reason else ""
        return f"backup {b} failed{why}; only a complete backup can be {verb}"
    if state is BackupState.CANCELLED:
        return f"backup {b} was cancelled; only a complete backup can be {verb}"
    # complete, so a guard refused: the only guard on these is the server version
    return (f"backup {b} was dumped from PostgreSQL {view.dump_major}, newer than the target's "
            f"{view.target_major}: it can only be {verb} into PostgreSQL {view.dump_major} or later")


#: the moves the policy allows from a state (refused only by their guards, if at all)
_GUARDED = {BackupState.RUNNING: frozenset({"finish", "fail", "cancel"}),
            BackupState.COMPLETE: frozenset({"restore", "download", "verify", "delete"})}


def _has_row(state: BackupState, trigger: str) -> bool:
    return any(row["trigger"] == trigger and state in (row["source"] if isinstance(row["source"], list)
                                                       else [row["source"]])
               for row in BACKUP_TRANSITIONS)


def ensure(state: BackupState, trigger: str, view: BackupView, *, cli: str = PLUGIN_CLI) -> None:
    """Raise :class:`BackupRefused` (one line) unless ``trigger`` is legal."""
    reason = refusal(state, trigger, view, cli=cli)
    if reason is not None:
        raise BackupRefused(reason)
