"""One rendered artefact (name, text, digest): what renderers return and adapters write. Pure."""

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
