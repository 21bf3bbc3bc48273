"""The Postgres port's contract: the same assertions against the psycopg adapter talking to a real
server (one throw-away container from testcontainers, the local image) and against the in-memory
fake the engine tests use, so the fake cannot drift from what the real adapter reports.

Only what both can honestly answer is in the shared part; what only a real server can show (a
paused server cut off by the client-side deadline, the password never echoed back) is tested
against the real one alone.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import IMAGE, SESSION, TEST_LABEL
from tests.unit.fake_runtime import Harness
from voodu_postgres.adapters.docker import RuntimeFailure
from voodu_postgres.adapters.postgres import Endpoint, Postgres, PsycopgPostgres
from voodu_postgres.domain.model import lsn_value

pytestmark = pytest.mark.integration

PASSWORD = secrets.token_hex(16)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(IMAGE, username="postgres", password=PASSWORD, dbname="postgres", driver=None)
    container.with_kwargs(labels={TEST_LABEL: SESSION})
    with container:
        yield container


def _real(server: Any) -> tuple[Postgres, Endpoint]:
    endpoint = Endpoint(name="contract-real", host=server.get_container_host_ip(),
                        port=int(server.get_exposed_port(5432)), user="postgres", database="postgres",
                        passwords=(PASSWORD,))
    return PsycopgPostgres(), endpoint


def _fake(tmp_path: Path) -> tuple[Postgres, Endpoint]:
    h = Harness(tmp_path)
    report = h.apply(replicas=1)
    assert report.converged, report.message
    container = h.fake.container(h.container(0))
    endpoint = Endpoint(name=container.name, host="127.0.0.1", port=container.host_ports[5432], user="postgres",
                        database="postgres", passwords=("unused",))
    return h.fake.postgres(), endpoint


@pytest.fixture(params=["real", "fake"])
def port(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Postgres, Endpoint]:
    if request.param == "real":
        return _real(request.getfixturevalue("server"))
    return _fake(tmp_path)


def test_a_lone_primary_reports_itself_writable_on_timeline_one(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    status = pg.status(endpoint)
    assert status.in_recovery is False
    assert status.timeline == 1
    assert lsn_value(status.lsn) is not None and lsn_value(status.lsn) > 0
    assert status.replicas == () and status.receiver_status is None and status.received_lsn is None
    assert status.pending_restart == 0


def test_answers_again_on_the_next_call(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    first, second = pg.status(endpoint), pg.status(endpoint)
    assert lsn_value(second.lsn) >= lsn_value(first.lsn)  # type: ignore[operator]


def test_nothing_listening_is_a_transient_failure(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    closed = Endpoint(name=endpoint.name, host="127.0.0.1", port=1, user=endpoint.user,
                      database=endpoint.database, passwords=endpoint.passwords)
    with pytest.raises(RuntimeFailure) as err:
        pg.status(closed)
    assert err.value.transient
    assert endpoint.name in str(err.value) and "\n" not in str(err.value)


def test_the_typed_reads_of_a_primary(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    assert pg.in_recovery(endpoint) is False
    before = lsn_value(pg.status(endpoint).lsn)
    current = pg.current_lsn(endpoint)
    assert isinstance(current, int) and before is not None and current >= before > 0
    assert pg.received_lsn(endpoint) is None  # a primary receives nothing


def test_reload_and_checkpoint_succeed_and_return_nothing(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    assert pg.reload(endpoint) is None
    assert pg.checkpoint(endpoint) is None
    assert pg.in_recovery(endpoint) is False


def test_promoting_a_primary_is_refused_permanently_in_one_line(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    with pytest.raises(RuntimeFailure) as err:
        pg.promote(endpoint)
    assert not err.value.transient, "the server refused the statement: retrying cannot help"
    assert "recovery is not in progress" in str(err.value) and "\n" not in str(err.value)
    assert endpoint.name in str(err.value)


def test_alter_system_then_reload_applies_and_reports_no_errors(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    pg.alter_system(endpoint, "work_mem", "8MB")
    pg.reload(endpoint)
    assert pg.config_errors(endpoint) == []
    pg.alter_system(endpoint, "work_mem", None)  # RESET: back as it was
    pg.reload(endpoint)
    assert pg.config_errors(endpoint) == []
    with pytest.raises(ValueError):
        pg.alter_system(endpoint, "work_mem; DROP TABLE x", "1MB")  # a name is never spliced in raw


def test_a_role_s_verifier_reads_back_as_written(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    verifier = pg.role_verifier(endpoint, endpoint.user)
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    pg.set_role_verifier(endpoint, endpoint.user, verifier)  # the same one: logins keep working
    assert pg.role_verifier(endpoint, endpoint.user) == verifier
    assert pg.role_verifier(endpoint, "no such role") == ""


def test_server_version_and_database_size(port: tuple[Postgres, Endpoint]) -> None:
    pg, endpoint = port
    assert pg.server_version_num(endpoint) // 10000 == 15  # the local image
    assert pg.database_size(endpoint) > 1024 * 1024


# -- only a real server can show these ---------------------------------------------------------

def test_a_wrong_password_fails_without_echoing_it(server: Any) -> None:
    pg, endpoint = _real(server)
    wrong = "not-" + PASSWORD
    bad = Endpoint(name=endpoint.name, host=endpoint.host, port=endpoint.port, user="postgres",
                   database="postgres", passwords=(wrong,))
    with pytest.raises(RuntimeFailure) as err:
        pg.status(bad)
    assert "password authentication failed" in str(err.value)
    assert wrong not in str(err.value) and PASSWORD not in repr(bad)


def test_during_a_rotation_the_next_password_is_tried(server: Any) -> None:
    pg, endpoint = _real(server)
    rotating = Endpoint(name=endpoint.name, host=endpoint.host, port=endpoint.port, user="postgres",
                        database="postgres", passwords=("stale-" + PASSWORD, PASSWORD))
    assert pg.status(rotating).in_recovery is False


def test_a_paused_server_is_cut_off_by_the_deadline_and_the_next_call_reconnects(server: Any) -> None:
    pg, endpoint = _real(server)
    pg = PsycopgPostgres(query_timeout=1.0, connect_timeout=2)
    pg.status(endpoint)  # a cached connection, as a watcher holds one
    wrapped = server.get_wrapped_container()
    wrapped.pause()
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeFailure) as err:
            pg.status(endpoint)
        took = time.monotonic() - started
        assert err.value.transient
        assert took < 10, f"the deadline did not cut the blocked query ({took:.1f}s)"
    finally:
        wrapped.unpause()
    assert pg.status(endpoint).in_recovery is False
