"""Interrupted operations finish: chaos on a real 3-pod cluster under a write load.

A few iterations of each scenario run in CI (``VOODU_CHAOS_ITERATIONS``, default 2 for promote, 1
for the others); ``bench/chaos.py`` runs many more and prints the tally. Every iteration must end
converged — one writable pod, the recorded primary, the others streaming from it — with no
acknowledged write missing and never two writable pods in any ~50 ms sample.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.chaos import Outcome, apply_killed, concurrent_promotes, promote_killed, rejoin_killed
from tests.integration.conftest import SESSION
from tests.integration.helpers_cli import Cluster
from voodu_postgres.adapters.docker import DockerRuntime

pytestmark = pytest.mark.integration

ITERATIONS = int(os.environ.get("VOODU_CHAOS_ITERATIONS", "2"))
SEED = int(os.environ.get("VOODU_CHAOS_SEED", "0")) or random.randrange(1, 10**6)


@pytest.fixture(scope="module")
def c(runtime: DockerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("chaos")
    cluster = Cluster(runtime=runtime, scope=f"x{SESSION}", name="db", home=work / "home", workdir=work,
                      network=f"vpg-{SESSION}-chaos")
    cluster.apply(replicas=3).ok()
    yield cluster
    cluster.cli("delete", cluster.ref, "--prune", "--yes")


def check(outcome: Outcome) -> None:
    print(f"\n[chaos seed {SEED}] {outcome}")
    assert outcome.converged, outcome
    assert outcome.lost == 0, outcome
    assert outcome.max_writable <= 1, outcome


@pytest.mark.parametrize("i", range(ITERATIONS))
def test_promote_killed_at_a_random_instant_converges(c: Cluster, i: int) -> None:
    check(promote_killed(c, random.Random(SEED + i)))


def test_rejoin_killed_at_a_random_instant_converges(c: Cluster) -> None:
    check(rejoin_killed(c, random.Random(SEED + 100)))


def test_two_concurrent_promotes_never_make_two_writers(c: Cluster) -> None:
    check(concurrent_promotes(c, random.Random(SEED + 200)))


def test_apply_killed_during_a_cold_start_converges(runtime: DockerRuntime, tmp_path: Path) -> None:
    cluster = Cluster(runtime=runtime, scope=f"y{SESSION}", name="db", home=tmp_path / "home", workdir=tmp_path,
                      network=f"vpg-{SESSION}-chaoscold")
    runtime.ensure_network(cluster.network, labels={"org.voodu-postgres.test": SESSION})
    try:
        check(apply_killed(cluster, random.Random(SEED + 300)))
    finally:
        cluster.cli("delete", cluster.ref, "--prune", "--yes")
