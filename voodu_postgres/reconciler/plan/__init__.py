"""The planner: (Desired, Observed) → Plan, pure. ``planner.plan`` fixes the order of a pass; the
concerns it runs live next to it:

- ``pods``: reading observed pods (roles, placeholders, streaming, the one-line description);
- ``draft``: one pass's inputs and guard (``Pass``) and the plan under construction (``Draft``);
- ``topology``: infrastructure, the primary, standbys, scale-down;
- ``switchover``: finishing an interrupted promote, rejoining former primaries, split brain;
- ``failover``: automatic failover of a failing primary (and the one "best standby" rule);
- ``rolling``: synchronous_standby_names, port moves, spec recreations and restarts, one pod at a time.

Every name importable from the former ``reconciler/plan.py`` module is re-exported here.
"""

from voodu_postgres.reconciler.plan.failover import (
    FAILOVER_COOLDOWN_TEXT,
    FailoverDecision,
    best_standby,
    failover_decision,
)
from voodu_postgres.reconciler.plan.planner import plan, pod_move
from voodu_postgres.reconciler.plan.pods import describe, pod_of, roles_of, streams_from_primary
from voodu_postgres.reconciler.plan.rolling import STANDBY_MINIMUMS, lowers_standby_minimum

__all__ = [
    "FAILOVER_COOLDOWN_TEXT",
    "STANDBY_MINIMUMS",
    "FailoverDecision",
    "best_standby",
    "describe",
    "failover_decision",
    "lowers_standby_minimum",
    "plan",
    "pod_move",
    "pod_of",
    "roles_of",
    "streams_from_primary",
]
