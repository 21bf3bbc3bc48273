"""What every benchmark creates carries one label, so one call removes all of a session's leftovers."""

from __future__ import annotations

import docker

LABEL = "org.voodu-postgres.bench"


def remove_labelled(client: docker.DockerClient, session: str) -> None:
    """Remove the session's containers (with their anonymous volumes), volumes and networks."""
    selector = {"label": f"{LABEL}={session}"}
    for c in client.containers.list(all=True, filters=selector, ignore_removed=True):
        c.remove(force=True, v=True)
    for v in client.volumes.list(filters=selector):
        v.remove(force=True)
    for n in client.networks.list(filters=selector):
        n.remove()
