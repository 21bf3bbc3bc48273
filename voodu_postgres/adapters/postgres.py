"""Postgres over the network: the typed port the engine reads a pod's state through, and its
psycopg 3 implementation.

A pod is reached at the address its engine publishes for it (``Endpoint``), as the superuser with
the bucket's password (SCRAM; the password is never logged, never in argv, and ``repr`` hides it).
TCP matters beyond speed: the temporary server the image runs during initdb listens on the unix
socket only, so a half-initialised primary never answers here and never looks ready.

Connections are kept per endpoint and reused across passes (a watcher probes every half second);
each query runs under a client-side deadline, because a paused or partitioned pod would otherwise
block the caller forever: when the deadline passes, the socket is shut down under the blocked
call, the connection is dropped, and the caller gets a transient :class:`RuntimeFailure`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from voodu_postgres.adapters.failures import RuntimeFailure
from voodu_postgres.domain.model import PendingSetting, PgStatus, Replica, lsn_value
from voodu_postgres.domain.sql import ident, literal

#: seconds to establish a connection, and for one query to answer
CONNECT_TIMEOUT_S = 5
QUERY_TIMEOUT_S = 5.0
#: seconds ``pg_promote`` may wait for the promotion to finish (its own default)
PROMOTE_WAIT_S = 60
#: seconds a CHECKPOINT may take on a busy server
CHECKPOINT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to reach one pod's Postgres. ``passwords`` holds the current password and,
    during a rotation, the next one: whichever the role accepts is used."""

    name: str  # the pod's container, for messages
    host: str
    port: int
    user: str
    database: str
    passwords: tuple[str, ...] = field(default=(), repr=False, compare=False)


class Postgres(Protocol):
    """What the engine asks a pod's Postgres. Failures are :class:`RuntimeFailure` (``transient``
    when the pod did not answer), never a client library's exception."""

    def status(self, endpoint: Endpoint) -> PgStatus: ...

    def in_recovery(self, endpoint: Endpoint) -> bool: ...

    def current_lsn(self, endpoint: Endpoint) -> int:
        """A primary's ``pg_current_wal_lsn()`` as a byte position."""
        ...

    def received_lsn(self, endpoint: Endpoint) -> int | None:
        """A standby's ``pg_last_wal_receive_lsn()`` (None: nothing received, or not in recovery)."""
        ...

    def promote(self, endpoint: Endpoint, *, wait_s: int = PROMOTE_WAIT_S) -> bool:
        """``pg_promote(true, wait_s)``: True once the server left recovery."""
        ...

    def reload(self, endpoint: Endpoint) -> None: ...

    def checkpoint(self, endpoint: Endpoint) -> None: ...

    def alter_system(self, endpoint: Endpoint, setting: str, value: str | None) -> None:
        """``ALTER SYSTEM SET setting = value`` (``RESET`` when None), in postgresql.auto.conf."""
        ...

    def config_errors(self, endpoint: Endpoint) -> list[str]:
        """The configuration lines the server refused (``name: error``), after a reload; a valid
        change to a restart-only setting is not one."""
        ...

    def role_verifier(self, endpoint: Endpoint, role: str) -> str:
        """The role's stored password verifier ("" when it has none)."""
        ...

    def set_role_verifier(self, endpoint: Endpoint, role: str, verifier: str) -> None: ...

    def server_version_num(self, endpoint: Endpoint) -> int: ...

    def database_size(self, endpoint: Endpoint) -> int:
        """``pg_database_size`` of the endpoint's database, in bytes."""
        ...



# pg_current_wal_lsn() raises during recovery, so primary-only parts sit behind CASE.
STATUS_SQL = """
SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'timeline', CASE WHEN pg_is_in_recovery()
                   THEN (SELECT received_tli FROM pg_stat_wal_receiver)
                   ELSE (SELECT timeline_id FROM pg_control_checkpoint()) END,
  'lsn', CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text
              ELSE pg_current_wal_lsn()::text END,
  'pending', (SELECT coalesce(json_agg(json_build_object(
                 'name', s.name, 'current', s.setting, 'next', f.setting) ORDER BY s.name), '[]'::json)
               FROM pg_settings s
               LEFT JOIN LATERAL (SELECT fs.setting FROM pg_file_settings fs
                                  WHERE fs.name = s.name ORDER BY fs.seqno DESC LIMIT 1) f ON true
               WHERE s.pending_restart),
  'sync_auto', (SELECT setting FROM pg_file_settings WHERE name = 'synchronous_standby_names'
                AND sourcefile LIKE '%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1),
  'boot_overrides', (SELECT coalesce(json_agg(name ORDER BY name), '[]'::json) FROM pg_settings
                     WHERE sourcefile LIKE '%/voodu-runtime.conf' AND name <> 'primary_conninfo'),
  'receiver_status', (SELECT status FROM pg_stat_wal_receiver),
  'received_lsn', CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text END,
  'receiver_host', (SELECT sender_host FROM pg_stat_wal_receiver),
  'conninfo_host', CASE WHEN pg_is_in_recovery()
                        THEN substring(current_setting('primary_conninfo') from 'host=([^ ]+)') END,
  'replicas', CASE WHEN pg_is_in_recovery() THEN '[]'::json ELSE (
      SELECT coalesce(json_agg(json_build_object(
               'application_name', application_name, 'state', state,
               'lag_bytes', pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint)
             ORDER BY application_name), '[]'::json)
      FROM pg_stat_replication) END
)::text
"""


