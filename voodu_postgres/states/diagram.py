"""Regenerate the state-machine diagrams embedded in README.md (``python -m voodu_postgres.states.diagram``).

The README carries each machine as mermaid text between marker comments; a unit test fails
when the committed text differs from what the transition table generates.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from voodu_postgres.states import mermaid
from voodu_postgres.states.pod import POD_TRANSITIONS, PodRole


def block() -> str:
    return ("<!-- pod-machine:start -->\n```mermaid\n" + mermaid(POD_TRANSITIONS, initial=PodRole.DOWN)
            + "```\n<!-- pod-machine:end -->")


def main(readme: str = "README.md") -> int:
    path = Path(readme)
    text = path.read_text()
    new, count = re.subn(r"<!-- pod-machine:start -->.*?<!-- pod-machine:end -->", lambda _m: block(), text,
                         flags=re.S)
    if count != 1:
        print("README.md has no pod-machine markers", file=sys.stderr)
        return 1
    path.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
