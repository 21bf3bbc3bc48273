"""State machines as tables (pod roles, backups), built with ``transitions`` under house rules.

House rules (architecture.md P6): no ``to_<state>()`` back doors (``auto_transitions=False``),
illegal triggers raise (``ignore_invalid_triggers=False``), guards are plain functions passed as
callables (grep-able, type-checked), and no side effects in callbacks — the executor performs an
effect first and only then fires the trigger to record it. Machines are rebuilt from
observation on every pass, so they never hold remembered truth.

Pure: must not import docker, psycopg or subprocess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from transitions import Machine


class Model:
    """The object a machine drives; ``state`` holds the current enum member.

    ``transitions`` attaches ``trigger`` and ``may_trigger`` to the instance at run time (it
    refuses to overwrite methods a class already defines), so typed wrappers call them here.
    """

    state: Any

    def may(self, trigger_name: str, *args: Any) -> bool:
        """Would ``trigger_name`` be legal now (guards included)? Changes nothing."""
        return bool(getattr(self, "may_trigger")(trigger_name, *args))  # noqa: B009

    def fire(self, trigger_name: str, *args: Any) -> None:
        """Perform the transition; raises ``MachineError`` when illegal (a planner bug)."""
        getattr(self, "trigger")(trigger_name, *args)  # noqa: B009


def make_machine(model: Model, states: type[StrEnum], table: Sequence[Mapping[str, Any]], initial: StrEnum) -> Machine:
    return Machine(
        model=model,
        states=list(states),
        transitions=[dict(row) for row in table],
        initial=initial,
        auto_transitions=False,
        ignore_invalid_triggers=False,
        send_event=False,
    )


def mermaid(table: Iterable[Mapping[str, Any]], *, initial: StrEnum | None = None) -> str:
    """A ``stateDiagram-v2`` of a transition table (what the README embeds)."""
    lines = ["stateDiagram-v2"]
    if initial is not None:
        lines.append(f"    [*] --> {_node(initial)}")
    for row in table:
        sources = row["source"] if isinstance(row["source"], list | tuple) else [row["source"]]
        guards = [g.__name__ for g in row.get("conditions", [])] + [f"not {g.__name__}" for g in row.get("unless", [])]
        label = row["trigger"] + (f" [{', '.join(guards)}]" if guards else "")
        for source in sources:
            dest = source if row["dest"] == "=" else row["dest"]  # "=": back to where it was
            lines.append(f"    {_node(source)} --> {_node(dest)}: {label}")
    return "\n".join(lines) + "\n"


def _node(state: Any) -> str:
    return str(state.value if isinstance(state, StrEnum) else state).replace("-", "_")