# Rows of pg_file_settings that Postgres refused. A valid change to a restart-only parameter also
# shows "setting could not be applied", so those (pending_restart) are not errors.
CONFIG_ERRORS_SQL = (
    "SELECT coalesce(string_agg(coalesce(f.name, '?') || ': ' || f.error, '; '), '') "
    "FROM pg_file_settings f LEFT JOIN pg_settings s ON s.name = f.name "
    "WHERE f.error IS NOT NULL AND NOT coalesce(s.pending_restart, false)"
)


def alter_system_sql(setting: str, value: str | None) -> str:
    if value is None:
        return f"ALTER SYSTEM RESET {ident_plain(setting)}"
    return f"ALTER SYSTEM SET {ident_plain(setting)} = {literal(value)}"


def role_verifier_sql(role: str) -> str:
    # a scalar subquery: one row ("") also when the role does not exist
    return f"SELECT coalesce((SELECT rolpassword FROM pg_authid WHERE rolname = {literal(role)}), '')"


def set_role_verifier_sql(role: str, verifier: str) -> str:
    return f"ALTER ROLE {ident(role)} PASSWORD {literal(verifier)}"


def ident_plain(setting: str) -> str:
    """A configuration parameter's name, which ALTER SYSTEM takes bare: letters, digits, ``_``, ``.``."""
    if not setting or not all(ch.isascii() and (ch.isalnum() or ch in "_.") for ch in setting):
        raise ValueError(f"not a configuration parameter name: {setting!r}")
    return setting


