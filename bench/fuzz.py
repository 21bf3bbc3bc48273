"""Fuzz the CLI's real entry points at volume: the properties of ``tests/unit/test_fuzz.py`` (HCL
files through validate/render, ``expand`` requests, ``config`` refs/keys/values, whole command
lines, plugin-mode refusals) with many more examples than CI runs.

Usage: ``.venv/bin/python bench/fuzz.py [--total 10000 | --per-property N] [--seed S]``.

``--total`` (default 10,000) is the number of cases across all properties, spread evenly (five
properties: 2,000 each); ``--per-property`` sets each property's count instead. Hypothesis may
run a few more (shrinking a failure) or fewer (a small search space is exhausted); the tally
shows what actually ran. Nothing needs Docker. Exit status is pytest's (0: every property held).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_FILE = ROOT / "tests" / "unit" / "test_fuzz.py"
#: test function → its key in test_fuzz.CASES
PROPERTIES = {
    "test_fuzz_hcl_validate_and_render": "hcl",
    "test_fuzz_expand_always_one_envelope": "expand",
    "test_fuzz_config": "config",
    "test_fuzz_command_lines": "argv",
    "test_fuzz_plugin_mode_answers_with_one_envelope": "plugin",
}


class Tally:
    """A pytest plugin that remembers each property's outcome and duration."""

    def __init__(self) -> None:
        self.outcomes: dict[str, tuple[str, float]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.outcomes[name] = (report.outcome, report.duration)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=10_000,
                        help="cases across all properties (default 10000)")
    parser.add_argument("--per-property", type=int, help="cases per property (overrides --total)")
    parser.add_argument("--seed", help="hypothesis seed, to repeat a run")
    parser.add_argument("--stats", action="store_true",
                        help="also print hypothesis' statistics (outcome mix)")
    args = parser.parse_args()
    per_property = args.per_property or max(1, args.total // len(PROPERTIES))
    os.environ["VOODU_FUZZ_EXAMPLES"] = str(per_property)
    os.chdir(ROOT)

    tally = Tally()
    pytest_args = [str(TEST_FILE), "-q", "-p", "no:cacheprovider"]
    if args.stats:
        pytest_args.append("--hypothesis-show-statistics")
    if args.seed is not None:
        pytest_args.append(f"--hypothesis-seed={args.seed}")
    print(f"fuzzing {len(PROPERTIES)} properties × {per_property} cases (VOODU_FUZZ_EXAMPLES={per_property})")
    started = time.monotonic()
    status = pytest.main(pytest_args, plugins=[tally])
    elapsed = time.monotonic() - started

    module = next((m for name, m in sys.modules.items() if name.endswith("test_fuzz")), None)
    cases = getattr(module, "CASES", {})
    print()
    print(f"{'property':<50} {'cases':>7} {'result':>8} {'seconds':>8}")
    failures = 0
    for test, key in PROPERTIES.items():
        outcome, duration = tally.outcomes.get(test, ("not run", 0.0))
        failures += outcome != "passed"
        print(f"{test:<50} {cases.get(key, 0):>7} {outcome:>8} {duration:>8.1f}")
    total = sum(cases.get(k, 0) for k in PROPERTIES.values())
    print(f"{'total':<50} {total:>7} {f'{failures} failed':>8} {elapsed:>8.1f}")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
