"""Benchmark: automatic failover — time from ``docker kill`` of the primary to the first acknowledged
write on the new primary, next to a floor measured in the same run on the same cluster.

* **ours** — a real ``voodu-postgres reconcile --watch`` process watches a 2-pod cluster with
  ``auto_failover = true``; a writer inserts continuously into whichever pod is writable.
  The primary is killed; the clock stops at the writer's first acknowledged INSERT on the other
  pod. Measured for the default ``failover_timeout`` and for a short one.
* **floor** — no watcher: the bench itself polls the primary (``SELECT 1`` every 100 ms), and on
  the first failed poll runs a bare ``pg_promote()`` on the standby. No fencing, no confirmation
  that the primary is really gone, no bookkeeping: the fastest anything could be on this host,
  and unsafe (one slow answer would make two primaries).

* **probe latency under load** — what the default ``failover_timeout`` rests on: the watcher's
  status query (through the same Postgres adapter ``observe`` uses) repeated for 30 s while
  ``pgbench`` saturates the primary; p50 / p99 / max, next to a bare ``SELECT 1`` alternated with it. A timeout must sit well above the worst
  healthy answer, or a busy primary gets failed over.

Between runs the cluster is healed by the reconciler (the old primary is rewound and follows the
new one) and the failover record is cleared, so the cooldown does not block the next run.

Usage: ``.venv/bin/python bench/failover.py [--runs 5] [--short 2]``. Needs Docker and the local
image (``bash scripts/setup-docker.sh``); everything it makes is labelled and removed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from tests.integration.chaos import spawn  # noqa: E402
from tests.integration.conftest import SESSION, TEST_LABEL  # noqa: E402
from tests.integration.helpers_cli import Cluster  # noqa: E402
from tests.integration.load import assert_healed, dial, kill, primary_ordinal, q  # noqa: E402
from voodu_postgres.adapters.docker import DockerRuntime  # noqa: E402
from voodu_postgres.domain.keys import LAST_FAILOVER_KEY, PRIMARY_ORDINAL_KEY, REJOIN_KEY  # noqa: E402
from voodu_postgres.domain.spec import DEFAULT_FAILOVER_TIMEOUT  # noqa: E402


class FirstWrite(threading.Thread):
    """Insert without pause into whichever pod is writable; note when pod ``target`` first acks."""

    def __init__(self, c: Cluster, replicas: int, avoid: int) -> None:
        super().__init__(daemon=True)
        self.c, self.replicas, self.avoid = c, replicas, avoid
        self.password = c.password
        self.first_ack: tuple[int, float] | None = None
        self.stop_event = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set() and self.first_ack is None:
            for ordinal in range(self.replicas):
                if ordinal == self.avoid:
                    continue
                try:
                    with dial(self.c, ordinal, password=self.password, connect_timeout=1) as conn:
                        while not self.stop_event.is_set():
                            n += 1
                            conn.execute("INSERT INTO t(id) VALUES (%s)", (-n,))
                            self.first_ack = (ordinal, time.monotonic())
                            return
                except Exception:  # down, or not published (a pod being recreated)
                    continue
            time.sleep(0.02)


def heal(c: Cluster, replicas: int) -> int:
    """Reconcile until one primary and every standby streams; clear the cooldown record."""
    deadline = time.monotonic() + 180
    while True:
        c.cli("reconcile", c.ref)
        try:
            primary = int(primary_ordinal(c))
            assert_healed(c, primary=primary, replicas=replicas, timeout=5)
            c.store.patch(c.scope, c.name, {LAST_FAILOVER_KEY: ""})
            return primary
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def ours(c: Cluster, replicas: int) -> float:
    old = int(primary_ordinal(c))
    watcher = spawn(c, "reconcile", c.ref, "--watch")
    try:
        time.sleep(3)  # the watcher has seen the primary healthy
        writer = FirstWrite(c, replicas, avoid=old)
        t0 = time.monotonic()
        kill(c, old)
        writer.start()
        writer.join(120)
        writer.stop_event.set()
        if writer.first_ack is None:
            raise SystemExit("no write was acknowledged within 120 s of the kill")
        return writer.first_ack[1] - t0
    finally:
        watcher.terminate()
        watcher.communicate(timeout=30)


def floor(c: Cluster, replicas: int) -> float:
    old = int(primary_ordinal(c))
    standbys = [o for o in range(replicas) if o != old]
    password = c.password
    t0 = time.monotonic()
    kill(c, old)
    while True:  # detect by polling
        try:
            with dial(c, old, password=password, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            time.sleep(0.1)
        except Exception:  # refused, timed out, or no published port any more: it is down
            break
    best = max(standbys, key=lambda o: q(c, o, "SELECT pg_last_wal_receive_lsn() - '0/0'::pg_lsn")[0][0] or 0)
    q(c, best, "SELECT pg_promote()")
    writer = FirstWrite(c, replicas, avoid=old)
    writer.start()
    writer.join(60)
    writer.stop_event.set()
    if writer.first_ack is None:
        raise SystemExit("floor: no write acknowledged after pg_promote()")
    took = writer.first_ack[1] - t0
    # tell the reconciler what happened, so it rewinds the old primary onto the new one
    c.store.patch(c.scope, c.name, {PRIMARY_ORDINAL_KEY: str(best), REJOIN_KEY: str(old)})
    return took


def probe_latency(c: Cluster, seconds: float = 30) -> tuple[list[float], list[float]]:
    """The watcher's status query against a primary under pgbench, through the Postgres adapter
    the watcher uses (a cached psycopg connection at the pod's published address); each answer's
    latency, next to the floor: a bare ``SELECT 1`` on its own psycopg connection, alternated."""
    import psycopg

    from voodu_postgres.adapters.postgres import Endpoint, PsycopgPostgres

    primary = int(primary_ordinal(c))
    container = c.container(primary)
    endpoint = Endpoint(name=container, host="127.0.0.1", port=c.runtime.host_port(container, 5432),
                        user="postgres", database="postgres", passwords=(c.password,))
    load = c.runtime.client.containers.get(container)
    load.exec_run(["pgbench", "-i", "-q", "-s", "10", "-h", "127.0.0.1", "-U", "postgres", "postgres"], user="postgres")
    bench = threading.Thread(target=load.exec_run, daemon=True, kwargs={
        "cmd": ["pgbench", "-c", "8", "-j", "2", "-T", str(int(seconds)), "-h", "127.0.0.1", "-U", "postgres",
                "postgres"], "user": "postgres"})
    bench.start()
    time.sleep(2)
    ours, floor = [], []
    pg = PsycopgPostgres()
    bare = psycopg.connect(host=endpoint.host, port=endpoint.port, user="postgres", dbname="postgres",
                           password=c.password, autocommit=True)
    deadline = time.monotonic() + seconds - 4
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        pg.status(endpoint)
        ours.append(time.monotonic() - t0)
        t0 = time.monotonic()
        bare.execute("SELECT 1").fetchone()
        floor.append(time.monotonic() - t0)
        time.sleep(0.25)
    bare.close()
    pg.close()
    bench.join(seconds + 30)
    return ours, floor


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return (f"p50 {statistics.median(values) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {values[-1] * 1000:.0f} ms (n={len(values)})")


def stats(values: list[float]) -> str:
    return f"median {statistics.median(values):5.2f}s  (min {min(values):5.2f}, max {max(values):5.2f}, n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--short", type=float, default=2.0, help="the short failover_timeout, seconds")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--probe-only", action="store_true", help="only the health probe under load")
    args = parser.parse_args()
    settings: list[tuple[str, float | None]] = [(f"default ({DEFAULT_FAILOVER_TIMEOUT:g}s)", None)]
    if not args.probe_only:
        settings.append((f"short ({args.short:g}s)", args.short))
    runtime = DockerRuntime()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        network = f"vpg-{SESSION}-fobench"
        runtime.ensure_network(network, labels={TEST_LABEL: SESSION})
        try:
            for label, timeout in settings:
                fields: dict[str, Any] = {"auto_failover": True}
                if timeout is not None:
                    fields["failover_timeout"] = f"{timeout:g}s"
                c = Cluster(runtime=runtime, scope=f"fo{SESSION}{int(timeout or 0)}", name="db",
                            home=work / f"home{timeout}", workdir=work, network=network, base=fields)
                c.apply(replicas=args.replicas).ok()
                q(c, 0, "CREATE TABLE t (id bigint PRIMARY KEY)")
                if timeout is None:
                    ours_probe, floor_probe = probe_latency(c)
                    print(f"  health probe under pgbench (-c 8): ours {percentiles(ours_probe)}; "
                          f"floor (SELECT 1) {percentiles(floor_probe)}", flush=True)
                mine, base = results.setdefault(f"ours, {label}", []), results.setdefault(f"floor, {label}", [])
                try:
                    for run in range(0 if args.probe_only else args.runs):
                        mine.append(ours(c, args.replicas))
                        heal(c, args.replicas)
                        base.append(floor(c, args.replicas))
                        heal(c, args.replicas)
                        print(f"  run {run + 1}: ours {mine[-1]:5.2f}s  floor {base[-1]:5.2f}s", flush=True)
                finally:
                    c.cli("delete", c.ref, "--prune", "--yes")
        finally:
            for net in runtime.client.networks.list(names=[network]):
                if net.name == network:
                    net.remove()
    if args.probe_only:
        return 0
    print("\nkill → first acknowledged write on the new primary")
    for name, values in results.items():
        print(f"  {name:<28} {stats(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
