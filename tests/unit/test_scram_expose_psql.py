"""SCRAM verifiers, expose and psql decisions (pure; no Docker)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_plan import a_primary, a_standby, desired_for, observed
from voodu_postgres.commands.expose import decide_expose
from voodu_postgres.commands.facts import Facts, spec_from_statefulset
from voodu_postgres.commands.psql import decide_psql
from voodu_postgres.domain.errors import CommandError
from voodu_postgres.domain.model import PodStatus
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.render import scram
from voodu_postgres.render.expansion import expand

# -- SCRAM -------------------------------------------------------------------------------------


def test_verifier_format_and_round_trip() -> None:
    v = scram.verifier("s3cret", salt=b"0123456789abcdef")
    method, params, keys = v.split("$")
    assert method == "SCRAM-SHA-256" and params.startswith("4096:") and ":" in keys
    assert scram.matches("s3cret", v)
    assert not scram.matches("s3cret!", v)
    assert scram.verifier("s3cret", salt=b"0123456789abcdef") == v  # deterministic for a salt
    assert scram.verifier("s3cret") != scram.verifier("s3cret")  # random salt otherwise


def test_known_vector() -> None:
    # computed independently (RFC 7677 algorithm) for password "pencil", salt "W22ZaJ0SNY7soEsUEjb6gQ==", 4096
    import base64

    v = scram.verifier("pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    assert v == ("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
                 "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")


@pytest.mark.parametrize("stored", ["", "md5abc", "SCRAM-SHA-256$x:y$z:w", "SCRAM-SHA-256$4096:!!$a:b"])
def test_malformed_or_other_verifiers_never_match(stored: str) -> None:
    assert not scram.matches("pencil", stored)


# -- expose ------------------------------------------------------------------------------------


def facts(replicas: int = 3, bucket: dict[str, str] | None = None, plugin: bool = False) -> Facts:
    spec = load_spec("shop", "db", {"replicas": replicas})
    b = {"POSTGRES_PASSWORD": "p" * 64, "POSTGRES_REPLICATION_PASSWORD": "r" * 64, "PG_PRIMARY_ORDINAL": "1",
         **(bucket or {})}
    return Facts(spec, b, expand(spec, b).manifests[1]["spec"], plugin_mode=plugin)


def test_expose_standalone_sets_the_flag_and_publishes_each_pod_on_its_own_port() -> None:
    result = decide_expose(facts(), public=True)
    flag, manifest = (a.to_wire() for a in result.actions)
    assert flag == {"type": "config_set", "scope": "shop", "name": "db", "kv": {"PG_EXPOSE_PUBLIC": "true"},
                    "skip_restart": True}
    assert manifest["type"] == "apply_manifest" and manifest["manifest"]["kind"] == "statefulset"
    assert manifest["manifest"]["spec"]["ports"] == ["0.0.0.0:5432:5432"]
    assert result.data["published"] == {"0": "0.0.0.0:5432", "1": "0.0.0.0:5433", "2": "0.0.0.0:5434"}
    assert "new-password" in result.message


def test_unexpose_and_idempotence() -> None:
    back = decide_expose(facts(bucket={"PG_EXPOSE_PUBLIC": "true"}), public=False)
    assert back.actions[0].to_wire() == {"type": "config_unset", "scope": "shop", "name": "db",
                                         "keys": ["PG_EXPOSE_PUBLIC"], "skip_restart": True}
    assert back.actions[1].manifest and back.actions[1].manifest["spec"]["ports"] == ["5432"]
    assert decide_expose(facts(), public=False).actions == []
    assert decide_expose(facts(bucket={"PG_EXPOSE_PUBLIC": "true"}), public=True).actions == []


def test_expose_under_voodu_with_several_pods_is_refused_naming_the_real_primary() -> None:
    with pytest.raises(CommandError) as err:
        decide_expose(facts(plugin=True), public=True)
    text = str(err.value)
    assert "db-1.shop.voodu:5432" in text and "db-0" not in text and "\n" not in text
    assert decide_expose(facts(replicas=1, plugin=True, bucket={"PG_PRIMARY_ORDINAL": "0"}), public=True).actions


def test_statefulset_round_trips_to_the_connection_fields() -> None:
    spec = load_spec("shop", "db", {"replicas": 2, "user": "app", "database": "data", "port": 5433,
                                    "replication_user": "rep", "image": "postgres:16"})
    sts = expand(spec, {"POSTGRES_PASSWORD": "x", "POSTGRES_REPLICATION_PASSWORD": "y"}).manifests[1]["spec"]
    back = spec_from_statefulset("shop", "db", sts)
    assert (back.user, back.database, back.port, back.replication_user, back.replicas, back.image) == \
        ("app", "data", 5433, "rep", 2, "postgres:16")


# -- psql --------------------------------------------------------------------------------------


def observed_facts(**pods: PodStatus) -> Facts:
    d = desired_for(replicas=2)
    spec = load_spec("shop", "db", {"replicas": 2})
    obs = observed(d, *(pods.values() or (a_primary(d), a_standby(d, 1))))
    return Facts(spec, {"POSTGRES_PASSWORD": "p", "PG_PRIMARY_ORDINAL": "0"}, {}, d, obs)


def argv(result: Any) -> list[str]:
    return list(result.actions[0].command)


def test_psql_targets_the_primary_with_a_tty_only_when_there_is_one() -> None:
    f = observed_facts()
    interactive = decide_psql(f, replica=None, passthrough=[], tty=True)
    assert argv(interactive) == ["docker", "exec", "-it", "shop-db.0", "psql", "-U", "postgres", "-d", "postgres",
                                 "-p", "5432"]
    scripted = decide_psql(f, replica=1, passthrough=["-c", "select 1"], tty=False)
    assert argv(scripted)[2:4] == ["-i", "shop-db.1"] and argv(scripted)[-2:] == ["-c", "select 1"]
    # plugin mode: the terminal is on the operator's side; a script (-c) gets no -t
    assert argv(decide_psql(f, replica=None, passthrough=["-c", "x"], tty=None))[2] == "-i"
    assert argv(decide_psql(f, replica=None, passthrough=[], tty=None))[2] == "-it"


def test_psql_refuses_missing_stopped_and_out_of_range_pods() -> None:
    d = desired_for(replicas=2)
    stopped = PodStatus(ordinal=1, container="shop-db.1", exists=True, state="exited")
    f = observed_facts(p=a_primary(d), s=stopped)
    with pytest.raises(CommandError, match="exited, not running"):
        decide_psql(f, replica=1, passthrough=[], tty=False)
    with pytest.raises(CommandError, match="out of range"):
        decide_psql(f, replica=5, passthrough=[], tty=False)
    with pytest.raises(CommandError, match="does not exist"):
        decide_psql(observed_facts(p=a_primary(d)), replica=1, passthrough=[], tty=False)
