"""Automatic failover end to end: a real ``voodu-postgres reconcile --watch`` process watching a real
cluster under a write load, while its primary is killed, paused or cut off the network.

What is checked is what Postgres and Docker report: acknowledged rows present on the new primary,
rounds of ``pg_is_in_recovery()`` across every pod (never two writable), the old primary's container
stopped (``State.FinishedAt``) before the watcher's timestamped promote line, and the old primary
streaming again afterwards. The failover record (``info -o json``) is compared with the rows that
were actually lost.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.chaos import spawn
from tests.integration.helpers_cli import Cluster, eventually
from tests.integration.load import (
    Sampler,
    Writer,
    assert_healed,
    dial,
    fresh_clusters,
    ids_on,
    kill,
    primary_ordinal,
    q,
)
from voodu_postgres.adapters.docker import DockerRuntime
from voodu_postgres.domain.model import lsn_value

pytestmark = pytest.mark.integration


@pytest.fixture
def make(runtime: DockerRuntime, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Apply a fresh cluster (own scope, network and home); delete --prune it afterwards."""
    yield from fresh_clusters(runtime, tmp_path, "af")


def until(check: Callable[[], Any], timeout: float = 60) -> Any:
    """``check()``'s first truthy value within ``timeout`` seconds (AssertionError otherwise)."""
    def truthy() -> Any:
        value = check()
        assert value, "not yet"
        return value

    return eventually(truthy, timeout)


class Watcher:
    """``reconcile REF --watch`` as a subprocess; its stdout collected line by line."""

    def __init__(self, c: Cluster) -> None:
        self.proc = spawn(c, "reconcile", c.ref, "--watch")
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, needle: str, timeout: float = 60) -> str:
        return until(lambda: next((line for line in list(self.lines) if needle in line), None), timeout)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(5)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        assert "Traceback" not in err, err
        return "\n".join(self.lines)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def stamp_of(line: str) -> float:
    """The epoch seconds of a watcher line (``2026-12-01T23:59:01.123Z …``)."""
    return datetime.fromisoformat(line.split(" ", 1)[0].replace("Z", "+00:00")).timestamp()


def finished_at(c: Cluster, ordinal: int) -> float:
    container = c.runtime.client.containers.get(c.container(ordinal))
    raw = container.attrs["State"]["FinishedAt"]  # RFC 3339 with nanoseconds
    head, _, frac = raw.rstrip("Z").partition(".")
    return datetime.fromisoformat(head + "+00:00").timestamp() + float(f"0.{frac or 0}")


def under_load(c: Cluster, replicas: int) -> tuple[Writer, Sampler]:
    writer, sampler = Writer(c, replicas), Sampler(c, replicas)
    sampler.start()
    writer.start()
    until(lambda: writer.acked_count() >= 100, 30)
    return writer, sampler


def failed_over(c: Cluster, old: int, timeout: float = 60) -> int:
    return int(until(lambda: primary_ordinal(c) not in ("", str(old)) and primary_ordinal(c), timeout))


def last_failover(c: Cluster) -> dict[str, Any]:
    return dict(json.loads(c.cli("info", c.ref, "-o", "json").ok().out)["last_failover"])


def test_killed_primary_with_synchronous_loses_no_acknowledged_write(make: Callable[..., Cluster]) -> None:
    c = make(3, synchronous=True, auto_failover=True, failover_timeout="3s")
    watcher = Watcher(c)
    writer, sampler = under_load(c, 3)
    try:
        kill(c, 0)
        new = failed_over(c, 0)
        until(lambda: writer.writers_seen[-1] == new, 30)
        acked_at_failover = writer.acked_count()
        until(lambda: writer.acked_count() > acked_at_failover + 50, 30)
        # the old primary is rewound and follows the new one, without anybody starting it
        assert_healed(c, primary=new, replicas=3, timeout=120)
    finally:
        acked = writer.stop()
        sampler.stop()
        out = watcher.stop()
    assert set(acked) - ids_on(c, new) == set(), "an acknowledged write is missing on the new primary"
    assert sampler.doubles == [], f"two writable pods: {sampler.doubles[:3]}"
    record = last_failover(c)
    assert (record["from"], record["to"], record["synchronous"], record["lost_bytes"]) == (0, new, True, 0)
    assert f"failover db-{new}" in out and "promote" in out, out


