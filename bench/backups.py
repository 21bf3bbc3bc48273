"""Benchmark: logical backups — our capture and restore next to raw pg_dump / pg_restore, same run.

One 2-pod cluster is built with the CLI and filled with ``pgbench -i -s SCALE`` (scale 70 ≈ 1 GB).
Then, each measured in the same run on the same image and network:

* **capture** — ``voodu-postgres backups:capture REF --follow`` (a subprocess) next to a raw
  ``pg_dump`` with the same flags (``DUMP_FLAGS``, the default) in a throw-away container of the
  same image on the same network writing to the same directory. Runs alternate raw/ours, the order flipping
  every run, so drift on a shared machine hits both; each run is printed, then the medians and the throughput ratio
  (target ≥ 0.95×). Throughput is timed from the dump container's start to the command having
  its result (ours: the CLI's exit, so the snapshot session, the row counts when within budget,
  the TOC check, sha256, fsync, rename, sidecar and retention all count); end to end adds each
  command's launch — ours a new Python process (imports, the bucket, the checks) and Docker's
  create/start, raw only create/start — and is printed beside it. Measured twice: on the pgbench
  database, then again after adding ``--random-mb`` of random md5 text (see below).
* **format candidates** — raw ``pg_dump -Fc`` at ``-Z6`` (the Go plugin's), ``-Z3``, ``-Z1`` and
  ``-Z0`` (lz4 is tried too; pg_dump 15's custom format has no lz4): size and dump time, and the
  time of a raw ``pg_restore`` into a scratch database, each for two kinds of data — the pgbench
  tables, whose filler columns compress about 50×, and a table of random md5 hex text, which
  compresses about 2× — so the choice of the default is not made on pgbench's filler alone.
* **restore** — ``voodu-postgres backups:restore REF ID --yes`` (one transaction into the primary)
  next to a raw ``pg_restore --clean --if-exists --single-transaction`` of the same data.

The default these numbers chose is ``-Fc -Z1`` (``DUMP_LEVEL`` in voodu_postgres/reconciler/backups.py),
weighed on three things: the dump's wall time (the snapshot it holds keeps the primary from
vacuuming what it still sees, and on a standby ``hot_standby_feedback`` carries that back), its
size on the host (``--keep N`` keeps N of them) and the restore time. Measured at scale 70 with
256 MB of text: on the text ``-Z1`` dumps 2–3× faster than ``-Z6`` for a file 3% larger; on the
pgbench tables every level takes the same time (the server's COPY is the bottleneck) for the same
20 MB; restores take the same time at every level; ``-Z0`` is faster on the text but twice the size
there and 36× on pgbench's tables. The README's Backups section has the table.

Usage: ``.venv/bin/python bench/backups.py [--scale 70] [--runs 9] [--random-mb 256] [--skip-formats]``. Needs
Docker and the local image (``bash scripts/setup-docker.sh``); everything it makes is labelled
and removed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
from labelled import LABEL, remove_labelled

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voodu_postgres.reconciler.backups import DUMP_FLAGS  # noqa: E402 - after the path is set

IMAGE = os.environ.get("VOODU_POSTGRES_TEST_IMAGE", "voodu-postgres-local:15")
CLI = [sys.executable, "-m", "voodu_postgres"]
RANDOM_TABLE = "bench_random"


class Bench:
    def __init__(self, session: str, work: Path) -> None:
        self.session, self.work = session, work
        self.scope, self.name = f"bk{session}", "db"
        self.ref = f"{self.scope}/{self.name}"
        self.network = f"bench-bk-{session}"
        self.backups = work / "backups"
        self.backups.mkdir(parents=True)
        self.env = {**os.environ, "VOODU_POSTGRES_HOME": str(work / "home"),
                    "VOODU_POSTGRES_LABELS": f"{LABEL}={session}"}
        self.client = docker.from_env()
        self._password = ""

    def cli(self, *argv: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        started = time.monotonic()
        result = subprocess.run([*CLI, *argv], env=self.env, capture_output=True, text=True, cwd=ROOT)
        took = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"voodu-postgres {' '.join(argv)} failed ({result.returncode}):\n"
                             f"{result.stdout}{result.stderr}")
        return took, result

    def apply(self) -> None:
        hcl = self.work / "voodu.hcl"
        hcl.write_text(textwrap.dedent(f"""\
            postgres "{self.scope}" "{self.name}" {{
              image     = "{IMAGE}"
              replicas  = 2
              volumes   = ["{self.backups}:/backups:rw"]
              pg_config = {{ max_wal_size = "4GB", checkpoint_timeout = "30min" }}
            }}
            """))
        self.cli("apply", "-f", str(hcl), "--network", self.network, "--timeout", "300")
        self._password = self.cli("config", "get", self.ref, "POSTGRES_PASSWORD")[1].stdout.strip()

    @property
    def primary(self) -> str:
        return f"{self.scope}-{self.name}.0"

    def exec(self, *argv: str) -> str:
        result = self.client.containers.get(self.primary).exec_run(list(argv), user="postgres")
        out = result.output.decode(errors="replace")
        if result.exit_code != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {out[-2000:]}")
        return out

    def sql(self, query: str) -> str:
        return self.exec("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-c", query).strip()

    def raw(self, script: str) -> float:
        """Run ``script`` in a throw-away container of the image on the cluster network (the
        same kind of container our capture uses) with the backups dir mounted; its wall time."""
        return self.raw_timed(script)[0]

    def raw_timed(self, script: str) -> tuple[float, float]:
        """:meth:`raw`, and the time from the container's start to its exit being known here."""
        started = time.monotonic()
        container = self.client.containers.run(
            IMAGE, ["bash", "-c", f"set -euo pipefail; {script}"], network=self.network, user="postgres",
            environment={"PGPASSWORD": self._password, "PGHOST": f"{self.name}-0.{self.scope}.voodu",
                         "PGUSER": "postgres", "PGDATABASE": "postgres"},
            volumes={str(self.backups): {"bind": "/backups", "mode": "rw"}}, labels={LABEL: self.session},
            detach=True)
        code = container.wait()["StatusCode"]
        done_wall, took = time.time(), time.monotonic() - started
        logs = container.logs().decode(errors="replace")
        since_start = done_wall - started_at(container)
        container.remove(force=True)
        if code != 0:
            raise SystemExit(f"raw script failed ({code}): {logs[-2000:]}")
        return took, since_start

    def cleanup(self) -> None:
        remove_labelled(self.client, self.session)


