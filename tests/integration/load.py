"""Load and observation helpers for tests and benchmarks on real clusters.

``Writer`` inserts ids 1, 2, 3, … into the current primary with autocommit and records every id
whose INSERT returned (acknowledged); on an error it looks for whichever pod is writable and
carries on. ``Sampler`` asks every pod ``pg_is_in_recovery()`` every ~50 ms and records any round
in which two pods answered "writable".
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from tests.integration.conftest import SESSION
from tests.integration.helpers_cli import Cluster, Run, eventually
from voodu_postgres.adapters.docker import DockerRuntime

MiB = 1024 * 1024
_numbers = itertools.count()

# ------------------------------------------------------------------------------------------
# helpers


def fresh_clusters(runtime: DockerRuntime, tmp_path: Path, prefix: str) -> Iterator[Callable[..., Cluster]]:
    """A fixture body: ``build(replicas, **fields)`` applies a fresh cluster (own scope, network and
    home, a table ``t``); every one is deleted with ``--prune`` afterwards."""
    made: list[Cluster] = []

    def build(replicas: int, **fields: Any) -> Cluster:
        n = next(_numbers)
        work = tmp_path / f"{prefix}{n}"
        work.mkdir()
        c = Cluster(runtime=runtime, scope=f"{prefix}{SESSION}{n}", name="db", home=work / "home", workdir=work,
                    network=f"vpg-{SESSION}-{prefix}{n}", base=fields)
        made.append(c)
        c.apply(replicas=replicas).ok()
        q(c, 0, "CREATE TABLE t (id bigint PRIMARY KEY)")
        return c

    yield build
    for c in made:
        c.cli("delete", c.ref, "--prune", "--yes")
        for net in [n for n in runtime.client.networks.list(names=[c.network]) if n.name == c.network]:
            try:
                net.remove()
            except Exception:
                pass  # the session fixture removes labelled leftovers


def _port(c: Cluster) -> int:
    return int(c.base.get("port", 5432))


def _user(c: Cluster) -> str:
    return str(c.base.get("user", "postgres"))


def _db(c: Cluster) -> str:
    return str(c.base.get("database", "postgres"))


def dial(c: Cluster, ordinal: int, *, password: str, connect_timeout: int = 1) -> psycopg.Connection[Any]:
    """One connection attempt, no retries, with a dead-peer bound (a killed pod sends no RST)."""
    host_port = c.runtime.host_port(c.container(ordinal), _port(c))
    return psycopg.connect(host="127.0.0.1", port=host_port, user=_user(c), password=password, dbname=_db(c),
                           autocommit=True, connect_timeout=connect_timeout, keepalives=1, keepalives_idle=1,
                           keepalives_interval=1, keepalives_count=2, tcp_user_timeout=3000)


def q(c: Cluster, ordinal: int, sql: str, params: Any = None, timeout: float = 60) -> list[tuple[Any, ...]]:
    """Run one statement; its rows ([] for a statement that returns none)."""
    with c.connect(ordinal, timeout=timeout, port=_port(c), user=_user(c), dbname=_db(c)) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []


def one(c: Cluster, ordinal: int, sql: str, params: Any = None) -> Any:
    return q(c, ordinal, sql, params)[0][0]


def ids_on(c: Cluster, ordinal: int, table: str = "t") -> set[int]:
    return {row[0] for row in q(c, ordinal, f"SELECT id FROM {table}")}


def in_recovery(c: Cluster, ordinal: int) -> bool:
    return bool(one(c, ordinal, "SELECT pg_is_in_recovery()"))


def primary_ordinal(c: Cluster) -> str:
    return c.store.resolve(c.scope, c.name).get("PG_PRIMARY_ORDINAL", "")


def host_of(c: Cluster, ordinal: int) -> str:
    return f"{c.name}-{ordinal}.{c.scope}.voodu"


def assert_healed(c: Cluster, primary: int, replicas: int, timeout: float = 60) -> None:
    """``primary`` is the only writable pod and every other pod streams from it."""
    standbys = [o for o in range(replicas) if o != primary]
    c.wait_streaming(standbys, primary=primary, timeout=timeout, port=_port(c), user=_user(c), dbname=_db(c))
    assert not in_recovery(c, primary)
    for o in standbys:
        assert in_recovery(c, o), f"{c.app(o)} is writable"
        status, sender = q(c, o, "SELECT status, sender_host FROM pg_stat_wal_receiver")[0]
        assert (status, sender) == ("streaming", host_of(c, primary)), (o, status, sender)
    assert primary_ordinal(c) == str(primary)


def wait_replayed(c: Cluster, primary: int, standbys: list[int], table: str = "t") -> None:
    """Every row the primary has is visible on each standby (a marker row round-trips)."""
    marker = -next(_numbers) - 1
    q(c, primary, f"INSERT INTO {table}(id) VALUES (%s)", (marker,))
    for o in standbys:
        eventually(lambda o=o: q(c, o, f"SELECT 1 FROM {table} WHERE id = %s", (marker,))[0], 60)


def kill(c: Cluster, ordinal: int) -> None:
    """``docker kill`` (SIGKILL): no shutdown checkpoint, no final WAL sent to anybody."""
    container = c.runtime.client.containers.get(c.container(ordinal))
    container.kill()
    container.reload()
    assert container.status != "running", container.status


def assert_refused(run: Run, *needles: str, code: int = 1) -> None:
    assert run.code == code, run
    assert run.err.count("\n") == 1 and run.err.strip(), run.err
    assert "Traceback" not in run.err + run.out, run
    for needle in needles:
        assert needle in run.err, run.err


class Writer(threading.Thread):
    """Insert 1, 2, 3, … into whichever pod is writable; ``acked`` = ids whose INSERT returned."""

    def __init__(self, c: Cluster, replicas: int, table: str = "t") -> None:
        super().__init__(daemon=True, name="writer")
        self.c, self.replicas, self.table = c, replicas, table
        self.password = c.password
        self.acked: list[int] = []
        self.errors = 0
        self.reconnects = 0
        self.writers_seen: list[int] = []  # ordinals it wrote to, in order
        self.stop_event = threading.Event()
        self.lock = threading.Lock()

    def acked_count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _find_writable(self) -> tuple[int, psycopg.Connection[Any]] | None:
        for ordinal in range(self.replicas):
            try:
                conn = dial(self.c, ordinal, password=self.password)
            except Exception:
                continue
            try:
                if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,):
                    return ordinal, conn
            except Exception:
                pass
            conn.close()
        return None

    def run(self) -> None:
        next_id = 1
        conn: psycopg.Connection[Any] | None = None
        while not self.stop_event.is_set():
            if conn is None:
                found = self._find_writable()
                if found is None:
                    time.sleep(0.02)
                    continue
                ordinal, conn = found
                self.reconnects += 1
                self.writers_seen.append(ordinal)
            try:
                conn.execute(f"INSERT INTO {self.table}(id) VALUES (%s)", (next_id,))
            except Exception:
                self.errors += 1  # unacknowledged: may or may not have committed
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
            else:
                with self.lock:
                    self.acked.append(next_id)
            next_id += 1
        if conn is not None:
            conn.close()

    def stop(self) -> list[int]:
        self.stop_event.set()
        self.join(15)
        with self.lock:
            return list(self.acked)


class Sampler(threading.Thread):
    """Every ~50 ms ask each pod ``pg_is_in_recovery()``; record rounds with two writable pods."""

    def __init__(self, c: Cluster, replicas: int) -> None:
        super().__init__(daemon=True, name="sampler")
        self.c, self.replicas = c, replicas
        self.password = c.password
        self.rounds = 0
        self.doubles: list[tuple[float, list[int]]] = []
        self.writable_seen: set[int] = set()
        self.stop_event = threading.Event()

    def run(self) -> None:
        conns: dict[int, psycopg.Connection[Any] | None] = dict.fromkeys(range(self.replicas))
        while not self.stop_event.is_set():
            started = time.monotonic()
            writable = []
            for ordinal in range(self.replicas):
                try:
                    conn = conns[ordinal]
                    if conn is None:
                        conn = conns[ordinal] = dial(self.c, ordinal, password=self.password)
                    if conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,):
                        writable.append(ordinal)
                except Exception:
                    if conns[ordinal] is not None:
                        try:
                            conns[ordinal].close()  # type: ignore[union-attr]
                        except Exception:
                            pass
                    conns[ordinal] = None
            self.rounds += 1
            self.writable_seen.update(writable)
            if len(writable) >= 2:
                self.doubles.append((started, writable))
            time.sleep(max(0.0, 0.05 - (time.monotonic() - started)))
        for conn in conns.values():
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(15)


