"""The pod machine drives: every pod step the planner emits names its transition, the executor
runs it only when the table allows it, and a table row is the *only* thing that permits its
behaviour — take any row out and what it allowed is neither planned nor executed.

Situations come from a seeded generator of (desired, observed) pairs over 1–3 pods plus a surplus
one: every container state the observer reports (absent, stopped, paused, restarting, booting,
primary, streaming or lagging standby, following another host, refused by the split-brain guard,
detached), outdated specs, pending restarts, recorded switchovers and rejoins, synchronous and
automatic failover with a failing primary.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from voodu_postgres.domain.intents import DEFAULT_MAX_LAG, SwitchoverRequest
from voodu_postgres.domain.keys import PRIMARY_ORDINAL_KEY, REJOIN_KEY, SWITCHOVER_KEY, SWITCHOVER_REQUEST_KEY
from voodu_postgres.domain.model import (
    Desired,
    Observed,
    PendingSetting,
    PgStatus,
    Plan,
    PodStatus,
    PrimaryHealth,
    Replica,
    Step,
)
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.reconciler.desired import derive
from voodu_postgres.reconciler.execute import refusal
from voodu_postgres.reconciler.plan import plan
from voodu_postgres.render.expansion import expand
from voodu_postgres.states import pod as pod_machine
from voodu_postgres.states.pod import OBSERVED_TRIGGERS, POD_TRANSITIONS, PodMove, PodView

SITUATIONS = 3000
KINDS = ("absent", "volume only", "exited", "paused", "restarting", "booting", "primary", "standby",
         "lagging", "follows another", "guard", "detached")


def _desired(rng: random.Random) -> Desired:
    replicas = rng.choice((1, 2, 3, 3))
    body: dict[str, Any] = {"replicas": replicas}
    if replicas > 1 and rng.random() < 0.3:
        body["synchronous"] = True
    if replicas > 1 and rng.random() < 0.3:
        body["auto_failover"] = True
    spec = load_spec("shop", "db", body)
    bucket: dict[str, str] = {}
    for action in expand(spec, bucket, generate=lambda: "f" * 64).actions:
        bucket.update(action.kv or {})
    primary = rng.randrange(replicas)
    bucket[PRIMARY_ORDINAL_KEY] = str(primary)
    if rng.random() < 0.3:
        to = rng.randrange(replicas + 1)
        bucket[SWITCHOVER_KEY] = str(to)
        if rng.random() < 0.5:  # asked for by `promote` (planned: the primary served then)
            bucket[SWITCHOVER_REQUEST_KEY] = SwitchoverRequest(
                to=to, source=primary, planned=rng.random() < 0.7, force=rng.random() < 0.3,
                max_lag=rng.choice((0, DEFAULT_MAX_LAG))).to_json()
    if rng.random() < 0.3:
        bucket[REJOIN_KEY] = str(rng.randrange(replicas))
    return derive(spec, bucket, assets_dir=Path("/assets"), network="voodu0")


def _pod(rng: random.Random, d: Desired, ordinal: int, kind: str) -> PodStatus | None:
    if kind == "absent":
        return None
    spec_hash = d.pod(ordinal).spec_hash if ordinal < d.replicas and rng.random() < 0.8 else "old"
    base: dict[str, Any] = {"ordinal": ordinal, "container": d.ref.container(ordinal), "exists": True,
                            "state": "running", "spec_hash": spec_hash, "volume_exists": True,
                            "port": d.port if rng.random() < 0.9 else d.port + 1, "on_network": True}
    pending = (PendingSetting("shared_buffers", "128MB", "256MB"),) if rng.random() < 0.15 else ()
    primary_host = d.host(d.target_primary)
    if kind == "volume only":
        return PodStatus(ordinal=ordinal, container=d.ref.container(ordinal), volume_exists=True)
    if kind in ("exited", "paused", "restarting"):
        return PodStatus(**{**base, "state": kind})
    if kind == "booting":
        return PodStatus(**base, error="connection refused")
    if kind == "guard":
        return PodStatus(**base, guard_tripped=True, error="refused by the split-brain guard")
    if kind == "primary":
        standbys = tuple(Replica(d.app_name(o), rng.choice(("streaming", "catchup")), rng.choice((0, 1 << 30)))
                         for o in range(d.replicas) if o != ordinal)
        sync = d.sync_names if rng.random() < 0.7 else None
        return PodStatus(**base, pg=PgStatus(in_recovery=False, timeline=1, replicas=standbys, pending=pending,
                                             sync_auto=sync, lsn="0/3000000"))
    host = "db-9.shop" if kind == "follows another" else primary_host
    streaming = kind in ("standby", "detached", "follows another")
    pg = PgStatus(in_recovery=True, timeline=1, receiver_status="streaming" if streaming else None,
                  receiver_host=host if streaming else None, conninfo_host=host, pending=pending,
                  received_lsn=f"0/{rng.randrange(1, 4)}000000")
    if kind == "detached":
        return PodStatus(**{**base, "on_network": False}, pg=pg)
    return PodStatus(**base, pg=pg)


def _settled(rng: random.Random, d: Desired) -> list[PodStatus]:
    """A healthy cluster with one thing to roll: an outdated spec, a pending restart, a lowered
    standby minimum on the primary, or a new port for every pod."""
    P = d.target_primary
    pods: list[PodStatus] = []
    for o in range(d.replicas):
        pod = _pod(rng, d, o, "primary" if o == P else "standby")
        assert pod is not None
        pods.append(replace(pod, spec_hash=d.pod(o).spec_hash, port=d.port))
    victim = rng.randrange(d.replicas)
    change = rng.choice(("spec", "pending", "lower", "port"))
    if change == "port":
        return [replace(p, port=d.port + 1) for p in pods]
    if change == "lower":  # a decrease rolls the primary first, even before standbys stream again
        victim = P
        if d.replicas > 1 and rng.random() < 0.5:
            lagging = rng.choice([o for o in range(d.replicas) if o != P])
            pods[lagging] = replace(pods[lagging], pg=PgStatus(in_recovery=True, timeline=1))
    pod = pods[victim]
    if change == "spec":
        pods[victim] = replace(pod, spec_hash="old")
    elif pod.pg is not None:
        setting = (PendingSetting("max_connections", "200", "100") if change == "lower"
                   else PendingSetting("shared_buffers", "128MB", "256MB"))
        pods[victim] = replace(pod, pg=replace(pod.pg, pending=(setting,), sync_auto=d.sync_names))
    return pods


def situation(rng: random.Random) -> tuple[Desired, Observed]:
    d = _desired(rng)
    if d.switchover is None and not d.rejoin and rng.random() < 0.3:
        pods = _settled(rng, d)
    else:
        pods = [p for o in range(d.replicas + 1)
                if (p := _pod(rng, d, o, rng.choice(KINDS) if o < d.replicas else rng.choice(KINDS[:8])))
                is not None]
    health = PrimaryHealth()
    if rng.random() < 0.3:
        health = PrimaryHealth(failing_for=120.0, problem="its container exited", failed_probes=5,
                               last_lsn=0x3000000, sync_in_force=rng.choice((True, False, None)))
    digests = {f.name: f.sha256 for f in d.files}
    return d, Observed(ref=d.ref, pods=tuple(pods), network_exists=True, asset_digests=digests, health=health)


@cache
def corpus() -> list[tuple[Desired, Observed, Plan]]:
    """The seeded situations and the plan of each (with the whole table), computed once."""
    rng = random.Random(20261206)
    return [(d, o, plan(d, o)) for d, o in (situation(rng) for _ in range(SITUATIONS))]


def matching_rows(move: PodMove, table: list[dict[str, Any]] | None = None) -> list[int]:
    """Indexes of the rows that would let ``move`` happen (its trigger, its role, every guard)."""
    rows = POD_TRANSITIONS if table is None else table
    return [i for i, row in enumerate(rows) if _matches(row, move.trigger, move.role, move.view)]


def _matches(row: Mapping[str, Any], trigger: str, role: Any, view: PodView) -> bool:
    sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
    return (row["trigger"] == trigger and role in sources
            and all(guard(view) for guard in row.get("conditions", []))
            and not any(guard(view) for guard in row.get("unless", [])))


def _moves(step: Step) -> list[PodMove]:
    moves = [m for m in step.moves if isinstance(m, PodMove)]
    assert len(moves) == len(step.moves)
    return moves


@cache
def witnesses() -> dict[int, list[tuple[Desired, Observed, Step, PodMove]]]:
    """Row index → situations where a planned move was allowed by that row alone."""
    found: dict[int, list[tuple[Desired, Observed, Step, PodMove]]] = defaultdict(list)
    for d, o, p in corpus():
        for step in p.steps:
            for move in _moves(step):
                rows = matching_rows(move)
                if len(rows) == 1 and len(found[rows[0]]) < 20:
                    found[rows[0]].append((d, o, step, move))
    return dict(found)


def test_every_planned_pod_step_names_an_allowed_transition() -> None:
    for d, _o, p in corpus():
        for step in p.steps:
            assert refusal(step) is None, (step, d.ref)


def test_every_row_a_step_performs_is_witnessed_by_the_generator() -> None:
    performed = {i for i, row in enumerate(POD_TRANSITIONS) if row["trigger"] not in OBSERVED_TRIGGERS}
    missing = sorted(performed - set(witnesses()))
    assert not missing, [f"{POD_TRANSITIONS[i]['trigger']} from {POD_TRANSITIONS[i]['source']}" for i in missing]


@pytest.mark.parametrize("index", [i for i, row in enumerate(POD_TRANSITIONS) if row["trigger"] not in OBSERVED_TRIGGERS])
def test_removing_a_row_refuses_what_it_allowed(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    found = witnesses()[index]
    assert found
    monkeypatch.setattr(pod_machine, "POD_TRANSITIONS", [r for i, r in enumerate(POD_TRANSITIONS) if i != index])
    for d, o, step, move in found:
        # the executor refuses the step planned under the whole table …
        assert refusal(step) is not None and not move.allowed()
        # … and the planner no longer plans that move for that pod
        again = [(m.trigger, m.name, m.role) for s in plan(d, o).steps for m in _moves(s)]
        assert (move.trigger, move.name, move.role) not in again


def test_observed_transitions_are_never_performed_by_a_step() -> None:
    for _d, _o, p in corpus():
        for step in p.steps:
            assert not {m.trigger for m in step.moves} & OBSERVED_TRIGGERS
