"""Chaos tally: kill -9 voodu-postgres at random instants and count how often the cluster converges.

Runs the scenarios of ``tests/integration/chaos.py`` (the same code CI runs a few iterations of)
N times in rotation on a real 3-pod cluster under a write load — ``promote`` killed at a random
instant then re-run or reconciled, ``rejoin`` killed, two concurrent ``promote``s, and a cold-start
``apply`` killed — and prints one line per run and the tally: runs, converged, acknowledged writes
lost, and the most writable pods seen in one ~50 ms sample.

Usage: ``.venv/bin/python bench/chaos.py [-n 20] [--seed S]`` (needs Docker and the local image:
``bash scripts/setup-docker.sh``). Everything it creates carries the test label and is removed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.chaos import (  # noqa: E402
    Outcome,
    apply_killed,
    concurrent_promotes,
    promote_killed,
    rejoin_killed,
)
from tests.integration.conftest import SESSION, TEST_LABEL  # noqa: E402
from tests.integration.helpers_cli import Cluster  # noqa: E402
from voodu_postgres.adapters.docker import DockerRuntime  # noqa: E402

ROTATION = ("promote", "promote", "rejoin", "concurrent", "apply")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=random.randrange(1, 10**6))
    args = parser.parse_args()
    runtime = DockerRuntime()
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        network = f"vpg-{SESSION}-chaos"
        runtime.ensure_network(network, labels={TEST_LABEL: SESSION})
        c = Cluster(runtime=runtime, scope=f"x{SESSION}", name="db", home=work / "home", workdir=work,
                    network=network)
        try:
            c.apply(replicas=3).ok()
            for i in range(args.runs):
                rng = random.Random(args.seed + i)
                kind = ROTATION[i % len(ROTATION)]
                started = time.monotonic()
                if kind == "promote":
                    outcome = promote_killed(c, rng)
                elif kind == "rejoin":
                    outcome = rejoin_killed(c, rng)
                elif kind == "concurrent":
                    outcome = concurrent_promotes(c, rng)
                else:
                    fresh = Cluster(runtime=runtime, scope=f"y{SESSION}{i}", name="db", home=work / f"h{i}",
                                    workdir=work, network=network)
                    try:
                        outcome = apply_killed(fresh, rng)
                    finally:
                        fresh.cli("delete", fresh.ref, "--prune", "--yes")
                outcomes.append(outcome)
                print(f"{i + 1:3d} {outcome.scenario:<20} kill@{outcome.kill_at:5.2f}s converged={outcome.converged} "
                      f"lost={outcome.lost} max_writable={outcome.max_writable} acked={outcome.acked} "
                      f"({time.monotonic() - started:.0f}s) {outcome.detail}", flush=True)
        finally:
            c.cli("delete", c.ref, "--prune", "--yes")
            runtime.remove_labelled(f"{TEST_LABEL}={SESSION}")
    by = Counter(o.scenario for o in outcomes)
    converged = sum(o.converged for o in outcomes)
    lost = sum(max(o.lost, 0) for o in outcomes)
    most = max((o.max_writable for o in outcomes), default=0)
    print(f"\nseed {args.seed}: runs {len(outcomes)} ({dict(by)}), converged {converged}, "
          f"acknowledged writes lost {lost}, max writable pods in one sample {most}")
    return 0 if converged == len(outcomes) and lost == 0 and most <= 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
