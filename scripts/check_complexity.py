#!/usr/bin/env python3
"""Fail when any function in the package has a cyclomatic complexity above the limit (radon's
measure). Run by scripts/test.sh; `python scripts/check_complexity.py` lists offenders."""

from __future__ import annotations

import sys
from pathlib import Path

from radon.complexity import cc_visit

LIMIT = 25


def offenders(root: Path) -> list[tuple[int, str]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for block in cc_visit(path.read_text(encoding="utf-8")):
            if block.complexity > LIMIT:
                found.append((block.complexity, f"{path}:{block.lineno} {block.fullname}"))
    return sorted(found, reverse=True)


def main() -> int:
    root = Path(__file__).resolve().parent.parent / "voodu_postgres"
    bad = offenders(root)
    for complexity, where in bad:
        print(f"complexity {complexity} > {LIMIT}: {where}", file=sys.stderr)
    if bad:
        return 1
    print(f"complexity: no function above {LIMIT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