def parse_status(data: dict[str, Any]) -> PgStatus:
    """The status query's JSON object as a typed :class:`PgStatus`."""
    return PgStatus(
        in_recovery=bool(data["in_recovery"]),
        timeline=data.get("timeline"),
        lsn=data.get("lsn"),
        pending=tuple(PendingSetting(p["name"], str(p["current"]), None if p.get("next") is None else str(p["next"]))
                      for p in data.get("pending") or []),
        receiver_status=data.get("receiver_status"),
        receiver_host=data.get("receiver_host"),
        conninfo_host=data.get("conninfo_host"),
        received_lsn=data.get("received_lsn"),
        sync_auto=data.get("sync_auto"),
        boot_overrides=tuple(data.get("boot_overrides") or ()),
        replicas=tuple(
            Replica(r["application_name"], r["state"], r.get("lag_bytes")) for r in data.get("replicas") or []
        ),
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


class PsycopgPostgres:
    """:class:`Postgres` on psycopg 3 connections, one cached per endpoint (thread-safe: pods are
    observed in parallel, each endpoint by one thread at a time)."""

    def __init__(self, *, connect_timeout: int = CONNECT_TIMEOUT_S, query_timeout: float = QUERY_TIMEOUT_S) -> None:
        self.connect_timeout = connect_timeout
        self.query_timeout = query_timeout
        self._lock = threading.Lock()
        self._conns: dict[tuple[str, int, str, str], Any] = {}
        self._locks: dict[tuple[str, int, str, str], threading.Lock] = {}

    def status(self, endpoint: Endpoint) -> PgStatus:
        row = self._query_one(endpoint, STATUS_SQL)
        try:
            return parse_status(json.loads(row[0]))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise RuntimeFailure(f"unexpected status output: {exc}") from exc

    def in_recovery(self, endpoint: Endpoint) -> bool:
        return bool(self._query_one(endpoint, "SELECT pg_is_in_recovery()")[0])

    def current_lsn(self, endpoint: Endpoint) -> int:
        return _lsn(endpoint, self._query_one(endpoint, "SELECT pg_current_wal_lsn()::text")[0])

    def received_lsn(self, endpoint: Endpoint) -> int | None:
        value = self._query_one(endpoint, "SELECT pg_last_wal_receive_lsn()::text")[0]
        return None if value is None else _lsn(endpoint, value)

    def promote(self, endpoint: Endpoint, *, wait_s: int = PROMOTE_WAIT_S) -> bool:
        row = self._query_one(endpoint, f"SELECT pg_promote(true, {int(wait_s)})", timeout=wait_s + 5.0)
        return bool(row[0])

    def reload(self, endpoint: Endpoint) -> None:
        self._query_one(endpoint, "SELECT pg_reload_conf()")

    def checkpoint(self, endpoint: Endpoint) -> None:
        self._run(endpoint, "CHECKPOINT", timeout=CHECKPOINT_TIMEOUT_S)

    def alter_system(self, endpoint: Endpoint, setting: str, value: str | None) -> None:
        # ALTER SYSTEM refuses a transaction block: the connection is in autocommit
        self._run(endpoint, alter_system_sql(setting, value))

    def config_errors(self, endpoint: Endpoint) -> list[str]:
        text = self._query_one(endpoint, CONFIG_ERRORS_SQL)[0] or ""
        return [part for part in text.split("; ") if part]

    def role_verifier(self, endpoint: Endpoint, role: str) -> str:
        return str(self._query_one(endpoint, role_verifier_sql(role))[0] or "")

    def set_role_verifier(self, endpoint: Endpoint, role: str, verifier: str) -> None:
        self._run(endpoint, set_role_verifier_sql(role, verifier))

    def server_version_num(self, endpoint: Endpoint) -> int:
        return int(self._query_one(endpoint, "SHOW server_version_num")[0])

    def database_size(self, endpoint: Endpoint) -> int:
        return int(self._query_one(endpoint, "SELECT pg_database_size(current_database())")[0])

    def close(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            _quietly_close(conn)

    # -- connections -------------------------------------------------------------------------

    def _query_one(self, endpoint: Endpoint, sql: str, *, timeout: float | None = None) -> tuple[Any, ...]:
        row = self._run(endpoint, sql, timeout=timeout, fetch=True)
        if row is None:
            raise RuntimeFailure(f"{endpoint.name}: the query returned no row")
        return row

    def _run(self, endpoint: Endpoint, sql: str, *, timeout: float | None = None,
             fetch: bool = False) -> tuple[Any, ...] | None:
        key = (endpoint.host, endpoint.port, endpoint.user, endpoint.database)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            conn = self._connection(key, endpoint)
            try:
                with _deadline(conn, timeout or self.query_timeout):
                    cursor = conn.execute(sql)
                    row = cursor.fetchone() if fetch else None
            except Exception as exc:
                self._drop(key)
                raise _failure(endpoint, exc) from exc
        return tuple(row) if row is not None else None

    def _connection(self, key: tuple[str, int, str, str], endpoint: Endpoint) -> Any:
        with self._lock:
            conn = self._conns.get(key)
        if conn is not None and not conn.closed:
            return conn
        conn = self._connect(endpoint)
        with self._lock:
            self._conns[key] = conn
        return conn

    def _connect(self, endpoint: Endpoint) -> Any:
        import psycopg  # imported on first use: commands that never query pay nothing for it

        last: Exception | None = None
        for password in endpoint.passwords or ("",):
            try:
                return psycopg.connect(host=endpoint.host, port=endpoint.port, user=endpoint.user,
                                       dbname=endpoint.database, password=password, autocommit=True,
                                       connect_timeout=self.connect_timeout, application_name="voodu-postgres",
                                       sslmode="disable")
            except psycopg.OperationalError as exc:
                last = exc
                if "password authentication failed" not in str(exc):
                    break  # not a credentials problem: another password will not help
        assert last is not None
        raise _failure(endpoint, last) from last

    def _drop(self, key: tuple[str, int, str, str]) -> None:
        with self._lock:
            conn = self._conns.pop(key, None)
        if conn is not None:
            _quietly_close(conn)


def _lsn(endpoint: Endpoint, text: str) -> int:
    value = lsn_value(text)
    if value is None:
        raise RuntimeFailure(f"{endpoint.name}: not an LSN: {text!r}")
    return value


#: SQLSTATE classes worth another try: connection exception, insufficient resources, operator
#: intervention (shutdown, "cannot connect now"), system error
_TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58"})


def _failure(endpoint: Endpoint, exc: Exception) -> RuntimeFailure:
    """One line naming the pod; transient unless the server refused the statement itself."""
    import psycopg

    # a lost or refused connection, a server shutting down or out of resources may answer next
    # time; a statement the server refused (e.g. pg_promote on a primary: SQLSTATE 55000, which
    # psycopg also files under OperationalError) will not
    sqlstate = getattr(exc, "sqlstate", None)
    transient = isinstance(exc, TimeoutError | OSError) or (
        isinstance(exc, psycopg.OperationalError) and (sqlstate is None or sqlstate[:2] in _TRANSIENT_CLASSES))
    text = _one_line(exc)
    for secret in endpoint.passwords:  # a driver message must never carry the password
        if secret:
            text = text.replace(secret, "***")
    return RuntimeFailure(f"{endpoint.name}: {text}", transient=transient)


@contextmanager
def _deadline(conn: Any, seconds: float) -> Iterator[None]:
    """Shut the connection's socket down if the block outlives ``seconds``: a paused pod keeps
    its TCP stack (the kernel acknowledges) while Postgres never answers, and no libpq or server
    timeout ends that wait."""
    fired = threading.Event()

    def cut() -> None:
        fired.set()
        try:
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        except (OSError, ValueError):
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception as exc:
        if fired.is_set():
            raise TimeoutError(f"no answer within {seconds:g}s") from exc
        raise
    finally:
        timer.cancel()


def _quietly_close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
        pass