def started_at(container: Any) -> float:
    """When Docker started the container, as a Unix time (the daemon runs on this host: one clock)."""
    container.reload()
    stamp = container.attrs["State"]["StartedAt"]  # RFC 3339 with nanoseconds
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp() + float(f"0.{frac or 0}")


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 10e6 else f"{n / 1e6:,.1f} MB"


def database_size(b: Bench) -> int:
    return int(b.sql("SELECT pg_database_size('postgres')"))


def compare_capture(b: Bench, label: str, runs: int) -> str:
    """Alternate a raw pg_dump and our capture ``runs`` times; print each pair and the medians.
    The id of the last backup (for the restore comparison).

    Two times per command. **Capture** — from the dump container's start (Docker's
    ``State.StartedAt``) until the command has its result: for raw, ``wait`` returning; for ours,
    the CLI exiting, so our finalisation (sidecar, retention) counts. That is the throughput the
    target is about: the same kind of container doing the same dump, plus everything we add
    around the dump. **End to end** — the whole command as launched: for ours a new Python
    process (imports, reading the bucket, the checks) and Docker's create/start; for raw, create/
    start from this already-running process. The difference between the two is fixed latency
    (printed as CLI start-up), not throughput."""
    flags = " ".join(DUMP_FLAGS)
    size = database_size(b)
    print(f"\ncapture of {label} ({mb(size)}), {flags}:")
    ours, raw, ours_end, raw_end, backup_id = [], [], [], [], ""
    b.raw(f"pg_dump {flags} -f /backups/raw.dump")  # warm-up, not counted: caches as for every later run
    for run in range(1, runs + 1):
        # the order flips every run (raw first, then ours first), so whatever the previous
        # command leaves behind (page cache, a file being deleted) falls on each side alike
        for side in ("raw", "ours") if run % 2 else ("ours", "raw"):
            if side == "raw":
                (b.backups / "raw.dump").unlink(missing_ok=True)  # a new file each time, as ours writes
                took, since_start = b.raw_timed(f"pg_dump {flags} -f /backups/raw.dump && sync /backups/raw.dump")
                raw_end.append(took)
                raw.append(since_start)
                continue
            took, result = b.cli("backups:capture", b.ref, "--follow", "-o", "json")
            done_wall = time.time()
            ours_end.append(took)
            backup_id = json.loads(result.stdout)["id"]
            ours.append(done_wall - started_at(b.client.containers.get(f"{b.scope}-{b.name}.bk.{backup_id}")))
        print(f"  run {run}: capture ours {ours[-1]:6.2f}s  raw {raw[-1]:6.2f}s  ratio {raw[-1] / ours[-1]:.3f}"
              f"   | end to end ours {ours_end[-1]:6.2f}s  raw {raw_end[-1]:6.2f}s")
        if run < runs:  # keep one: the restore comparison restores it
            b.cli("backups:delete", b.ref, backup_id, "--yes")
    our_t, raw_t = statistics.median(ours), statistics.median(raw)
    our_e, raw_e = statistics.median(ours_end), statistics.median(raw_end)
    print(f"  median capture: ours {our_t:6.2f}s ({size / our_t / 1e6:5.1f} MB/s)   raw pg_dump {raw_t:6.2f}s "
          f"({size / raw_t / 1e6:5.1f} MB/s)   throughput ratio {raw_t / our_t:.3f} (target >= 0.95)")
    # each pair ran back to back, so its ratio is the least exposed to the machine's drift
    paired = statistics.median(r / o for r, o in zip(raw, ours, strict=True))
    print(f"  median of the {runs} paired ratios: {paired:.3f}")
    print(f"  median end to end: ours {our_e:6.2f}s   raw {raw_e:6.2f}s   ratio {raw_e / our_e:.3f} "
          f"(ours includes {our_e - our_t:.2f}s of CLI start-up, checks and container start; raw "
          f"{raw_e - raw_t:.2f}s of container start)")
    return backup_id


