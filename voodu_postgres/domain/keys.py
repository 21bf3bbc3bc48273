"""The bucket's key names (the wire contract with Voodu's config bucket and the standalone store)
and the small parsers of their values. Pure."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

PASSWORD_KEY = "POSTGRES_PASSWORD"
REPLICATION_PASSWORD_KEY = "POSTGRES_REPLICATION_PASSWORD"
PRIMARY_ORDINAL_KEY = "PG_PRIMARY_ORDINAL"
EXPOSE_KEY = "PG_EXPOSE_PUBLIC"
LINKED_CONSUMERS_KEY = "POSTGRES_LINKED_CONSUMERS"
SWITCHOVER_KEY = "PG_SWITCHOVER_TO"  # a promote's target, recorded before it fences the primary
SWITCHOVER_REQUEST_KEY = "PG_SWITCHOVER_REQUEST"  # JSON: how that promote was asked for (domain.intents)
LAST_FAILOVER_KEY = "PG_LAST_FAILOVER"  # JSON: the last automatic failover (when, from, to, what it may lose)
REJOIN_KEY = "PG_REJOIN"  # former primaries to rejoin (comma-separated ordinals), recorded with the flip
BACKUP_KEEP_KEY = "BACKUP_KEEP"
DEFAULT_BACKUP_KEEP = "30"
BACKUP_MAX_AGE_KEY = "BACKUP_MAX_AGE"
SCHEDULE_KEY = "BACKUP_SCHEDULE"  # JSON: the backup schedule `reconcile --watch` runs
#: set by a physical restore before its first destructive step (value: the tar's absolute path)
INTENT_KEY = "PG_PHYSICAL_RESTORE"
#: appended to a password key while a rotation is pending: the next password, recorded before the role
#: changes so an interrupted rotation can finish (``POSTGRES_PASSWORD_NEXT``)
PENDING_SUFFIX = "_NEXT"


#: bucket keys whose values are secrets (shown only when asked for by key)
SECRET_KEYS = frozenset({PASSWORD_KEY, REPLICATION_PASSWORD_KEY})


def generate_password() -> str:
    """32 bytes from the OS CSPRNG as 64 lowercase hex chars (safe in URLs and conf files)."""
    return secrets.token_hex(32)


def ordinals(raw: str) -> frozenset[int]:
    """``"0,2"`` → {0, 2}; anything that is not a number is ignored."""
    return frozenset(int(x) for x in (part.strip() for part in raw.split(",")) if (x.isascii() and x.isdigit()))


def primary_ordinal(bucket: Mapping[str, str]) -> int:
    """The target primary ordinal recorded in the bucket (0 when absent or not a number)."""
    raw = bucket.get(PRIMARY_ORDINAL_KEY, "").strip()
    return int(raw) if (raw.isascii() and raw.isdigit()) else 0
