"""One planning pass in progress: what every concern reads (``Pass``: the inputs, the classified
roles and the state machine's guard) and what they all add to (``Draft``: steps, waits and
blocks), plus ``finish``, which turns the draft into the ``Plan`` and its one-line message.

The concern modules (topology, switchover, failover, rolling) take these two objects instead of
half a dozen loose arguments each; the order in which they run is ``planner.plan``'s alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voodu_postgres.domain.model import Desired, Observed, Plan, PodStatus, Step, StepKind, Wait
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.reconciler.plan.pods import describe, pod_of
from voodu_postgres.states.pod import PodMove


@dataclass(frozen=True)
class Pass:
    """The read-only side of one pass. ``move(pod, trigger)`` is that pod's machine transition
    (in its observed role, with this pass's guard facts): every concern asks it whether a move is
    allowed and hands it to the step that performs it, so the executor fires it afterwards."""

    desired: Desired
    observed: Observed
    roles: dict[int, PodRole]
    move: Callable[[PodStatus, str], PodMove]
    moving: frozenset[int] = frozenset()  # ordinals whose container listens on an outdated port

    def allowed(self, pod: PodStatus, trigger: str) -> bool:
        """Would the pod machine take ``trigger`` now (guards included)? Changes nothing."""
        return self.move(pod, trigger).allowed()

    def step(self, kind: StepKind, pod: PodStatus, reason: str, *triggers: str,
             data: Mapping[str, Any] | None = None, others: tuple[PodMove, ...] = ()) -> Step:
        """A step on ``pod`` that performs ``triggers`` on its machine (plus ``others``, moves of
        other pods the same effect makes)."""
        moves = tuple(self.move(pod, t) for t in triggers) + others
        return Step(kind, pod.ordinal, reason, data=data or {}, moves=moves)

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
