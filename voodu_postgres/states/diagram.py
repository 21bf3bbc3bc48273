"""Regenerate the state-machine diagrams embedded in README.md (``python -m voodu_postgres.states.diagram``).

The README carries each machine as mermaid text between marker comments
(``<!-- pod-machine:start -->`` … and ``<!-- backup-machine:start -->`` …); unit tests fail
when the committed text differs from what the transition tables generate.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from voodu_postgres.domain.backup_status import BackupState
from voodu_postgres.domain.roles import PodRole
from voodu_postgres.states import mermaid
from voodu_postgres.states.backup import BACKUP_TRANSITIONS
from voodu_postgres.states.pod import POD_TRANSITIONS


def block(marker: str = "pod-machine") -> str:
    """The README block (markers included) for one machine: ``pod-machine`` or ``backup-machine``."""
    if marker == "pod-machine":
        body = mermaid(POD_TRANSITIONS, initial=PodRole.DOWN)
    elif marker == "backup-machine":
        body = mermaid(BACKUP_TRANSITIONS, initial=BackupState.RUNNING)
    else:
        raise ValueError(f"no machine behind marker {marker!r}")
    return f"<!-- {marker}:start -->\n```mermaid\n{body}```\n<!-- {marker}:end -->"


MARKERS = ("pod-machine", "backup-machine")


def _literal(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


def main(readme: str = "README.md") -> int:
    path = Path(readme)
    text = path.read_text()
    missing = []
    for marker in MARKERS:
        # a function replacement, so nothing in the generated text is read as a regex escape
        text, count = re.subn(rf"<!-- {marker}:start -->.*?<!-- {marker}:end -->", _literal(block(marker)), text,
                              flags=re.S)
        if count != 1:
            missing.append(marker)
    path.write_text(text)  # the blocks that were found are regenerated even when another is missing
    if missing:
        print(f"{readme} has no {' / '.join(missing)} markers", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
