"""Pure renderers: spec values in, file text out.

Every renderer returns a :class:`Rendered` — the text plus its sha256 — and never touches
the filesystem. Writing files (assets under the home dir, bind mounts) is the runtime's job.
The hash is what later reconcile passes compare to decide whether a pod must be recreated,
so renderers must be deterministic: the same input always gives the same bytes.

Must not import docker, psycopg, subprocess or anything under ``voodu_postgres.reconciler.runtime``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Rendered:
    """One rendered artefact: a stable name (the asset key), its text and the text's sha256."""

    name: str
    text: str
    sha256: str


def rendered(name: str, text: str) -> Rendered:
    """Wrap ``text`` as a :class:`Rendered`, computing its digest."""
    return Rendered(name=name, text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
