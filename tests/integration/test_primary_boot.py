"""A real pod booted from the rendered wrapper + assets, in the local postgres image.

These prove the rendered files work together with the image's entrypoint contract: initdb
with the generated password, pg_config overrides live from the very first boot, the
replication role created with only REPLICATION (plus pg_rewind's function grants), and a
standby that clones itself with pg_basebackup and streams.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from tenacity import Retrying, stop_after_delay, wait_fixed

pytestmark = pytest.mark.integration


def show(conn: psycopg.Connection[Any], setting: str) -> str:
    row = conn.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    return str(row[0])


def test_primary_boots_with_generated_password_overrides_and_replication_role(make_cluster: Any) -> None:
    cluster = make_cluster("db", {"pg_config": {"max_connections": 42, "work_mem": "8MB",
                                                "log_connections": True, "random_page_cost": 1.5}})
    cluster.start(0)
    with cluster.connect(0) as conn:
        # operator overrides and plugin defaults are live on the FIRST boot (Go plugin: second boot)
        assert show(conn, "max_connections") == "42"
        assert show(conn, "work_mem") == "8MB"
        assert show(conn, "log_connections") == "on"
        assert show(conn, "random_page_cost") == "1.5"
        assert show(conn, "wal_log_hints") == "on"
        assert show(conn, "hot_standby") == "on"
        assert show(conn, "wal_keep_size") == "1GB"
        role = conn.execute(
            "SELECT rolcanlogin, rolreplication, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
            "FROM pg_roles WHERE rolname = 'replicator'").fetchone()
        assert role == (True, True, False, False, False, False)
        grants = conn.execute(
            "SELECT has_function_privilege('replicator', f, 'EXECUTE') FROM unnest(ARRAY["
            "'pg_catalog.pg_ls_dir(text, boolean, boolean)', 'pg_catalog.pg_stat_file(text, boolean)', "
            "'pg_catalog.pg_read_binary_file(text)', "
            "'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)']) AS f").fetchall()
        assert grants == [(True,)] * 4
        hba = conn.execute(
            "SELECT count(*) FROM pg_hba_file_rules WHERE type = 'host' AND 'replication' = ANY(database) "
            "AND 'replicator' = ANY(user_name) AND auth_method = 'scram-sha-256'").fetchone()
        assert hba == (1,)
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    # the generated password is really the role's password: a wrong one is refused over TCP
    with pytest.raises(psycopg.OperationalError):
        cluster.connect(0, timeout=1, password="wrong")


def test_custom_user_database_and_port(make_cluster: Any) -> None:
    cluster = make_cluster("custom", {"user": "appuser", "database": "appdata", "port": 5433,
                                      "replication_user": "repl"})
    cluster.start(0)
    with cluster.connect(0) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("appuser", "appdata")
        assert show(conn, "port") == "5433"
        assert conn.execute("SELECT rolreplication FROM pg_roles WHERE rolname = 'repl'").fetchone() == (True,)


def test_standby_clones_and_streams_from_primary(make_cluster: Any) -> None:
    cluster = make_cluster("ha", {"replicas": 2, "port": 5434})
    cluster.start(0)
    with cluster.connect(0) as primary:
        primary.execute("CREATE TABLE t (id int)")
        primary.execute("INSERT INTO t VALUES (1)")
        cluster.start(1)
        for attempt in Retrying(stop=stop_after_delay(90), wait=wait_fixed(0.5), reraise=True):
            with attempt:
                rows = primary.execute(
                    "SELECT application_name, state FROM pg_stat_replication").fetchall()
                assert rows == [("ha-1", "streaming")], rows
        primary.execute("INSERT INTO t VALUES (2)")
    with cluster.connect(1) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        for attempt in Retrying(stop=stop_after_delay(10), wait=wait_fixed(0.2), reraise=True):
            with attempt:
                assert standby.execute("SELECT array_agg(id ORDER BY id) FROM t").fetchone() == ([1, 2],)
        # the standby follows the configured port (the Go plugin hard-coded 5432 here)
        conninfo = standby.execute("SHOW primary_conninfo").fetchone()
        assert conninfo is not None and "port=5434" in conninfo[0]