def candidates(b: Bench) -> None:
    kinds = [("pgbench tables", f"-T public.{RANDOM_TABLE}"), ("random md5 text", f"-t public.{RANDOM_TABLE}")]
    if not b.sql(f"SELECT to_regclass('public.{RANDOM_TABLE}') IS NOT NULL") == "t":
        kinds = kinds[:1]
    print(f"\nformat candidates (raw pg_dump → size and dump time; raw pg_restore into a scratch database); "
          f"default: {' '.join(DUMP_FLAGS)}")
    levels = [("-Fc -Z6", "-Fc -Z6"), ("-Fc -Z3", "-Fc -Z3"), ("-Fc -Z1", "-Fc -Z1"), ("-Fc -Z0", "-Fc -Z0"),
              ("-Fc lz4", "-Fc --compress=lz4")]
    for kind, selector in kinds:
        print(f"  {kind}:")
        for label, flags in levels:
            try:
                dump_t = b.raw(f"pg_dump {flags} {selector} -f /backups/cand.dump && sync /backups/cand.dump")
            except SystemExit as exc:
                print(f"    {label:<8} unavailable here ({str(exc).splitlines()[-1][:80]})")
                continue
            dump_size = (b.backups / "cand.dump").stat().st_size
            restore_t = b.raw("dropdb --if-exists scratch && createdb scratch && "
                              "pg_restore -d scratch --no-owner /backups/cand.dump")
            print(f"    {label:<8} {mb(dump_size):>9}   dump {dump_t:6.2f}s   restore {restore_t:6.2f}s")
    b.raw("dropdb --if-exists scratch")
    (b.backups / "cand.dump").unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 ≈ 1 GB)")
    parser.add_argument("--runs", type=int, default=9, help="capture runs per dataset (alternating raw/ours)")
    parser.add_argument("--random-mb", type=int, default=256,
                        help="MB of random md5 text added for the second capture and the formats (0: none)")
    parser.add_argument("--skip-formats", action="store_true", help="only the capture and restore comparisons")
    args = parser.parse_args()
    session = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        b = Bench(session, Path(tmp))
        try:
            b.client.networks.create(b.network, driver="bridge", labels={LABEL: session})
            b.apply()
            t0 = time.monotonic()
            b.exec("pgbench", "-i", "-q", "-s", str(args.scale), "-p", "5432", "-h", "127.0.0.1", "postgres")
            b.sql("VACUUM ANALYZE")
            b.sql("CHECKPOINT")  # the load's dirty pages written now, not during the first measured dump
            print(f"database: pgbench scale {args.scale}, {mb(database_size(b))} "
                  f"(loaded in {time.monotonic() - t0:.0f}s)")
            listing = [b.cli("backups", b.ref, "-o", "json")[0] for _ in range(3)]
            print(f"CLI start-up (a `backups` listing, median of 3): {statistics.median(listing):.2f}s")

            backup_id = compare_capture(b, "pgbench", args.runs)
            if args.random_mb > 0:
                # two md5s and an id: ~100 bytes a row on disk, 74 bytes of hex text in the dump
                rows = args.random_mb * 1_000_000 // 100
                b.sql(f"CREATE TABLE {RANDOM_TABLE} AS SELECT g AS id, md5(random()::text) AS a, "
                      f"md5(random()::text) AS b FROM generate_series(1, {rows}) g")
                b.sql(f"VACUUM ANALYZE {RANDOM_TABLE}")
                b.sql("CHECKPOINT")
                backup_id = compare_capture(b, f"pgbench + {args.random_mb} MB of random md5 text", args.runs)
            if not args.skip_formats:
                candidates(b)

            took, _ = b.cli("backups:restore", b.ref, backup_id, "--yes")
            raw_restore = b.raw("pg_restore -d postgres --clean --if-exists --no-owner --no-privileges "
                                "--single-transaction --exit-on-error /backups/raw.dump")
            print(f"\nrestore (one transaction) ours {took:6.2f}s   raw pg_restore {raw_restore:6.2f}s   "
                  f"ratio {raw_restore / took:.2f}x")
        finally:
            b.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
