"""info: the snapshot built from desired + observed state, and its text form (no Docker)."""

from __future__ import annotations

from tests.unit.test_plan import a_primary, a_standby, booting, desired_for, observed
from voodu_postgres.commands.facts import Facts
from voodu_postgres.commands.info import format_info, info_snapshot, redact
from voodu_postgres.domain.spec import load_spec

SECRET = "f" * 64


def snapshot(**body: object) -> dict[str, object]:
    d = desired_for(replicas=3, **body)  # type: ignore[arg-type]
    spec = load_spec("shop", "db", {"replicas": 3, **body})
    obs = observed(d, a_primary(d), a_standby(d, 1), booting(d, 2))
    bucket = {"POSTGRES_PASSWORD": SECRET, "POSTGRES_REPLICATION_PASSWORD": SECRET,
              "POSTGRES_LINKED_CONSUMERS": "shop/web, shop/worker"}
    return info_snapshot(Facts(spec, bucket, {}, d, obs))


def test_snapshot_has_the_go_fields_and_observed_pods() -> None:
    snap = snapshot()
    for key in ("ref", "image", "replicas", "primary_ordinal", "primary_fqdn", "standby_fqdns", "super_user",
                "database", "port", "replication_user", "password_redacted", "replication_password_redacted",
                "exposed", "bind_address", "linked_consumers", "pods"):
        assert key in snap, key
    assert snap["primary_fqdn"] == "db-0.shop.voodu"
    assert snap["standby_fqdns"] == ["db-1.shop.voodu", "db-2.shop.voodu"]
    assert snap["linked_consumers"] == ["shop/web", "shop/worker"]
    pods = snap["pods"]
    assert isinstance(pods, list)
    assert [p["role"] for p in pods] == ["primary", "standby", "bootstrapping"]
    assert pods[1]["streaming_from_primary"] is True and pods[1]["replay_lag_bytes"] == 0


def test_secrets_never_appear_in_any_form() -> None:
    snap = snapshot()
    text = format_info(snap)
    assert SECRET[:8] not in text and SECRET[:8] not in str(snap)
    assert snap["password_redacted"] == "<set, 64 chars>"
    assert redact("") == "<unset>"


def test_text_lists_every_pod_and_the_consumers() -> None:
    text = format_info(snapshot())
    assert "postgres shop/db" in text and "bootstrapping" in text and "linked consumers (2)" in text


def test_the_last_failover_and_the_policy_are_shown() -> None:
    d = desired_for(replicas=3)
    spec = load_spec("shop", "db", {"replicas": 3, "auto_failover": True, "failover_timeout": "3s"})
    record = ('{"at": "2026-12-01T03:12:09Z", "epoch": 1.0, "from": 0, "to": 2, "lost_bytes": 512, '
              '"problem": "its container is paused", "synchronous": false, "received_lsn": "0/300"}')
    bucket = {"POSTGRES_PASSWORD": SECRET, "PG_LAST_FAILOVER": record}
    snap = info_snapshot(Facts(spec, bucket, {}, d, observed(d, a_primary(d))))
    assert snap["last_failover"] == {"at": "2026-12-01T03:12:09Z", "from": 0, "to": 2, "lost_bytes": 512,
                                     "problem": "its container is paused", "synchronous": False,
                                     "received_lsn": "0/300"}
    text = format_info(snap)
    assert "auto_failover   on: after 3s of a failing primary" in text
    assert "2026-12-01T03:12:09Z: pod-0 → pod-2 (its container is paused); lost up to 512 bytes" in text
    # a hand-broken record is not shown, and does not break info
    bucket["PG_LAST_FAILOVER"] = "{not json"
    assert "last_failover" not in info_snapshot(Facts(spec, bucket, {}, d, observed(d, a_primary(d))))


def test_an_unfinished_physical_restore_is_shown_with_the_command_that_finishes_it() -> None:
    d = desired_for(replicas=3)
    spec = load_spec("shop", "db", {"replicas": 3})
    bucket = {"POSTGRES_PASSWORD": SECRET, "PG_PHYSICAL_RESTORE": "/srv/backups/base 1.tar"}
    snap = info_snapshot(Facts(spec, bucket, {}, d, observed(d)))
    finish = "voodu-postgres restore shop/db --from '/srv/backups/base 1.tar' --yes"
    assert snap["physical_restore_pending"] == {"from": "/srv/backups/base 1.tar", "finish": finish}
    assert f"did not finish (the pods' data is half-replaced); finish it: {finish}" in format_info(snap)
    del bucket["PG_PHYSICAL_RESTORE"]
    after = info_snapshot(Facts(spec, bucket, {}, d, observed(d)))
    assert "physical_restore_pending" not in after and "⚠ restore" not in format_info(after)
