"""One planning pass in progress: what every concern reads (``Pass``: the inputs, the classified
roles and the state machine's guard) and what they all add to (``Draft``: steps, waits and
blocks), plus ``finish``, which turns the draft into the ``Plan`` and its one-line message.

The concern modules (topology, switchover, failover, rolling) take these two objects instead of
half a dozen loose arguments each; the order in which they run is ``planner.plan``'s alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from voodu_postgres.domain.model import Desired, Observed, Plan, PodStatus, Step, Wait
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.reconciler.plan.pods import describe, pod_of


@dataclass(frozen=True)
class Pass:
    """The read-only side of one pass. ``allowed(pod, trigger)`` asks the pod state machine, so
    every concern checks its moves against the same guards."""

    desired: Desired
    observed: Observed
    roles: dict[int, PodRole]
    allowed: Callable[[PodStatus, str], bool]
    moving: frozenset[int] = frozenset()  # ordinals whose container listens on an outdated port

    @property
    def P(self) -> int:
        """The target primary's ordinal (``P`` throughout the planner, as in the messages' logic)."""
        return self.desired.target_primary

    @property
    def primary(self) -> PodStatus:
        return self.pod(self.P)

    def pod(self, ordinal: int) -> PodStatus:
        return pod_of(self.desired, self.observed, ordinal)

    def name(self, ordinal: int) -> str:
        return self.desired.app_name(ordinal)


@dataclass
class Draft:
    """The plan under construction; the concerns append to it in ``planner.plan``'s order."""

    steps: list[Step] = field(default_factory=list)
    waiting: list[Wait] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def finish(desired: Desired, observed: Observed, draft: Draft) -> Plan:
    state = describe(desired, observed) or "no pods yet"
    steps, waiting, blocked = draft.steps, draft.waiting, draft.blocked
    if steps:
        message = f"{desired.ref}: {'; '.join(str(s) for s in steps)}"
    elif blocked:
        message = f"{desired.ref}: blocked: {blocked[0]}"
    elif waiting:
        message = f"{desired.ref}: waiting for {waiting[0]} ({state})"
    else:
        message = f"{desired.ref}: no action: {state}"
    return Plan(ref=desired.ref, steps=tuple(steps), waiting=tuple(waiting), blocked=tuple(blocked),
                message=message)
