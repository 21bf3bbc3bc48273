"""The config bucket store: standalone mode's replacement for Voodu's ``/config`` API.

Buckets are keyed by (scope, name). A scope-level bucket has ``name == ""``; an app-level bucket
has both. :meth:`Store.resolve` returns what a plugin reads from Voodu's ``GET /config``: the
scope-level values overlaid by the app-level ones (app wins). As in Voodu, writing an empty value
deletes the key, so "empty" and "unset" are the same thing everywhere.

The SQLite file holds passwords, so it is created with mode 0600 inside a 0700 directory
(SQLite gives its -wal/-shm side files the database file's mode). Every write is one
``BEGIN IMMEDIATE`` transaction, and a busy timeout lets two processes (say, an ``apply`` and a
``config set``) take turns instead of failing.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from voodu_postgres.domain.errors import VooduError

DEFAULT_HOME = "~/.voodu-postgres"
HOME_ENV = "VOODU_POSTGRES_HOME"
DB_FILE = "state.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bucket (
    scope TEXT NOT NULL,
    name  TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, name, key)
);
CREATE TABLE IF NOT EXISTS lease (
    scope    TEXT NOT NULL,
    name     TEXT NOT NULL,
    holder   TEXT NOT NULL,     -- unique per operation
    pid      INTEGER NOT NULL,
    pid_start TEXT NOT NULL,    -- the process' start time: a reused pid is not the holder
    host     TEXT NOT NULL,
    command  TEXT NOT NULL,
    started  REAL NOT NULL,     -- unix time
    expires  REAL NOT NULL,     -- unix time; renewed while the holder works
    PRIMARY KEY (scope, name)
);
CREATE TABLE IF NOT EXISTS resource (
    scope      TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,   -- the block body as validated (JSON), without any password
    network    TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (scope, name)
);
"""


@dataclass(frozen=True)
class AppliedResource:
    scope: str
    name: str
    body: dict[str, Any]
    network: str
    applied_at: str


@dataclass(frozen=True)
class Lease:
    """Who holds a cluster's operation lease (see :mod:`voodu_postgres.adapters.lease`)."""

    scope: str
    name: str
    holder: str
    pid: int
    pid_start: str
    host: str
    command: str
    started: float
    expires: float


class StoreError(VooduError, RuntimeError):
    """The state store could not be opened or written."""


class Store(Protocol):
    """What the rest of the program needs from a config bucket store."""

    def own(self, scope: str, name: str) -> dict[str, str]:
        """One bucket's own keys (no scope-level merge)."""
        ...

    def resolve(self, scope: str, name: str) -> dict[str, str]:
        """The merged view of an app bucket: scope-level values, overridden by app-level ones."""
        ...

    def patch(self, scope: str, name: str, kv: Mapping[str, str]) -> None:
        """Set keys; an empty value deletes the key."""
        ...

    def unset(self, scope: str, name: str, keys: Iterable[str]) -> None:
        ...

    def record_resource(self, scope: str, name: str, body: Mapping[str, Any], network: str) -> None:
        """Remember the applied block so later commands work without the HCL file."""
        ...

    def resource(self, scope: str, name: str) -> AppliedResource | None:
        ...

    def resources(self) -> list[AppliedResource]:
        ...

    def forget(self, scope: str, name: str, *, bucket: bool = False) -> None:
        """Drop the recorded block, and with ``bucket`` the resource's own bucket (``delete --prune``)."""
        ...


_LEASE_COLUMNS = "scope, name, holder, pid, pid_start, host, command, started, expires"


def _lease(row: tuple[Any, ...]) -> Lease:
    a, b, c, d, e, f, g, h, i = row
    return Lease(str(a), str(b), str(c), int(d), str(e), str(f), str(g), float(h), float(i))


