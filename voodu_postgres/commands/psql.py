"""``psql``: an interactive (or scripted) psql inside a pod, as the superuser, with no password.

psql runs in the pod over the unix socket, which the image's ``pg_hba.conf`` trusts, so nothing
secret is typed, passed or stored. The result is one ``exec_local`` action: Voodu's CLI runs it
on the operator's terminal; standalone runs it attached to this one. ``-t`` (a pseudo-terminal)
is asked for only when there is a terminal to attach, so ``-c`` works in scripts and CI; psql's
exit code becomes the command's.

Pure: decisions only.
"""

from __future__ import annotations

from voodu_postgres.commands.base import Result
from voodu_postgres.commands.facts import Facts
from voodu_postgres.domain.actions import Action
from voodu_postgres.domain.errors import CommandError

_SCRIPTED = ("-c", "--command", "-f", "--file", "-l", "--list")


def decide_psql(facts: Facts, *, replica: int | None, passthrough: list[str], tty: bool | None) -> Result:
    """``tty`` None (plugin mode: the terminal is on the operator's side) guesses from the args."""
    spec, ref = facts.spec, facts.ref
    ordinal = facts.primary if replica is None else replica
    if not 0 <= ordinal < spec.replicas:
        raise CommandError(f"--replica {ordinal} out of range (valid: 0..{spec.replicas - 1})")
    pod = facts.pod(ordinal)
    container = ref.container(ordinal)
    if not pod.exists:
        raise CommandError(f"container {container} does not exist on this host "
                           f"(`voodu-postgres reconcile {ref}` recreates it)")
    if not pod.running:
        raise CommandError(f"container {container} is {pod.state}, not running; check `docker logs {container}`")
    if tty is None:
        tty = not any(a in _SCRIPTED or a.startswith(("--command=", "--file=")) for a in passthrough)
    argv = ["docker", "exec", "-it" if tty else "-i", container,
            "psql", "-U", spec.user, "-d", spec.database, "-p", str(spec.port), *passthrough]
    role = "primary" if ordinal == facts.primary else "standby"
    message = f"postgres {ref}: psql in {container} ({role}, user={spec.user}, db={spec.database})"
    return Result(message, {"ref": str(ref), "container": container, "role": role},
                  [Action("exec_local", ref.scope, ref.name, command=argv, summary=message)])
