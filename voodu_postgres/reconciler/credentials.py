"""Role passwords on a live cluster: read a role's stored verifier, set a new one, and hand a new
replication password to running standbys — the effects behind ``new-password``.

Passwords are never sent to Postgres: :func:`set_role_verifier` stores a SCRAM verifier computed
client-side, so neither the server log (``log_statement = all``) nor any process sees the secret.
A standby gets a new replication password through the exec API's environment (never an argv):
the entrypoint's ``--repoint`` rewrites ``primary_conninfo`` in ``voodu-runtime.conf`` and a
reload makes the WAL receiver reconnect with it — no restart.
"""

from __future__ import annotations

from pathlib import Path

from voodu_postgres.adapters.docker import Runtime, RuntimeFailure
from voodu_postgres.adapters.files import write_secret
from voodu_postgres.domain.model import Desired
from voodu_postgres.reconciler.observe import pod_endpoint
from voodu_postgres.render.statefulset import WRAPPER_PATH

REPLICATION_PASSWORD_FILE = "replication_password"


def role_verifier(runtime: Runtime, desired: Desired, ordinal: int, role: str) -> str:
    """The role's stored password verifier on pod ``ordinal`` ("" when it has none)."""
    return runtime.postgres().role_verifier(pod_endpoint(runtime, desired, ordinal), role)


def set_role_verifier(runtime: Runtime, desired: Desired, ordinal: int, role: str, verifier: str) -> None:
    """``ALTER ROLE … PASSWORD '<SCRAM verifier>'`` on the primary: existing sessions are not
    affected; new logins need the new password (the superuser's connection falls back to the next
    password while a rotation is in flight)."""
    runtime.postgres().set_role_verifier(pod_endpoint(runtime, desired, ordinal), role, verifier)


def write_replication_password(state_dir: Path, password: str) -> None:
    """Standalone: the file every pod's entrypoint prefers to its creation-time env (mode 0600)."""
    write_secret(state_dir, REPLICATION_PASSWORD_FILE, password)


def repoint_with_password(runtime: Runtime, desired: Desired, ordinal: int, password: str) -> None:
    """Rewrite a running standby's ``primary_conninfo`` with ``password`` and reload it."""
    container = desired.ref.container(ordinal)
    result = runtime.exec(container, ["bash", WRAPPER_PATH, "--repoint"], user="root",
                          env={"VOODU_ROTATED_REPLICATION_PASSWORD": password})
    if result.exit_code != 0:
        last = (result.output.strip().splitlines() or [f"exit {result.exit_code}"])[-1]
        raise RuntimeFailure(f"{desired.app_name(ordinal)}: could not rewrite primary_conninfo: {last}")
    runtime.postgres().reload(pod_endpoint(runtime, desired, ordinal))
