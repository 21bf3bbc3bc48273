"""``new-password``: rotate the superuser's (or, with ``--replication``, the replication role's)
password on the live cluster — role first, then the bucket, then linked apps.

The sequence is built so that, whatever instant it is killed at, some *recorded* password works:

1. a fresh 64-hex password is recorded in the bucket as ``<KEY>_NEXT`` (the intent) — the role
   still has the current ``<KEY>``;
2. the role gets it, as a SCRAM verifier computed here (the password never reaches Postgres);
   from now on ``<KEY>_NEXT`` is the working one;
3. replication only: running standbys get it in ``primary_conninfo`` by reload (standalone also
   writes the state file their entrypoint reads on a restart);
4. ``<KEY>`` becomes the new password and ``<KEY>_NEXT`` is dropped in one bucket write, and every
   linked consumer's URLs are rewritten.

Re-running after an interruption resumes with the recorded ``<KEY>_NEXT``: it checks the role's
stored verifier to see whether step 2 happened, and finishes. Sessions already open are never
cut; no pod restarts.
"""

from __future__ import annotations

from collections.abc import Callable

from voodu_postgres.adapters.docker import DockerRuntime, RuntimeFailure
from voodu_postgres.commands.base import Result
from voodu_postgres.commands.facts import Facts
from voodu_postgres.commands.mode import Mode, refreshed_consumers
from voodu_postgres.domain.actions import Action, config_set
from voodu_postgres.domain.errors import CommandError
from voodu_postgres.domain.keys import (
    PASSWORD_KEY,
    PENDING_SUFFIX,
    REPLICATION_PASSWORD_KEY,
    generate_password,
)
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.reconciler.credentials import (
    repoint_with_password,
    role_verifier,
    set_role_verifier,
    write_replication_password,
)
from voodu_postgres.render import scram


def new_password(mode: Mode, ref_text: str, *, replication: bool = False, no_restart: bool = False,
                 generate: Callable[[], str] = generate_password,
                 progress: Callable[[str], None] = lambda _line: None) -> Result:
    facts = mode.load(ref_text, observe=True)
    spec, ref, desired = facts.spec, facts.ref, facts.desired
    assert desired is not None
    key = REPLICATION_PASSWORD_KEY if replication else PASSWORD_KEY
    role = spec.replication_user if replication else spec.user
    P = facts.primary
    primary_name = desired.app_name(P)
    if facts.role(P) is not PodRole.PRIMARY:
        pod = facts.pod(P)
        raise CommandError(f"the primary {primary_name} is not serving ({pod.error or pod.state}); a password "
                           f"can only change on a live primary — run `voodu-postgres reconcile {ref}` first")
    runtime = mode.runtime
    new, resumed = _rotate_role(mode, runtime, facts, P, key, role, generate, progress)

    notes: list[str] = []
    repointed: list[str] = []
    if replication:
        repointed, notes = _repoint_standbys(mode, runtime, facts, P, new, progress)

    actions = [config_set(ref.scope, ref.name, {key: new, key + PENDING_SUFFIX: ""}, skip_restart=True)]
    refreshed = [] if replication else refreshed_consumers(mode, facts, password=new, skip_restart=no_restart)
    actions.extend(refreshed)
    message = _rotated_message(facts, primary_name, key, role, replication=replication, no_restart=no_restart,
                               repointed=repointed, refreshed=refreshed, notes=notes)
    data = {"ref": str(ref), "role": role, "key": key, "resumed": resumed,
            "consumers_refreshed": [f"{a.scope}/{a.name}" if a.scope else a.name for a in refreshed],
            "standbys_repointed": repointed}
    return Result(message, data, actions)


def _rotate_role(mode: Mode, runtime: DockerRuntime, facts: Facts, P: int, key: str, role: str,
                 generate: Callable[[], str], progress: Callable[[str], None]) -> tuple[str, bool]:
    """Steps 1–2: record the intent (or resume the recorded one), then give the role that password.
    Returns the new password and whether an interrupted rotation was resumed."""
    desired = facts.desired
    assert desired is not None
    pending_key = key + PENDING_SUFFIX
    primary_name = desired.app_name(P)
    try:
        stored = role_verifier(runtime, desired, P, role)
        new = facts.bucket.get(pending_key, "")
        resumed = bool(new)
        if resumed:
            progress(f"resuming an interrupted rotation of {key}")
        else:
            new = generate()
            mode.record(facts.ref, {pending_key: new})  # the intent, before the role changes
        if scram.matches(new, stored):
            progress(f"role {role} already has the new password")
        else:
            set_role_verifier(runtime, desired, P, role, scram.verifier(new))
            if not scram.matches(new, role_verifier(runtime, desired, P, role)):
                raise CommandError(f"role {role} on {primary_name} did not take the new password; the bucket "
                                   f"is unchanged (re-run to retry)")
            progress(f"role {role} on {primary_name} has the new password (set as a SCRAM verifier)")
    except RuntimeFailure as exc:
        raise CommandError(f"password of role {role} not changed: {exc} (the bucket still holds the working "
                           "password; re-run to retry)") from exc
    return new, resumed


def _repoint_standbys(mode: Mode, runtime: DockerRuntime, facts: Facts, P: int, new: str,
                      progress: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """Step 3: running standbys reconnect with the new replication password, by reload; a standby
    that cannot be re-pointed is a note, not a failure. Returns (re-pointed standbys, notes)."""
    desired = facts.desired
    assert desired is not None
    state_dir = mode.state_dir(facts.spec)
    if state_dir is not None:
        write_replication_password(state_dir, new)
    notes: list[str] = []
    repointed: list[str] = []
    for ordinal in range(facts.spec.replicas):
        if ordinal == P or facts.role(ordinal) is not PodRole.STANDBY:
            continue
        try:
            repoint_with_password(runtime, desired, ordinal, new)
            repointed.append(desired.app_name(ordinal))
        except RuntimeFailure as exc:
            notes.append(f"⚠ {exc}; it keeps its current connection and picks the new password up "
                         "when it restarts")
    if repointed:
        progress(f"standbys reconnect with the new password (reload, no restart): {', '.join(repointed)}")
    return repointed, notes


def _rotated_message(facts: Facts, primary_name: str, key: str, role: str, *, replication: bool,
                     no_restart: bool, repointed: list[str], refreshed: list[Action], notes: list[str]) -> str:
    """What was rotated, which standbys re-pointed and consumers refreshed, then any warnings."""
    who = "replication role" if replication else "superuser"
    message = (f"postgres {facts.ref}: rotated the {who} password ({role}) on {primary_name} — open sessions "
               f"keep working, new logins need the new password; bucket {key} updated")
    if repointed:
        message += f"; standbys {', '.join(repointed)} re-pointed without a restart"
    if not replication:
        message += f"; refreshed {len(refreshed)} linked consumer(s)"
        if no_restart and refreshed:
            message += " (their restart is up to you: --no-restart)"
    message += "".join(f"\n{n}" for n in notes)
    return message
