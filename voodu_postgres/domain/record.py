"""The cluster record: the durable state of one cluster beyond its spec — which pod is the
primary, the switchover and rejoins in flight, the last automatic failover, an interrupted
physical restore — read from the config bucket into one typed value, and changed only by the
patches below, each one bucket write (a mapping of keys to values; "" clears a key).

The bucket stays the wire format (Voodu's config store and the standalone SQLite store hold the
same keys, ``domain.keys``); this module is the one place that parses those values and says what
each intent write contains, so a flip of the primary is the same write whoever performs it. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from voodu_postgres.domain.intents import SwitchoverRequest, clear_switchover, record_switchover
from voodu_postgres.domain.keys import (
    INTENT_KEY,
    LAST_FAILOVER_KEY,
    PRIMARY_ORDINAL_KEY,
    REJOIN_KEY,
    SWITCHOVER_KEY,
    SWITCHOVER_REQUEST_KEY,
    ordinals,
    primary_ordinal,
)


@dataclass(frozen=True)
class ClusterRecord:
    primary: int = 0  # PG_PRIMARY_ORDINAL
    switchover: int | None = None  # PG_SWITCHOVER_TO: a promote's (or failover's) target, not yet recorded
    request: SwitchoverRequest | None = None  # PG_SWITCHOVER_REQUEST: how that promote was asked for
    rejoin: frozenset[int] = frozenset()  # PG_REJOIN: former primaries still to rewind
    last_failover: Mapping[str, Any] = field(default_factory=dict)  # PG_LAST_FAILOVER (JSON)
    restore_from: str | None = None  # PG_PHYSICAL_RESTORE: the tar of an interrupted physical restore

    @classmethod
    def of(cls, bucket: Mapping[str, str]) -> ClusterRecord:
        """Parse the bucket; a value that cannot be read counts as absent (a hand-edited bucket
        must not stop the reconciler)."""
        raw = bucket.get(SWITCHOVER_KEY, "").strip()
        switchover = int(raw) if (raw.isascii() and raw.isdigit()) else None
        request = SwitchoverRequest.parse(bucket.get(SWITCHOVER_REQUEST_KEY, ""))
        primary = primary_ordinal(bucket)
        return cls(primary=primary, switchover=switchover,
                   request=request if request is not None and request.to == switchover else None,
                   rejoin=ordinals(bucket.get(REJOIN_KEY, "")) - {primary},
                   last_failover=_last_failover(bucket.get(LAST_FAILOVER_KEY, "")),
                   restore_from=bucket.get(INTENT_KEY, "").strip() or None)

    # -- derived facts -------------------------------------------------------------------------

    @property
    def failover_fencing(self) -> bool:
        """An automatic failover of the current primary is recorded and not yet promoted."""
        return self.last_failover.get("state") == "fencing" and self.last_failover.get("from") == self.primary

    @property
    def last_failover_at(self) -> float | None:
        """When the last automatic failover *happened* (its target became this primary), for the
        cooldown; None otherwise."""
        record = self.last_failover
        if record.get("to") == self.primary and record.get("state") == "promoted":
            epoch = record.get("epoch")
            return float(epoch) if isinstance(epoch, int | float) else None
        return None

    # -- patches: each is one bucket write ---------------------------------------------------------

    def flip(self, new: int) -> dict[str, str]:
        """``new`` is the primary, the old one must rejoin it, the switchover is over."""
        rejoin = (self.rejoin | {self.primary}) - {new}
        return {PRIMARY_ORDINAL_KEY: str(new), **clear_switchover(), REJOIN_KEY: _joined(rejoin)}

    def mark_rejoin(self, ordinal: int) -> dict[str, str]:
        return {REJOIN_KEY: _joined(self.rejoin | {ordinal})}

    def forget_rejoin(self, ordinal: int) -> dict[str, str]:
        return {REJOIN_KEY: _joined(self.rejoin - {ordinal})}

    @staticmethod
    def ask_switchover(request: SwitchoverRequest) -> dict[str, str]:
        return record_switchover(request)

    def drop_switchover(self) -> dict[str, str]:
        """No switchover in flight any more; an automatic failover that never got past its fence
        did not happen, so its record goes too."""
        fencing = self.last_failover.get("state") == "fencing"
        return {**clear_switchover(), **({LAST_FAILOVER_KEY: ""} if fencing else {})}


def _joined(values: frozenset[int]) -> str:
    return ",".join(map(str, sorted(values)))


def _last_failover(text: str) -> dict[str, Any]:
    try:
        record = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(record, dict):
        return {}
    epoch = record.get("epoch")
    if not isinstance(epoch, int | float) or isinstance(epoch, bool):
        record.pop("epoch", None)
    return record