def resolve_home(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``--home`` wins, then ``$VOODU_POSTGRES_HOME``, then ``~/.voodu-postgres``."""
    environ = os.environ if env is None else env
    raw = explicit or environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(raw).expanduser()


class SqliteStore:
    """The default :class:`Store`: one SQLite file under the home directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / DB_FILE
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():
                # create the file ourselves so it is never world-readable, not even briefly
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(self.path, 0o600)
            with closing(self._connect()) as conn, conn:
                conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open state store {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=15.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=15000")
        return conn

    def own(self, scope: str, name: str) -> dict[str, str]:
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT key, value FROM bucket WHERE scope = ? AND name = ? ORDER BY key", (scope, name)
            ).fetchall()
        return {str(k): str(v) for k, v in rows}

    def resolve(self, scope: str, name: str) -> dict[str, str]:
        merged = self.own(scope, "") if scope and name else {}
        merged.update(self.own(scope, name))
        return dict(sorted(merged.items()))

    def patch(self, scope: str, name: str, kv: Mapping[str, str]) -> None:
        self._write(scope, name, kv.items())

    def unset(self, scope: str, name: str, keys: Iterable[str]) -> None:
        self._write(scope, name, ((k, "") for k in keys))

    def record_resource(self, scope: str, name: str, body: Mapping[str, Any], network: str) -> None:
        clean = {k: v for k, v in body.items() if k != "password"}
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._exec(
            "INSERT INTO resource (scope, name, body, network, applied_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (scope, name) DO UPDATE SET body = excluded.body, network = excluded.network, "
            "applied_at = excluded.applied_at",
            (scope, name, json.dumps(clean, sort_keys=True), network, now),
        )

    def resource(self, scope: str, name: str) -> AppliedResource | None:
        found = [r for r in self._resources("WHERE scope = ? AND name = ?", (scope, name))]
        return found[0] if found else None

    def resources(self) -> list[AppliedResource]:
        return self._resources("", ())

    def forget(self, scope: str, name: str, *, bucket: bool = False) -> None:
        self._exec("DELETE FROM resource WHERE scope = ? AND name = ?", (scope, name))
        if bucket:
            self._exec("DELETE FROM bucket WHERE scope = ? AND name = ?", (scope, name))

    # -- leases ------------------------------------------------------------------------------

    def try_lease(self, want: Lease, *, is_dead: Callable[[Lease], bool], now: float) -> Lease:
        """Take the lease of (scope, name) for ``want`` unless someone live holds it.

        Returns the holder after the attempt: ``want`` when taken (or already ours), else the
        current holder. A lease that expired, or whose holder process is dead, is taken over.
        One ``BEGIN IMMEDIATE`` transaction, so two processes cannot both win.
        """
        try:
            with closing(self._connect()) as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(f"SELECT {_LEASE_COLUMNS} FROM lease WHERE scope = ? AND name = ?",
                                       (want.scope, want.name)).fetchone()
                    current = _lease(row) if row else None
                    if current is not None and current.holder != want.holder and current.expires > now \
                            and not is_dead(current):
                        conn.execute("ROLLBACK")
                        return current
                    conn.execute(
                        f"INSERT OR REPLACE INTO lease ({_LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (want.scope, want.name, want.holder, want.pid, want.pid_start, want.host, want.command,
                         want.started, want.expires))
                    conn.execute("COMMIT")
                    return want
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write state store {self.path}: {exc}") from exc

    def renew_lease(self, scope: str, name: str, holder: str, expires: float) -> bool:
        """Push our lease's expiry out; False when it is no longer ours (taken over)."""
        try:
            with closing(self._connect()) as conn:
                cur = conn.execute("UPDATE lease SET expires = ? WHERE scope = ? AND name = ? AND holder = ?",
                                   (expires, scope, name, holder))
                return cur.rowcount == 1
        except sqlite3.Error:
            return True  # a busy store must not kill the operation; the next renewal retries

    def release_lease(self, scope: str, name: str, holder: str) -> None:
        self._exec("DELETE FROM lease WHERE scope = ? AND name = ? AND holder = ?", (scope, name, holder))

    def lease(self, scope: str, name: str) -> Lease | None:
        with closing(self._connect()) as conn:
            row = conn.execute(f"SELECT {_LEASE_COLUMNS} FROM lease WHERE scope = ? AND name = ?",
                               (scope, name)).fetchone()
        return _lease(row) if row else None

    def _resources(self, where: str, params: tuple[str, ...]) -> list[AppliedResource]:
        with closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT scope, name, body, network, applied_at FROM resource {where} ORDER BY scope, name", params
            ).fetchall()
        return [AppliedResource(str(a), str(b), json.loads(c), str(d), str(e)) for a, b, c, d, e in rows]

    def _exec(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            with closing(self._connect()) as conn:
                conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write state store {self.path}: {exc}") from exc

    def _write(self, scope: str, name: str, items: Iterable[tuple[str, str]]) -> None:
        try:
            with closing(self._connect()) as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for key, value in items:
                        if value == "":
                            conn.execute(
                                "DELETE FROM bucket WHERE scope = ? AND name = ? AND key = ?", (scope, name, key)
                            )
                        else:
                            conn.execute(
                                "INSERT INTO bucket (scope, name, key, value) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT (scope, name, key) DO UPDATE SET value = excluded.value",
                                (scope, name, key, value),
                            )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write state store {self.path}: {exc}") from exc
