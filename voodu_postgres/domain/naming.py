"""Names of everything a cluster owns, exactly as Voodu spells them.

Keeping these in one pure module matters because the names are a wire contract: a standalone
cluster created by this tool must be adoptable later by Voodu's controller (and vice versa),
which finds pods by container name, volume name and DNS alias. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voodu_postgres.domain.errors import VooduError

BACKUPS_ROOT = "/opt/voodu/backups"
UNSCOPED_DIR = "_unscoped"
DATA_CLAIM = "data"
DATA_MOUNT = "/var/lib/postgresql/data"
PGDATA = "/var/lib/postgresql/data/pgdata"
DEFAULT_NETWORK = "voodu0"


#: Scope and name become DNS labels, container, volume and file-system path segments: keep them to
#: lowercase DNS-label characters (no "..", no "/", no spaces).
LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def label_problem(text: str, what: str) -> str | None:
    """Why ``text`` can't be a scope or name, or None when it can."""
    if not LABEL_RE.fullmatch(text):
        return (f'{what} "{text}" must be a DNS label: 1-63 lowercase letters, digits or "-", '
                "starting and ending with a letter or digit")
    return None


class RefError(VooduError, ValueError):
    """A ``scope/name`` reference that cannot name a resource."""


@dataclass(frozen=True, order=True)
class Ref:
    """A resource reference: ``scope/name``, or just ``name`` when the scope is empty."""

    scope: str
    name: str

    def __str__(self) -> str:
        return f"{self.scope}/{self.name}" if self.scope else self.name

    @property
    def app_id(self) -> str:
        """Voodu's AppID: ``scope-name`` or ``name``; the prefix of every container name."""
        return f"{self.scope}-{self.name}" if self.scope else self.name

    @property
    def scope_suffix(self) -> str:
        """DNS suffix appended to pod names: ``.scope.voodu`` or ``.voodu``."""
        return f".{self.scope}.voodu" if self.scope else ".voodu"

    def container(self, ordinal: int) -> str:
        return f"{self.app_id}.{ordinal}"

    def pod_host(self, ordinal: int) -> str:
        """The per-pod DNS name on the voodu network, e.g. ``db-1.clowk-lp.voodu``."""
        return f"{self.name}-{ordinal}{self.scope_suffix}"

    def pod_aliases(self, ordinal: int) -> list[str]:
        short = f"{self.name}-{ordinal}.{self.scope}" if self.scope else f"{self.name}-{ordinal}"
        return sorted({short, self.pod_host(ordinal)})

    def shared_aliases(self) -> list[str]:
        """Round-robin aliases resolving to every pod of the resource."""
        if self.scope:
            return [f"{self.name}.{self.scope}", f"{self.name}.{self.scope}.voodu"]
        return [self.name, f"{self.name}.voodu"]

    def volume(self, ordinal: int, claim: str = DATA_CLAIM) -> str:
        return f"voodu-{self.app_id}-{claim}-{ordinal}"

    def backups_dir(self) -> str:
        return f"{BACKUPS_ROOT}/{self.scope or UNSCOPED_DIR}/{self.name}"

    def asset_ref(self, key: str) -> str:
        """``${asset.scope.name.key}``; never the unresolvable ``${asset..name.key}``."""
        if self.scope:
            return f"${{asset.{self.scope}.{self.name}.{key}}}"
        return f"${{asset.{self.name}.{key}}}"


def parse_ref(text: str, *, what: str = "ref") -> Ref:
    """Parse ``scope/name`` (or a bare ``name``) as the Go plugin does: split at the first ``/``."""
    raw = text.strip()
    scope, sep, name = raw.partition("/")
    if not sep:
        scope, name = "", raw
    scope, name = scope.strip(), name.strip()
    if not name or "/" in name:
        raise RefError(f'invalid {what} "{text}" (expected scope/name)')
    for part, label in ((scope, "scope"), (name, "name")):
        problem = label_problem(part, label) if part or label == "name" else None
        if problem:
            raise RefError(f'invalid {what} "{text}": {problem}')
    return Ref(scope, name)