def test_killed_async_primary_loses_only_what_the_record_says(make: Callable[..., Cluster]) -> None:
    c = make(2, auto_failover=True, failover_timeout="2s")
    watcher = Watcher(c)
    # one writer on one connection, each INSERT returning the WAL insert position just before its
    # commit record: a row committed after the promoted standby's last received byte is lost
    conn = dial(c, 0, password=c.password)
    written: dict[int, int] = {}
    try:
        for i in range(1, 400):
            (lsn,) = conn.execute("INSERT INTO t(id) VALUES (%s) RETURNING pg_current_wal_insert_lsn()::text",
                                  (i,)).fetchone()  # type: ignore[misc]
            written[i] = lsn_value(lsn) or 0
        kill(c, 0)
        with pytest.raises(psycopg.Error):
            conn.execute("INSERT INTO t(id) VALUES (-1)")
        new = failed_over(c, 0)
        assert_healed(c, primary=new, replicas=2, timeout=120)
    finally:
        conn.close()
        out = watcher.stop()
    record = last_failover(c)
    cut = lsn_value(record["received_lsn"])
    assert cut is not None and record["synchronous"] is False
    present = ids_on(c, new)
    lost = sorted(set(written) - present)
    assert all(written[i] < cut for i in present if i in written), "a row beyond the reported point survived?"
    # every lost row was written after the reported point (one row may straddle it)
    straddling = [i for i in lost if written[i] < cut]
    assert len(straddling) <= 1, (lost, record)
    print(f"async failover: {len(lost)} acknowledged rows lost; record: {record}")
    assert "asynchronous: writes after that point are lost" in out, out


def _fenced_before_promotion(c: Cluster, out: str, old: int, new: int) -> None:
    promote = next(line for line in out.splitlines() if f"✓ promote db-{new}" in line)
    assert finished_at(c, old) < stamp_of(promote), "promoted before the old primary was stopped"


def _failed_over_after(c: Cluster, fault: Callable[[], None]) -> dict[str, Any]:
    """Under load and a watcher, apply ``fault`` to db-0; check db-1 took over with db-0 stopped
    first and no round ever saw two writable pods, and that db-0 follows db-1 afterwards (rewound
    while stopped; a detached one recreated on the network). The failover record."""
    watcher = Watcher(c)
    writer, sampler = under_load(c, 2)
    try:
        fault()
        new = failed_over(c, 0)
        until(lambda: writer.writers_seen[-1] == new, 30)
        watcher.wait_line(f"✓ promote db-{new}")
        assert_healed(c, primary=new, replicas=2, timeout=120)
    finally:
        writer.stop()
        sampler.stop()
        out = watcher.stop()
    assert sampler.doubles == []
    _fenced_before_promotion(c, out, 0, new)
    return last_failover(c)


def test_paused_primary_is_fenced_before_anything_is_promoted(make: Callable[..., Cluster]) -> None:
    c = make(2, auto_failover=True, failover_timeout="2s")
    record = _failed_over_after(c, c.runtime.client.containers.get(c.container(0)).pause)
    assert record["problem"].startswith("its container is paused")


def test_primary_cut_off_the_network_is_fenced_before_anything_is_promoted(make: Callable[..., Cluster]) -> None:
    c = make(2, auto_failover=True, failover_timeout="2s")
    record = _failed_over_after(c, lambda: c.runtime.client.networks.get(c.network).disconnect(c.container(0)))
    assert "detached from the cluster network" in record["problem"]


def test_without_auto_failover_the_watcher_reports_and_promotes_nothing(make: Callable[..., Cluster]) -> None:
    c = make(2)
    watcher = Watcher(c)
    container = c.runtime.client.containers.get(c.container(0))
    try:
        container.pause()
        watcher.wait_line("auto_failover is off", 30)
        time.sleep(8)
        assert primary_ordinal(c) == "0"
        assert q(c, 1, "SELECT pg_is_in_recovery()") == [(True,)]
    finally:
        container.unpause()
        out = watcher.stop()
    assert "✓ promote" not in out and "✓ failover" not in out
    assert_healed(c, primary=0, replicas=2)


def test_a_watcher_killed_mid_failover_is_finished_by_the_next(make: Callable[..., Cluster]) -> None:
    c = make(3, synchronous=True, auto_failover=True, failover_timeout="2s")
    watcher = Watcher(c)
    second: Watcher | None = None
    writer, sampler = under_load(c, 3)
    try:
        kill(c, 0)
        watcher.wait_line("✓ failover")
        watcher.kill()  # right after the fence and the recorded intent, somewhere in the chain
        bucket = c.store.resolve(c.scope, c.name)
        assert bucket.get("PG_SWITCHOVER_TO") or "0" in bucket.get("PG_REJOIN", ""), bucket
        second = Watcher(c)
        new = failed_over(c, 0)
        assert_healed(c, primary=new, replicas=3, timeout=120)
        until(lambda: writer.writers_seen[-1] == new, 30)
    finally:
        acked = writer.stop()
        sampler.stop()
        if second is not None:
            second.stop()
    assert set(acked) - ids_on(c, new) == set()
    assert sampler.doubles == []
