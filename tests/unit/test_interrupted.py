"""Interrupted operations finish: a promote or rejoin killed at each of its phases leaves recorded
intents (PG_SWITCHOVER_TO, PG_REJOIN); the reconciler (and re-running the command) drives the
cluster back to one writable primary with every other pod streaming from it. On the in-memory
runtime, phase by phase; the real-Docker chaos tests kill real processes at random instants."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.fake_runtime import Harness
from voodu_postgres.adapters.files import write_state
from voodu_postgres.domain.model import StepKind
from voodu_postgres.reconciler import switchover as failover

pytestmark = pytest.mark.usefixtures("never_really_sleep")


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    harness = Harness(tmp_path)
    assert harness.apply(replicas=3).converged
    return harness


def bucket(h: Harness) -> dict[str, str]:
    return h.store.resolve("shop", "db")


def healed(h: Harness, primary: int) -> None:
    report = h.apply(replicas=3)
    assert report.converged, report.message
    others = ", ".join(f"db-{o} streaming" for o in range(3) if o != primary)
    assert report.message.startswith("shop/db: no action"), report.message
    assert f"db-{primary} primary" in report.message and all(
        f"db-{o} streaming" in report.message for o in range(3) if o != primary), (report.message, others)
    b = bucket(h)
    assert b["PG_PRIMARY_ORDINAL"] == str(primary)
    assert not b.get("PG_SWITCHOVER_TO") and not b.get("PG_REJOIN")
    writable = [p.ordinal for p in h.observe(replicas=3).pods if p.writable]
    assert writable == [primary]


def kinds(h: Harness) -> list[StepKind]:
    return [o.step.kind for o in h.apply(replicas=3).outcomes]


def test_killed_after_the_intent_before_the_fence_rolls_back(h: Harness) -> None:
    h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": "1"})
    assert StepKind.CLEAR_SWITCHOVER in kinds(h)
    healed(h, 0)


def test_killed_after_the_fence_rolls_forward(h: Harness) -> None:
    h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": "1"})
    h.fake.stop_container(h.container(0))
    done = kinds(h)
    assert done[:2] == [StepKind.PROMOTE, StepKind.RECORD_PRIMARY], done
    assert StepKind.REJOIN in done and StepKind.START_POD not in done[:3]
    healed(h, 1)


def test_killed_after_pg_promote_before_the_flip_rolls_forward(h: Harness) -> None:
    h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": "2"})
    h.fake.stop_container(h.container(0))
    assert h.psql(2, "SELECT pg_promote(true, 60)").exit_code == 0
    done = kinds(h)
    assert done[0] is StepKind.RECORD_PRIMARY, done
    healed(h, 2)


def test_killed_after_the_flip_repoints_the_other_standby_and_rejoins_the_old_primary(h: Harness) -> None:
    h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": "1"})
    h.fake.stop_container(h.container(0))
    assert h.psql(1, "SELECT pg_promote(true, 60)").exit_code == 0
    h.store.patch("shop", "db", {"PG_PRIMARY_ORDINAL": "1", "PG_SWITCHOVER_TO": "", "PG_REJOIN": "0"})
    write_state(h.state_dir(), {"primary_ordinal": "1"})
    done = kinds(h)
    assert StepKind.REPOINT in done and StepKind.REJOIN in done, done
    healed(h, 1)


def test_rerunning_the_interrupted_promote_finishes_it_and_says_so(h: Harness) -> None:
    h.store.patch("shop", "db", {"PG_SWITCHOVER_TO": "1"})
    h.fake.stop_container(h.container(0))
    message = failover.promote(h.spec(replicas=3), h.ctx, target=1)
    assert "finished an interrupted switchover" in message
    healed(h, 1)


def test_a_rejoin_killed_midway_is_finished_by_reconcile(h: Harness) -> None:
    failover.promote(h.spec(replicas=3), h.ctx, target=1, no_restart=True)
    assert bucket(h)["PG_REJOIN"] == "0"
    # killed after recording the intent and stopping nothing more: the old primary is still down
    done = kinds(h)
    assert StepKind.REJOIN in done and StepKind.START_POD not in done, done
    healed(h, 1)
