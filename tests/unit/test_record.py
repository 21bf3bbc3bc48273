"""The typed cluster record: what the bucket's intent keys parse to, and the one write each patch is."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from voodu_postgres.domain.intents import SwitchoverRequest
from voodu_postgres.domain.keys import (
    LAST_FAILOVER_KEY,
    PRIMARY_ORDINAL_KEY,
    REJOIN_KEY,
    SWITCHOVER_KEY,
    SWITCHOVER_REQUEST_KEY,
)
from voodu_postgres.domain.record import ClusterRecord


def test_an_empty_bucket_is_a_settled_cluster_on_pod_zero() -> None:
    record = ClusterRecord.of({})
    assert (record.primary, record.switchover, record.request, record.rejoin) == (0, None, None, frozenset())
    assert record.last_failover == {} and record.restore_from is None and not record.failover_fencing


def test_a_request_counts_only_for_the_recorded_target() -> None:
    request = SwitchoverRequest(to=2, source=0, planned=True)
    bucket = {SWITCHOVER_KEY: "2", SWITCHOVER_REQUEST_KEY: request.to_json()}
    assert ClusterRecord.of(bucket).request == request
    assert ClusterRecord.of({**bucket, SWITCHOVER_KEY: "1"}).request is None, "a stale request is ignored"


def test_flip_makes_the_target_primary_records_the_old_one_for_rejoin_and_ends_the_switchover() -> None:
    request = SwitchoverRequest(to=1, source=0, planned=True)
    record = ClusterRecord.of({PRIMARY_ORDINAL_KEY: "0", REJOIN_KEY: "2", **ClusterRecord.ask_switchover(request)})
    assert record.flip(1) == {PRIMARY_ORDINAL_KEY: "1", SWITCHOVER_KEY: "", SWITCHOVER_REQUEST_KEY: "",
                              REJOIN_KEY: "0,2"}


def test_rejoin_marks_and_forgets() -> None:
    record = ClusterRecord.of({PRIMARY_ORDINAL_KEY: "1", REJOIN_KEY: "0"})
    assert record.mark_rejoin(2) == {REJOIN_KEY: "0,2"}
    assert record.forget_rejoin(0) == {REJOIN_KEY: ""}


def test_dropping_a_switchover_drops_a_failover_that_never_got_past_its_fence() -> None:
    fencing = json.dumps({"from": 0, "to": 1, "state": "fencing"})
    record = ClusterRecord.of({SWITCHOVER_KEY: "1", LAST_FAILOVER_KEY: fencing})
    assert record.failover_fencing
    assert record.drop_switchover() == {SWITCHOVER_KEY: "", SWITCHOVER_REQUEST_KEY: "", LAST_FAILOVER_KEY: ""}
    done = json.dumps({"from": 0, "to": 1, "state": "promoted", "epoch": 12.5})
    promoted = ClusterRecord.of({PRIMARY_ORDINAL_KEY: "1", LAST_FAILOVER_KEY: done})
    assert promoted.drop_switchover() == {SWITCHOVER_KEY: "", SWITCHOVER_REQUEST_KEY: ""}
    assert promoted.last_failover_at == 12.5


@given(st.dictionaries(st.sampled_from([PRIMARY_ORDINAL_KEY, SWITCHOVER_KEY, SWITCHOVER_REQUEST_KEY, REJOIN_KEY,
                                        LAST_FAILOVER_KEY]), st.text(max_size=40)))
def test_any_hand_edited_bucket_parses_without_raising(bucket: dict[str, str]) -> None:
    record = ClusterRecord.of(bucket)
    assert record.primary >= 0 and record.primary not in record.rejoin
    assert record.request is None or record.request.to == record.switchover
