"""link / unlink / consumer refresh decisions and the URLs they write (pure; no Docker)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from voodu_postgres.commands.apps import consumer_refresh, decide_link, decide_unlink
from voodu_postgres.commands.facts import Facts, parse_consumers
from voodu_postgres.domain.errors import CommandError
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.render.urls import database_urls

PW = "f" * 64


def facts(bucket: dict[str, str] | None = None, **body: Any) -> Facts:
    spec = load_spec("shop", "db", {"replicas": 3, **body})
    return Facts(spec, {"POSTGRES_PASSWORD": PW, "PG_PRIMARY_ORDINAL": "0", **(bucket or {})}, {})


def wire(result: Any) -> list[dict[str, Any]]:
    return [a.to_wire() for a in result.actions]


# -- URLs ------------------------------------------------------------------------------------


def test_write_url_targets_the_current_primary_and_reads_every_other_pod() -> None:
    urls = database_urls(Ref("shop", "db"), user="app", password="pw", database="data", port=5433, replicas=3,
                         primary=2)
    assert urls.write == "postgres://app:pw@db-2.shop.voodu:5433/data"
    assert urls.read == "postgres://app:pw@db-0.shop.voodu:5433,db-1.shop.voodu:5433/data?target_session_attrs=any"
    assert "load_balance_hosts" not in urls.read  # libpq < 16 rejects the whole URI


def test_single_pod_read_url_is_the_write_url_and_load_balance_is_opt_in() -> None:
    one = database_urls(Ref("", "db"), user="u", password="p", database="d", port=5432, replicas=1, primary=0)
    assert one.read == one.write == "postgres://u:p@db-0.voodu:5432/d"
    two = database_urls(Ref("s", "db"), user="u", password="p", database="d", port=5432, replicas=2, primary=0,
                        load_balance=True)
    assert two.read.endswith("?target_session_attrs=any&load_balance_hosts=random")


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s))
def test_any_password_survives_libpq_uri_parsing(password: str) -> None:
    urls = database_urls(Ref("s", "db"), user="u", password=password, database="d", port=5432, replicas=3,
                         primary=1)
    for url in (urls.write, urls.read):
        parsed = conninfo_to_dict(url)
        assert parsed["password"] == password
        assert parsed["user"] == "u" and parsed["dbname"] == "d"


def test_odd_password_is_percent_encoded_not_query_escaped() -> None:
    urls = database_urls(Ref("s", "db"), user="u", password="p@ss/wo rd+:%", database="d", port=5432,
                         replicas=1, primary=0)
    assert f"u:{quote('p@ss/wo rd+:%', safe='')}@" in urls.write
    assert "+" not in urls.write.split("@")[0].split(":")[2]


# -- consumers list --------------------------------------------------------------------------


def test_consumer_list_is_normalised() -> None:
    assert parse_consumers(" a/x , b/y ,, a/x, ") == ["a/x", "b/y"]
    assert parse_consumers("") == []


# -- link ------------------------------------------------------------------------------------


def test_link_exact_actions() -> None:
    result = decide_link(facts({"PG_PRIMARY_ORDINAL": "1"}), "shop/web", reads=True)
    assert wire(result) == [
        {"type": "config_set", "scope": "shop", "name": "web", "kv": {
            "DATABASE_READ_URL": f"postgres://postgres:{PW}@db-0.shop.voodu:5432,db-2.shop.voodu:5432/postgres"
                                 "?target_session_attrs=any",
            "DATABASE_URL": f"postgres://postgres:{PW}@db-1.shop.voodu:5432/postgres"}},
        {"type": "config_set", "scope": "shop", "name": "db", "kv": {"POSTGRES_LINKED_CONSUMERS": "shop/web"},
         "skip_restart": True},
    ]
    assert "writer db-1" in result.message and "db-0, db-2" in result.message
    assert PW not in result.message and PW not in str(result.data)


def test_link_without_reads_sets_only_the_writer_and_relink_is_idempotent() -> None:
    result = decide_link(facts({"POSTGRES_LINKED_CONSUMERS": "shop/web"}), "shop/web", reads=False)
    assert [a.type for a in result.actions] == ["config_set"]  # already listed: the list is not rewritten
    assert set(result.actions[0].kv or {}) == {"DATABASE_URL"}


def test_link_normalises_a_messy_list_and_unscoped_consumers_are_bare_names() -> None:
    result = decide_link(facts({"POSTGRES_LINKED_CONSUMERS": " shop/a ,, shop/a "}), "web", reads=False)
    assert result.actions[0].scope == "" and result.actions[0].name == "web"
    assert result.actions[1].kv == {"POSTGRES_LINKED_CONSUMERS": "shop/a,web"}


@pytest.mark.parametrize("consumer,needle", [("shop/db", "itself"), ("", "invalid consumer ref"),
                                             ("a/b/c", "invalid consumer ref"), ("Shop/Web", "DNS label")])
def test_link_refusals(consumer: str, needle: str) -> None:
    with pytest.raises(CommandError, match=needle):
        decide_link(facts(), consumer, reads=False)


def test_link_without_a_password_says_apply_first() -> None:
    spec = load_spec("shop", "db", {})
    with pytest.raises(CommandError, match="applied"):
        decide_link(Facts(spec, {}, {}), "shop/web", reads=False)


# -- unlink ----------------------------------------------------------------------------------


def test_unlink_removes_keys_and_the_consumer() -> None:
    result = decide_unlink(facts({"POSTGRES_LINKED_CONSUMERS": "shop/web,shop/worker"}), "shop/web")
    assert wire(result) == [
        {"type": "config_unset", "scope": "shop", "name": "web", "keys": ["DATABASE_URL", "DATABASE_READ_URL"]},
        {"type": "config_set", "scope": "shop", "name": "db", "kv": {"POSTGRES_LINKED_CONSUMERS": "shop/worker"},
         "skip_restart": True},
    ]


def test_unlink_of_the_last_consumer_unsets_the_key_and_of_a_stranger_changes_nothing() -> None:
    last = decide_unlink(facts({"POSTGRES_LINKED_CONSUMERS": "shop/web"}), "shop/web")
    assert last.actions[1].to_wire() == {"type": "config_unset", "scope": "shop", "name": "db",
                                         "keys": ["POSTGRES_LINKED_CONSUMERS"], "skip_restart": True}
    stranger = decide_unlink(facts({"POSTGRES_LINKED_CONSUMERS": "shop/web"}), "shop/api")
    assert stranger.actions == [] and "not linked" in stranger.message


# -- refresh ---------------------------------------------------------------------------------


def test_refresh_follows_the_writer_and_only_touches_what_differs() -> None:
    before = facts({"POSTGRES_LINKED_CONSUMERS": "shop/web,shop/api,shop/gone"})
    web = decide_link(before, "shop/web", reads=True).actions[0].kv or {}
    api = decide_link(before, "shop/api", reads=False).actions[0].kv or {}
    buckets = {"shop/web": dict(web), "shop/api": dict(api), "shop/gone": {}}
    assert consumer_refresh(before, buckets) == []  # nothing moved: nobody is restarted
    after = facts({"POSTGRES_LINKED_CONSUMERS": "shop/web,shop/api,shop/gone", "PG_PRIMARY_ORDINAL": "2"})
    actions = consumer_refresh(after, buckets)
    by = {f"{a.scope}/{a.name}": a.kv or {} for a in actions}
    assert set(by) == {"shop/web", "shop/api"}  # the hand-unlinked one is left alone
    assert "db-2.shop.voodu" in by["shop/web"]["DATABASE_URL"]
    assert "db-2" not in by["shop/web"]["DATABASE_READ_URL"] and "db-0" in by["shop/web"]["DATABASE_READ_URL"]
    assert set(by["shop/api"]) == {"DATABASE_URL"}  # linked without --reads: never gains the read URL


def test_refresh_after_a_new_password_and_after_scaling() -> None:
    f = facts({"POSTGRES_LINKED_CONSUMERS": "shop/web"})
    web = dict(decide_link(f, "shop/web", reads=True).actions[0].kv or {})
    rotated = consumer_refresh(f, {"shop/web": web}, password="n" * 64, skip_restart=True)
    assert rotated[0].skip_restart and all("n" * 64 in v for v in (rotated[0].kv or {}).values())
    scaled = facts({"POSTGRES_LINKED_CONSUMERS": "shop/web"}, replicas=5)
    kv = consumer_refresh(scaled, {"shop/web": web})[0].kv or {}
    assert set(kv) == {"DATABASE_READ_URL"} and "db-4.shop.voodu" in kv["DATABASE_READ_URL"]


def test_non_ascii_digits_in_the_bucket_are_not_numbers() -> None:
    from voodu_postgres.domain.keys import ordinals, primary_ordinal

    assert primary_ordinal({"PG_PRIMARY_ORDINAL": "²"}) == 0
    assert ordinals("1,²,٣") == frozenset({1})


def test_psql_passthrough_only_splits_for_psql() -> None:
    from voodu_postgres.cli import _command_of

    assert _command_of(["--home", "psql", "validate", "-f", "x", "--", "-f", "y"]) == "validate"
    assert _command_of(["psql", "db", "--", "-At"]) == "psql"
