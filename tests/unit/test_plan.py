"""The planner over hand-built observed states (no Docker): situation → steps + report sentence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voodu_postgres.domain.model import (
    Desired,
    Observed,
    PendingSetting,
    PgStatus,
    PodStatus,
    Replica,
    StepKind,
)
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.reconciler.desired import derive
from voodu_postgres.reconciler.plan import plan
from voodu_postgres.render.expansion import expand


def desired_for(replicas: int = 3, primary: int = 0, **body: Any) -> Desired:
    spec = load_spec("shop", "db", {"replicas": replicas, **body})
    bucket: dict[str, str] = {}
    for action in expand(spec, bucket, generate=lambda: "f" * 64).actions:
        bucket.update(action.kv or {})
    bucket["PG_PRIMARY_ORDINAL"] = str(primary)
    return derive(spec, bucket, assets_dir=Path("/assets"), network="voodu0")


def _hash(d: Desired, ordinal: int, override: str | None) -> str:
    return override or (d.pod(ordinal).spec_hash if ordinal < d.replicas else "x")


def a_primary(d: Desired, ordinal: int = 0, *, spec_hash: str | None = None,
              pending: tuple[PendingSetting, ...] = ()) -> PodStatus:
    standbys = tuple(Replica(d.app_name(o), "streaming", 0) for o in range(d.replicas) if o != ordinal)
    return PodStatus(ordinal=ordinal, container=d.ref.container(ordinal), exists=True, state="running",
                     spec_hash=_hash(d, ordinal, spec_hash), volume_exists=True,
                     pg=PgStatus(in_recovery=False, timeline=1, replicas=standbys, pending=pending))


def a_standby(d: Desired, ordinal: int, *, streaming: bool = True, pending: tuple[PendingSetting, ...] = (),
              spec_hash: str | None = None) -> PodStatus:
    pg = PgStatus(in_recovery=True, timeline=1, receiver_status="streaming" if streaming else None,
                  receiver_host=d.host(d.target_primary) if streaming else None, pending=pending)
    return PodStatus(ordinal=ordinal, container=d.ref.container(ordinal), exists=True, state="running",
                     spec_hash=_hash(d, ordinal, spec_hash), pg=pg, volume_exists=True)


def booting(d: Desired, ordinal: int) -> PodStatus:
    return PodStatus(ordinal=ordinal, container=d.ref.container(ordinal), exists=True, state="running",
                     spec_hash=d.pod(ordinal).spec_hash, error="connection refused")


def observed(d: Desired, *pods: PodStatus, assets: bool = True, network: bool = True) -> Observed:
    digests = {f.name: f.sha256 for f in d.files} if assets else {}
    return Observed(ref=d.ref, pods=tuple(sorted(pods, key=lambda p: p.ordinal)), network_exists=network,
                    asset_digests=digests)


def healthy(d: Desired) -> Observed:
    return observed(d, a_primary(d), *[a_standby(d, o) for o in range(1, d.replicas)])


def kinds(p: Any) -> list[tuple[StepKind, int | None]]:
    return [(s.kind, s.ordinal) for s in p.steps]


def test_cold_start_creates_network_assets_and_only_the_primary() -> None:
    d = desired_for()
    p = plan(d, observed(d, assets=False, network=False))
    assert kinds(p) == [(StepKind.ENSURE_NETWORK, None), (StepKind.WRITE_ASSETS, None), (StepKind.CREATE_POD, 0)]
    assert [str(w) for w in p.waiting] == ["db-0 to serve before db-1 can clone", "db-0 to serve before db-2 can clone"]


def test_waits_while_the_primary_boots_no_fixed_sleep() -> None:
    d = desired_for()
    p = plan(d, observed(d, booting(d, 0)))
    assert not p.steps and p.waiting[0].ordinal == 0
    assert p.message.startswith("shop/db: waiting for db-0 to accept connections")


def test_standbys_are_created_together_once_the_primary_serves() -> None:
    d = desired_for()
    p = plan(d, observed(d, a_primary(d)))
    assert kinds(p) == [(StepKind.CREATE_POD, 1), (StepKind.CREATE_POD, 2)]


def test_healthy_cluster_plans_nothing_and_says_so() -> None:
    d = desired_for()
    p = plan(d, healthy(d))
    assert p.converged and not p.steps
    assert p.message == "shop/db: no action: db-0 primary, db-1 streaming, db-2 streaming"


def test_cloning_standby_is_waited_for() -> None:
    d = desired_for(replicas=2)
    p = plan(d, observed(d, a_primary(d), booting(d, 1)))
    assert not p.steps and str(p.waiting[0]) == "db-1 to finish cloning and start streaming"


def test_standby_not_streaming_from_the_primary_is_not_converged() -> None:
    d = desired_for(replicas=2)
    p = plan(d, observed(d, a_primary(d), a_standby(d, 1, streaming=False)))
    assert not p.converged and str(p.waiting[0]) == "db-1 to stream from db-0"


def test_removed_container_is_recreated_and_keeps_its_volume() -> None:
    d = desired_for()
    gone = PodStatus(ordinal=2, container=d.ref.container(2), volume_exists=True)
    p = plan(d, observed(d, a_primary(d), a_standby(d, 1), gone))
    assert kinds(p) == [(StepKind.CREATE_POD, 2)]
    assert "data volume kept" in p.steps[0].reason


def test_stopped_container_is_started_not_recreated() -> None:
    d = desired_for()
    stopped = PodStatus(ordinal=1, container=d.ref.container(1), exists=True, state="exited",
                        spec_hash=d.pod(1).spec_hash, volume_exists=True)
    assert kinds(plan(d, observed(d, a_primary(d), stopped, a_standby(d, 2)))) == [(StepKind.START_POD, 1)]


def test_crash_looping_pod_is_waited_on_not_restarted() -> None:
    d = desired_for(replicas=2)
    looping = PodStatus(ordinal=1, container=d.ref.container(1), exists=True, state="restarting", restart_count=4)
    p = plan(d, observed(d, a_primary(d), looping))
    assert not p.steps and "restarting" in str(p.waiting[0])


def test_scale_up_adds_only_the_new_ordinals() -> None:
    d = desired_for(replicas=5)
    old = desired_for(replicas=3)
    p = plan(d, observed(d, a_primary(d), a_standby(old, 1), a_standby(old, 2)))
    assert kinds(p) == [(StepKind.CREATE_POD, 3), (StepKind.CREATE_POD, 4)]


def test_scale_down_removes_highest_ordinals_first() -> None:
    big = desired_for(replicas=5)
    d = desired_for(replicas=2)
    p = plan(d, observed(d, a_primary(d), a_standby(d, 1), *[a_standby(big, o) for o in (2, 3, 4)]))
    assert kinds(p) == [(StepKind.REMOVE_POD, 4), (StepKind.REMOVE_POD, 3), (StepKind.REMOVE_POD, 2)]
    assert all("volume is kept" in s.reason for s in p.steps)


def test_scale_down_refuses_to_remove_the_primary() -> None:
    big = desired_for(replicas=3, primary=2)
    d = desired_for(replicas=2, primary=2)
    p = plan(d, observed(d, a_standby(big, 0), a_standby(big, 1), a_primary(big, 2)))
    assert not p.steps
    assert "it would remove db-2, the current primary" in p.blocked[0]


def test_outdated_spec_rolls_one_standby_at_a_time_highest_first() -> None:
    d = desired_for()
    stale = observed(d, a_primary(d, spec_hash="old"), a_standby(d, 1, spec_hash="old"),
                     a_standby(d, 2, spec_hash="old"))
    p = plan(d, stale)
    assert kinds(p) == [(StepKind.RECREATE_POD, 2)]


def test_primary_rolls_last() -> None:
    d = desired_for()
    p = plan(d, observed(d, a_primary(d, spec_hash="old"), a_standby(d, 1), a_standby(d, 2)))
    assert kinds(p) == [(StepKind.RECREATE_POD, 0)]


def test_no_roll_while_a_standby_is_still_catching_up() -> None:
    d = desired_for()
    p = plan(d, observed(d, a_primary(d, spec_hash="old"), a_standby(d, 1), booting(d, 2)))
    assert not p.steps


def test_pg_config_change_is_a_reload_not_a_restart() -> None:
    d = desired_for()
    stale_assets = {f.name: f.sha256 for f in d.files} | {"pg_overrides_conf": "old"}
    obs = Observed(ref=d.ref, pods=healthy(d).pods, asset_digests=stale_assets)
    assert kinds(plan(d, obs)) == [(StepKind.WRITE_ASSETS, None), (StepKind.RELOAD_CONFIG, None)]


def test_pending_restart_rolls_standbys_first() -> None:
    d = desired_for()
    up = (PendingSetting("shared_buffers", "16384", "32768"),)
    obs = observed(d, a_primary(d), a_standby(d, 1, pending=up), a_standby(d, 2, pending=up))
    assert kinds(plan(d, obs)) == [(StepKind.RESTART_POD, 2)]


def test_lowering_a_standby_minimum_restarts_the_primary_first() -> None:
    d = desired_for()
    down = (PendingSetting("max_connections", "200", "150"),)
    obs = observed(d, a_primary(d, pending=down), a_standby(d, 1, pending=down), a_standby(d, 2, pending=down))
    p = plan(d, obs)
    assert kinds(p) == [(StepKind.RESTART_POD, 0)] and "primary first" in p.steps[0].reason


def test_two_writable_pods_is_split_brain_and_nothing_is_started() -> None:
    d = desired_for(replicas=2)
    p = plan(d, observed(d, a_primary(d), a_primary(d, 1)))
    assert not p.steps
    assert any("split brain" in b for b in p.blocked)
    assert p.message.startswith("shop/db: blocked: split brain: db-1 accept(s) writes next to the primary db-0")
    assert not p.converged


def test_guard_tripped_standby_is_rejoined_by_the_reconciler() -> None:
    d = desired_for(replicas=2)
    tripped = PodStatus(ordinal=1, container=d.ref.container(1), exists=True, state="restarting",
                        guard_tripped=True, volume_exists=True)
    p = plan(d, observed(d, a_primary(d), tripped))
    assert kinds(p) == [(StepKind.REJOIN, 1)]
    # …but only onto a serving primary
    assert kinds(plan(d, observed(d, booting(d, 0), tripped))) == []


def test_primary_is_not_started_while_another_pod_accepts_writes() -> None:
    d = desired_for(replicas=2)
    down = PodStatus(ordinal=0, container=d.ref.container(0), exists=True, state="exited", volume_exists=True)
    p = plan(d, observed(d, down, a_primary(d, 1)))
    assert (StepKind.START_POD, 0) not in kinds(p)
    assert any("already accepts writes" in b or "split brain" in b for b in p.blocked)


@pytest.mark.parametrize("replicas", [1, 2, 4])
def test_single_and_multi_pod_clusters_converge_when_healthy(replicas: int) -> None:
    d = desired_for(replicas=replicas)
    assert plan(d, healthy(d)).converged


def with_bucket(replicas: int = 3, **extra: str) -> Desired:
    spec = load_spec("shop", "db", {"replicas": replicas})
    bucket: dict[str, str] = {}
    for action in expand(spec, bucket, generate=lambda: "f" * 64).actions:
        bucket.update(action.kv or {})
    bucket.update(extra)
    return derive(spec, bucket, assets_dir=Path("/assets"), network="voodu0")


def stopped(d: Desired, ordinal: int) -> PodStatus:
    return PodStatus(ordinal=ordinal, container=d.ref.container(ordinal), exists=True, state="exited",
                     spec_hash=d.pod(ordinal).spec_hash, volume_exists=True)


def test_interrupted_switchover_rolls_forward_once_the_old_primary_is_fenced() -> None:
    d = with_bucket(PG_SWITCHOVER_TO="1")
    p = plan(d, observed(d, stopped(d, 0), a_standby(d, 1, streaming=False), a_standby(d, 2, streaming=False)))
    assert kinds(p) == [(StepKind.PROMOTE, 1)], "a fenced old primary must not be restarted mid-switchover"
    assert not p.converged


def test_interrupted_switchover_whose_target_was_promoted_records_it() -> None:
    d = with_bucket(PG_SWITCHOVER_TO="2")
    p = plan(d, observed(d, stopped(d, 0), a_standby(d, 1, streaming=False), a_primary(d, 2)))
    assert kinds(p) == [(StepKind.RECORD_PRIMARY, 2)]
    # both writable: refuse rather than guess which writes to keep
    p = plan(d, observed(d, a_primary(d), a_standby(d, 1), a_primary(d, 2)))
    assert kinds(p) == [] and "both accept writes" in p.blocked[0]


def test_interrupted_switchover_rolls_back_while_the_old_primary_serves() -> None:
    d = with_bucket(PG_SWITCHOVER_TO="1")
    assert kinds(plan(d, healthy(d))) == [(StepKind.CLEAR_SWITCHOVER, 1)]
    # the target is down and the old primary serves: nothing was promoted
    gone = PodStatus(ordinal=1, container=d.ref.container(1), exists=False, state="absent")
    assert kinds(plan(d, observed(d, a_primary(d), gone, a_standby(d, 2)))) == [(StepKind.CLEAR_SWITCHOVER, 1)]
    # the target is down and the old primary fenced: a human decides
    p = plan(d, observed(d, stopped(d, 0), gone, a_standby(d, 2, streaming=False)))
    assert kinds(p) == [] and "cannot finish" in p.blocked[0]


def test_former_primary_is_fenced_rewound_then_forgotten() -> None:
    d = with_bucket(PG_PRIMARY_ORDINAL="1", PG_REJOIN="0")
    still_writable = a_primary(d, 0)
    new_primary = a_primary(d, 1)
    assert kinds(plan(d, observed(d, still_writable, new_primary, a_standby(d, 2)))) == [(StepKind.FENCE, 0)]
    assert kinds(plan(d, observed(d, stopped(d, 0), new_primary, a_standby(d, 2)))) == [(StepKind.REJOIN, 0)]
    rejoining = observed(d, booting(d, 0), new_primary, a_standby(d, 2))
    p = plan(d, rejoining)
    assert kinds(p) == [] and "db-0 to rejoin db-1" in str(p.waiting[0])
    assert kinds(plan(d, observed(d, a_standby(d, 0), new_primary, a_standby(d, 2)))) == [(StepKind.CLEAR_REJOIN, 0)]


def test_standby_following_another_host_is_repointed_by_reload() -> None:
    d = desired_for(replicas=3, primary=1)
    lost = PodStatus(ordinal=2, container=d.ref.container(2), exists=True, state="running",
                     spec_hash=d.pod(2).spec_hash, volume_exists=True,
                     pg=PgStatus(in_recovery=True, conninfo_host=d.host(0)))
    p = plan(d, observed(d, a_standby(d, 0), a_primary(d, 1), lost))
    assert kinds(p) == [(StepKind.REPOINT, 2)]


def test_surplus_writer_is_reported_as_split_brain_not_as_the_primary() -> None:
    d = desired_for(replicas=2)
    p = plan(d, observed(d, a_primary(d), a_standby(d, 1), a_primary(d, 2)))
    assert (StepKind.REMOVE_POD, 2) not in kinds(p)
    assert any("db-2" in b and "split brain" in b for b in p.blocked)
    assert not any("current primary" in b for b in p.blocked)
    assert not p.converged


def test_synchronous_standby_names_set_once_a_standby_streams() -> None:
    d = desired_for(replicas=3, synchronous=True)
    assert d.sync_names == 'ANY 1 ("db-1", "db-2")'
    assert kinds(plan(d, healthy(d))) == [(StepKind.SET_SYNC, 0)]
    # not while no standby streams: every commit would hang
    assert (StepKind.SET_SYNC, 0) not in kinds(plan(d, observed(d, a_primary(d), booting(d, 1), booting(d, 2))))


def test_synchronous_names_follow_the_primary() -> None:
    d = desired_for(replicas=3, primary=1, synchronous=True)
    assert d.sync_names == 'ANY 1 ("db-0", "db-2")'


def test_synchronous_off_resets_a_value_we_set() -> None:
    d = desired_for(replicas=2)
    primary = a_primary(d)
    assert primary.pg is not None
    stale = PodStatus(**{**primary.__dict__, "pg": PgStatus(**{**primary.pg.__dict__, "sync_auto": 'ANY 1 ("db-1")'})})
    assert kinds(plan(d, observed(d, stale, a_standby(d, 1)))) == [(StepKind.SET_SYNC, 0)]


def test_port_change_moves_every_pod_at_once_primary_first() -> None:
    d = desired_for(replicas=3, port=5434)
    old = [PodStatus(**{**p.__dict__, "port": 5433, "spec_hash": "old"}) for p in healthy(d).pods]
    p = plan(d, observed(d, *old))
    assert kinds(p) == [(StepKind.RECREATE_POD, 0), (StepKind.RECREATE_POD, 2), (StepKind.RECREATE_POD, 1)]


def test_standby_booted_on_a_raised_setting_is_restarted_once_caught_up() -> None:
    d = desired_for(replicas=2)
    standby = a_standby(d, 1)
    assert standby.pg is not None
    raised = PodStatus(**{**standby.__dict__,
                          "pg": PgStatus(**{**standby.pg.__dict__, "boot_overrides": ("max_connections",)})})
    p = plan(d, observed(d, a_primary(d), raised))
    assert kinds(p) == [(StepKind.RESTART_POD, 1)] and "configured value" in p.steps[0].reason


def test_primary_without_data_is_not_reinitialised_next_to_standbys_with_data() -> None:
    d = desired_for(replicas=3)
    gone = PodStatus(ordinal=0, container=d.ref.container(0))  # no container, no volume
    p = plan(d, observed(d, gone, a_standby(d, 1), a_standby(d, 2)))
    assert (StepKind.CREATE_POD, 0) not in kinds(p)
    assert "refusing to initialise an empty primary" in p.blocked[0]
    assert "promote shop/db --replica N --force" in p.blocked[0]
