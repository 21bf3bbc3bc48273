"""Reading the observed pods the way every part of the planner does: each ordinal's classified
role, a placeholder for an ordinal nothing exists for, whether a standby streams from the
primary, and the one-line picture of the cluster that ends every plan message."""

from __future__ import annotations

from voodu_postgres.domain.model import Desired, Observed, PodStatus
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.states.pod import classify


def streams_from_primary(desired: Desired, pod: PodStatus) -> bool:
    pg = pod.pg
    return (
        pg is not None
        and pg.in_recovery
        and pg.receiver_status == "streaming"
        and pg.receiver_host == desired.host(desired.target_primary)
    )


def roles_of(desired: Desired, observed: Observed) -> dict[int, PodRole]:
    """The classified role of every desired or observed ordinal (absent pods are DOWN)."""
    writable = len(observed.writable)
    ordinals = set(range(desired.replicas)) | {p.ordinal for p in observed.pods}
    out: dict[int, PodRole] = {}
    for ordinal in sorted(ordinals):
        pod = observed.pod(ordinal) or PodStatus(ordinal=ordinal, container=desired.ref.container(ordinal))
        out[ordinal] = classify(pod, target_primary=desired.target_primary, writable_count=writable,
                                switchover=desired.switchover, rejoin=desired.rejoin)
    return out


def pod_of(desired: Desired, observed: Observed, ordinal: int) -> PodStatus:
    """The observed pod, or an absent placeholder for an ordinal nothing exists for."""
    return observed.pod(ordinal) or PodStatus(ordinal=ordinal, container=desired.ref.container(ordinal))


#: How ``describe`` names a role whose phrase is not simply the role's value.
_PHRASES = {PodRole.BOOTSTRAPPING: "cloning", PodRole.PENDING: "starting", PodRole.REJOINING: "rejoining"}


def describe(desired: Desired, observed: Observed) -> str:
    """One phrase per pod, e.g. ``db-0 primary, db-1 streaming, db-2 cloning``."""
    roles = roles_of(desired, observed)
    parts = []
    for ordinal, role in roles.items():
        name = desired.app_name(ordinal)
        pod = pod_of(desired, observed, ordinal)
        if ordinal >= desired.replicas and not pod.exists:
            continue
        if role is PodRole.STANDBY:
            parts.append(f"{name} {'streaming' if streams_from_primary(desired, pod) else 'standby (not streaming)'}")
        else:
            parts.append(f"{name} {_PHRASES.get(role, role.value)}")
    return ", ".join(parts)
