"""The switchover a ``promote`` asks for, as recorded in the bucket before anything moves.

``PG_SWITCHOVER_TO`` names the target (every pass classifies it as *promoting*);
``PG_SWITCHOVER_REQUEST`` says how the operator asked for it, so the reconcile engine — not the
command — performs it and any later pass can finish it:

- ``planned``: the old primary served when it was asked. The engine checks the target's lag,
  records the old primary's last WAL position, fences it with a clean shutdown (which sends every
  committed write to the standbys), waits until the target has received that position, then
  promotes it.
- otherwise a forced failover: the old primary is stopped, every standby's received WAL measured,
  and the target promoted only if no other standby has more — or with ``accept_loss`` (``--yes``).

Both keys are written together and cleared together (:func:`record_switchover`,
:func:`clear_switchover`). Pure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from voodu_postgres.domain.keys import SWITCHOVER_KEY, SWITCHOVER_REQUEST_KEY

DEFAULT_MAX_LAG = 16 * 1024 * 1024  # bytes of replay lag a planned switchover accepts
#: seconds after a planned fence during which a target that has not received the old primary's
#: last WAL is waited for; after it, the target is judged like a failover's (most WAL wins)
PLANNED_WAL_WAIT = 30.0


@dataclass(frozen=True)
class SwitchoverRequest:
    to: int
    source: int  # the primary when the promote was asked
    planned: bool
    force: bool = False  # skip the lag check
    accept_loss: bool = False  # promote ``to`` even when another standby received more WAL
    max_lag: int = DEFAULT_MAX_LAG
    final_lsn: int | None = None  # the old primary's position, read just before its clean stop
    fenced_at: float | None = None  # epoch seconds of that stop

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> SwitchoverRequest | None:
        """The request, or None when there is none or it cannot be read (a hand-edited bucket:
        the engine then treats the switchover as an interrupted one)."""
        try:
            data: Any = json.loads(text) if text.strip() else None
            return cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None


def record_switchover(request: SwitchoverRequest) -> dict[str, str]:
    """One bucket write: the target, and how it was asked for."""
    return {SWITCHOVER_KEY: str(request.to), SWITCHOVER_REQUEST_KEY: request.to_json()}


def clear_switchover() -> dict[str, str]:
    """One bucket write: no switchover is in flight any more."""
    return {SWITCHOVER_KEY: "", SWITCHOVER_REQUEST_KEY: ""}
