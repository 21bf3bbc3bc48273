"""Spec validation: every rule of the postgres block contract, one behaviour per test."""

from __future__ import annotations

from typing import Any

import pytest

from voodu_postgres.domain.spec import PostgresSpec, SpecError, as_int, defaults, load_spec


def load(body: dict[str, Any] | None = None, scope: str = "clowk-lp", name: str = "db") -> PostgresSpec:
    return load_spec(scope, name, body)


def problems(body: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(body)
    return [str(p) for p in info.value.problems]


def one_problem(body: dict[str, Any]) -> str:
    found = problems(body)
    assert len(found) == 1, found
    return found[0]


def test_empty_block_gets_every_default() -> None:
    spec = load(None)
    assert (spec.image, spec.replicas, spec.database, spec.user, spec.port) == (
        "postgres:latest", 1, "postgres", "postgres", 5432)
    assert (spec.initdb_locale, spec.initdb_encoding, spec.replication_user) == ("C.UTF-8", "UTF8", "replicator")
    assert spec.password.get_secret_value() == ""
    assert spec.pg_config == {} and spec.extensions == () and spec.synchronous is False
    assert spec.passthrough == {}


def test_every_owned_field_is_read_back() -> None:
    spec = load({
        "image": "postgres:16", "replicas": 3, "database": "appdata", "user": "appuser",
        "password": "s3cret", "port": 5433, "initdb_locale": "pt_BR.UTF-8", "initdb_encoding": "LATIN1",
        "pg_config": {"max_connections": 200}, "extensions": ["pgvector"], "replication_user": "repl",
        "synchronous": True,
    })
    assert spec.image == "postgres:16" and spec.replicas == 3 and spec.port == 5433
    assert spec.database == "appdata" and spec.user == "appuser" and spec.replication_user == "repl"
    assert spec.password.get_secret_value() == "s3cret"
    assert spec.pg_config == {"max_connections": 200} and spec.extensions == ("pgvector",)
    assert spec.synchronous is True


@pytest.mark.parametrize("field", ["image", "database", "user", "initdb_locale", "initdb_encoding",
                                   "replication_user"])
def test_empty_string_means_default(field: str) -> None:
    assert getattr(load({field: ""}), field) == getattr(load(None), field)


def test_password_is_hidden_in_repr() -> None:
    spec = load({"password": "hunter2hunter2"})
    assert "hunter2" not in repr(spec) and "hunter2" not in str(spec)


@pytest.mark.parametrize("value", [1, 3, 2.0, 7])
def test_replicas_accepts_whole_numbers(value: Any) -> None:
    assert load({"replicas": value}).replicas == int(value)


@pytest.mark.parametrize("value,needle", [
    (0, "replicas = 0 not allowed"), (-1, "replicas = -1 not allowed"),
    (1.5, "expected an integer, got 1.5"), ("3", "expected an integer, got string"),
    (True, "expected an integer, got bool"), (None, "expected an integer, got null"),
])
def test_replicas_rejects(value: Any, needle: str) -> None:
    message = one_problem({"replicas": value})
    assert message.startswith("postgres clowk-lp/db: replicas: ") and needle in message


@pytest.mark.parametrize("port", [1, 1024, 5432, 65535])
def test_port_in_range(port: int) -> None:
    assert load({"port": port}).port == port


@pytest.mark.parametrize("port", [0, -1, 65536, 100000])
def test_port_out_of_range(port: int) -> None:
    assert f"port = {port} not allowed (must be 1..65535)" in one_problem({"port": port})


@pytest.mark.parametrize("field", ["database", "user", "replication_user"])
@pytest.mark.parametrize("bad", ["1abc", "bad-name", "has space", "x" * 64, "café", "a.b", "a;drop"])
def test_identifiers_rejected(field: str, bad: str) -> None:
    body: dict[str, Any] = {field: bad}
    if field == "user":
        body["replication_user"] = "repl"
    message = one_problem(body)
    assert f"{field}: " in message and "not a valid postgres identifier" in message


@pytest.mark.parametrize("good", ["a", "_underscore", "MixedCase", "app2", "x" * 63])
def test_identifiers_accepted(good: str) -> None:
    assert load({"database": good}).database == good


def test_replication_user_must_differ_from_user() -> None:
    message = one_problem({"user": "app", "replication_user": "app"})
    assert "replication_user: must differ from user" in message


def test_replication_user_default_clashes_with_user_replicator() -> None:
    assert "must differ" in one_problem({"user": "replicator"})


@pytest.mark.parametrize("key", ["max_connections", "a", "a1", "_x", "pg_stat_statements.max"])
def test_pg_config_keys_accepted(key: str) -> None:
    assert key in load({"pg_config": {key: 1}}).pg_config


@pytest.mark.parametrize("key", ["Max_connections", "1abc", "a-b", "a=b", "a b", "a\nb", "", "a.b.c"])
def test_pg_config_keys_rejected_anti_injection(key: str) -> None:
    message = one_problem({"pg_config": {key: 1}})
    assert "pg_config: " in message and "not a valid postgres parameter name" in message


@pytest.mark.parametrize("value", [[1, 2], {"x": 1}, None])
def test_pg_config_values_must_be_scalar(value: Any) -> None:
    assert "value must be a string, number or bool" in one_problem({"pg_config": {"work_mem": value}})


def test_pg_config_string_with_newline_rejected() -> None:
    assert "control characters" in one_problem({"pg_config": {"log_line_prefix": "a\nlisten_addresses='*'"}})


def test_pg_config_reports_each_bad_key() -> None:
    found = problems({"pg_config": {"Bad": 1, "also-bad": 2, "fine": 3}})
    assert len(found) == 2


@pytest.mark.parametrize("bad", ["pg-vector", "1x", "", "a;b"])
def test_extensions_must_be_identifiers(bad: str) -> None:
    assert "not a valid extension name" in one_problem({"extensions": ["ok", bad]})


def test_extensions_must_be_a_list() -> None:
    assert "extensions: expected a list, got string" in one_problem({"extensions": "pgvector"})


@pytest.mark.parametrize("field,bad", [("initdb_locale", "C.UTF-8 --auth=trust"), ("initdb_locale", "$(id)"),
                                       ("initdb_encoding", "UTF8;x"), ("initdb_encoding", "UTF 8")])
def test_locale_and_encoding_restricted_to_safe_characters(field: str, bad: str) -> None:
    assert f"{field}: " in one_problem({field: bad})


def test_synchronous_needs_a_standby() -> None:
    assert "synchronous: needs replicas >= 2" in one_problem({"synchronous": True})
    assert load({"synchronous": True, "replicas": 2}).synchronous


def test_synchronous_must_be_bool() -> None:
    assert "synchronous: expected true or false" in one_problem({"synchronous": "yes"})


def test_auto_failover_defaults_off_with_a_5s_timeout_and_16mb_of_lag() -> None:
    spec = load({})
    assert (spec.auto_failover, spec.failover_timeout, spec.max_lag_on_failover) == (False, 5.0, 16 * 1024 * 1024)
    assert "auto_failover" not in spec.passthrough and "failover_timeout" not in spec.passthrough


@pytest.mark.parametrize("raw,seconds", [("5s", 5.0), ("1500ms", 1.5), ("1m", 60.0), (3, 3.0), (2.5, 2.5), ("10", 10.0)])
def test_failover_timeout_forms(raw: Any, seconds: float) -> None:
    assert load({"failover_timeout": raw}).failover_timeout == seconds


@pytest.mark.parametrize("raw,problem", [("0.5s", "not allowed (must be between 1s and 10m)"),
                                         ("11m", "not allowed"), ("5 seconds", "expected a duration"),
                                         (True, "expected a duration"), ("-3s", "expected a duration")])
def test_failover_timeout_refused(raw: Any, problem: str) -> None:
    assert "failover_timeout: " in one_problem({"failover_timeout": raw})
    assert problem in one_problem({"failover_timeout": raw})


@pytest.mark.parametrize("raw,size", [("16MB", 16 * 1024 ** 2), ("1kB", 1024), ("0", 0), (4096, 4096), ("2GB", 2 * 1024 ** 3)])
def test_max_lag_on_failover_forms(raw: Any, size: int) -> None:
    assert load({"max_lag_on_failover": raw}).max_lag_on_failover == size


@pytest.mark.parametrize("raw", ["16 megabytes", -1, "1.5MB", False])
def test_max_lag_on_failover_refused(raw: Any) -> None:
    assert "max_lag_on_failover: " in one_problem({"max_lag_on_failover": raw})


def test_auto_failover_needs_a_standby_and_a_bool() -> None:
    assert "auto_failover: needs replicas >= 2" in one_problem({"auto_failover": True})
    assert "auto_failover: expected true or false" in one_problem({"auto_failover": "on", "replicas": 2})
    assert load({"auto_failover": True, "replicas": 2}).auto_failover


@pytest.mark.parametrize("cpu", ["2", "1.5", "0.25", "500m", "100m", 2])
def test_cpu_quantities_accepted(cpu: Any) -> None:
    spec = load({"resources": {"limits": {"cpu": cpu}}})
    assert spec.passthrough["resources"] == {"limits": {"cpu": str(cpu)}}


@pytest.mark.parametrize("memory", ["4Gi", "512Mi", "256Ki", "4G", "500M", "1500K", "4294967296"])
def test_memory_quantities_accepted(memory: str) -> None:
    assert load({"resources": {"limits": {"memory": memory}}}).passthrough["resources"]["limits"]["memory"] == memory


@pytest.mark.parametrize("limits,needle", [
    ({"cpu": "two"}, 'limits.cpu = "two" is not a valid cpu'),
    ({"cpu": "0"}, "not a valid cpu"),
    ({"memory": "4GB"}, 'limits.memory = "4GB" is not a valid memory'),
    ({"memory": "-1"}, "not a valid memory"),
    ({"gpu": "1"}, "limits.gpu: unknown limit"),
])
def test_resource_quantities_rejected(limits: dict[str, Any], needle: str) -> None:
    assert needle in one_problem({"resources": {"limits": limits}})


def test_empty_limit_means_no_limit() -> None:
    assert load({"resources": {"limits": {"cpu": "", "memory": "1Gi"}}}).passthrough["resources"] == {
        "limits": {"memory": "1Gi"}}


def test_env_values_become_strings_and_reserved_names_are_refused() -> None:
    spec = load({"env": {"TZ": "UTC", "N": 3, "F": 2.0, "B": True}})
    assert spec.passthrough["env"] == {"TZ": "UTC", "N": "3", "F": "2", "B": "true"}
    assert "PG_PRIMARY_ORDINAL is managed by voodu-postgres" in one_problem({"env": {"PG_PRIMARY_ORDINAL": "1"}})


def test_ports_are_plugin_owned() -> None:
    assert "ports: is managed by voodu-postgres" in one_problem({"ports": ["5432:5432"]})


def test_unknown_field_suggests_the_right_one() -> None:
    assert 'replica: unknown field (did you mean "replicas"?)' in one_problem({"replica": 3})


def test_plugin_pin_block_is_ignored() -> None:
    assert "plugin" not in load({"plugin": {"version": "1.0"}}).passthrough


def test_volumes_must_be_bind_mounts() -> None:
    assert "is not a bind mount" in one_problem({"volumes": ["/just/a/path"]})


def test_unknown_probe_rejected() -> None:
    assert "unknown probe" in one_problem({"probes": {"liveliness": {}}})


def test_many_problems_are_all_reported() -> None:
    found = problems({"replicas": 0, "port": 0, "database": "1x", "user": "a-b", "pg_config": {"X": 1}})
    assert len(found) == 5
    assert all(line.startswith("postgres clowk-lp/db: ") for line in found)


def test_unscoped_block_is_named_without_scope() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("", "solo", {"port": 0})
    assert str(info.value).startswith("postgres solo: port: ")


@pytest.mark.parametrize("value,expected", [(3, 3), (3.0, 3), (0, 0), (-2, -2)])
def test_as_int_accepts(value: Any, expected: int) -> None:
    assert as_int(value) == expected


@pytest.mark.parametrize("value", [1.5, "1", True, None, float("inf")])
def test_as_int_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        as_int(value)


def test_defaults_document_a_64_char_password() -> None:
    assert "64 hex" in defaults()["password"]
    assert defaults()["replicas"] == 1 and defaults()["synchronous"] is False


@pytest.mark.parametrize("scope,name", [("..", "db"), ("shop", ".."), ("Shop", "db"), ("shop", "d b"),
                                        ("shop", "a/b"), ("-x", "db"), ("shop", "")])
def test_scope_and_name_must_be_dns_labels(scope: str, name: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(scope, name, {})
    assert "must be a DNS label" in str(info.value)


def test_unscoped_block_is_allowed() -> None:
    assert load_spec("", "solo", {}).ref.scope == ""


def test_volume_claims_shape_is_checked_and_data_claim_pinned() -> None:
    assert "expected { name" in one_problem({"volume_claims": ["oops"]})
    assert "data claim must stay" in one_problem({"volume_claims": [{"name": "data", "mount_path": "/x"}]})
