"""``expose`` / ``unexpose``: publish a cluster on every interface, or back to loopback only.

The choice is persisted in the bucket (``PG_EXPOSE_PUBLIC``, written without a restart), so
every later apply renders the same ports; the ``apply_manifest`` of the statefulset with its new
``ports`` is what actually recreates the pods (Voodu re-creates a pod only when its spec
changes). Data volumes are kept; standalone rolls the pods standbys first, the primary last, each
back to streaming before the next, so the primary is the only pod whose clients see a restart.

Host ports: Voodu applies one port list to every pod, so with several pods only one could bind
``0.0.0.0:<port>``; under Voodu a multi-pod expose is refused with the alternatives. Standalone
owns the Docker run and publishes pod N on ``<port> + N`` instead (``info`` lists them).

Pure: decisions only.
"""

from __future__ import annotations

import copy

from voodu_postgres.commands.base import Result
from voodu_postgres.commands.facts import Facts
from voodu_postgres.domain.actions import Action, config_set
from voodu_postgres.domain.errors import CommandError
from voodu_postgres.domain.keys import EXPOSE_KEY


def published_ports(facts: Facts, *, public: bool) -> dict[int, str]:
    """Where each pod can be reached from the host once (un)exposed (loopback ports are random)."""
    port = facts.spec.port
    if not public:
        return {o: "127.0.0.1:(random)" for o in range(facts.spec.replicas)}
    if facts.plugin_mode:
        return {0: f"0.0.0.0:{port}"}
    return {o: f"0.0.0.0:{port + o}" for o in range(facts.spec.replicas)}


def decide_expose(facts: Facts, *, public: bool) -> Result:
    spec, ref = facts.spec, facts.ref
    if public and facts.plugin_mode and spec.replicas > 1:
        primary = ref.pod_host(facts.primary)
        raise CommandError(
            f"expose refused: postgres {ref} has {spec.replicas} pods and Voodu publishes the same port on each, "
            f"so only one could bind 0.0.0.0:{spec.port}. Instead: a TCP proxy (pgbouncer, haproxy) on the "
            f"voodu0 network forwarding to {primary}:{spec.port}; an SSH tunnel to the host "
            f"(ssh -L {spec.port}:127.0.0.1:<the pod's loopback port> …); or replicas = 1")
    if facts.exposed == public:
        where = "every interface" if public else "loopback only"
        return Result(f"postgres {ref} is already published on {where}; nothing changed",
                      {"ref": str(ref), "exposed": public, "changed": False})
    statefulset = copy.deepcopy(facts.statefulset)
    statefulset["ports"] = [f"0.0.0.0:{spec.port}:{spec.port}"] if public else [str(spec.port)]
    flag: Action = (config_set(ref.scope, ref.name, {EXPOSE_KEY: "true"}, skip_restart=True) if public else
                    Action("config_unset", ref.scope, ref.name, keys=[EXPOSE_KEY], skip_restart=True))
    manifest = {"kind": "statefulset", "scope": ref.scope, "name": ref.name, "spec": statefulset}
    apply = Action("apply_manifest", ref.scope, ref.name, manifest=manifest,
                   summary=f"statefulset {ref}: ports {statefulset['ports'][0]} (pods recreated, data kept)")
    addresses = published_ports(facts, public=public)
    if public:
        shown = ", ".join(f"{ref.name}-{o} on {a}" for o, a in addresses.items())
        message = (f"postgres {ref} is now published on every interface ({shown}). ⚠ Anyone who can reach "
                   f"this host can try to log in: keep the firewall tight, and rotate the password if it ever "
                   f"leaked (voodu-postgres new-password {ref})")
    else:
        message = f"postgres {ref} is back on loopback only (127.0.0.1); pods recreated with their data"
    return Result(message, {"ref": str(ref), "exposed": public, "changed": True,
                            "published": {str(o): a for o, a in addresses.items()}}, [flag, apply])
