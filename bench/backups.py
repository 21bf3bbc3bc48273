"""Benchmark: logical backups — our capture and restore next to raw pg_dump / pg_restore, same run.

One 2-pod cluster is built with the CLI and filled with ``pgbench -i -s SCALE`` (scale 70 ≈ 1 GB).
Then, each measured in the same run on the same image and network:

* **capture** — ``voodu-postgres backups:capture REF --follow`` (a subprocess: CLI start-up, the
  checks, the dump to ``.partial``, TOC and row counts, sha256, fsync and rename, metadata)
  next to a raw ``pg_dump -Fc -Z6`` in a throw-away container of the same image on the same
  network writing to the same directory: throughput ratio (target ≥ 0.95×);
* **format candidates** — raw ``pg_dump`` with ``-Fc -Z6`` (the Go plugin's), ``-Fc -Z1``,
  ``-Fc -Z0`` and ``-Fc --compress=lz4`` when the server's pg_dump has it: size and time each,
  and the time of a raw ``pg_restore`` of each into a scratch database;
* **restore** — ``voodu-postgres backups:restore REF ID --yes`` (one transaction into the primary)
  next to a raw ``pg_restore --clean --if-exists --single-transaction`` of the same file.

Usage: ``.venv/bin/python bench/backups.py [--scale 70] [--runs 1]``. Needs Docker and the local
image (``bash scripts/setup-docker.sh``); everything it makes is labelled and removed.
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
from pathlib import Path

import docker

IMAGE = os.environ.get("VOODU_POSTGRES_TEST_IMAGE", "voodu-postgres-local:15")
LABEL = "org.voodu-postgres.bench"
ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "voodu_postgres"]


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

    @property
    def primary(self) -> str:
        return f"{self.scope}-{self.name}.0"

    def exec(self, *argv: str) -> str:
        result = self.client.containers.get(self.primary).exec_run(list(argv), user="postgres")
        out = result.output.decode(errors="replace")
        if result.exit_code != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {out[-2000:]}")
        return out

    def raw(self, script: str) -> float:
        """Run ``script`` in a throw-away container of the image on the cluster network (the
        same kind of container our capture uses) with the backups dir mounted; its wall time."""
        password = self.cli("config", "get", self.ref, "POSTGRES_PASSWORD")[1].stdout.strip()
        started = time.monotonic()
        container = self.client.containers.run(
            IMAGE, ["bash", "-c", f"set -euo pipefail; {script}"], network=self.network, user="postgres",
            environment={"PGPASSWORD": password, "PGHOST": f"{self.name}-0.{self.scope}.voodu",
                         "PGUSER": "postgres", "PGDATABASE": "postgres"},
            volumes={str(self.backups): {"bind": "/backups", "mode": "rw"}}, labels={LABEL: self.session},
            detach=True)
        code = container.wait()["StatusCode"]
        took = time.monotonic() - started
        logs = container.logs().decode(errors="replace")
        container.remove(force=True)
        if code != 0:
            raise SystemExit(f"raw script failed ({code}): {logs[-2000:]}")
        return took

    def cleanup(self) -> None:
        selector = {"label": f"{LABEL}={self.session}"}
        for c in self.client.containers.list(all=True, filters=selector):
            c.remove(force=True, v=True)
        for v in self.client.volumes.list(filters=selector):
            v.remove(force=True)
        for n in self.client.networks.list(filters=selector):
            n.remove()


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 ≈ 1 GB)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    session = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        b = Bench(session, Path(tmp))
        try:
            b.client.networks.create(b.network, driver="bridge", labels={LABEL: session})
            b.apply()
            t0 = time.monotonic()
            b.exec("pgbench", "-i", "-q", "-s", str(args.scale), "-p", "5432", "-h", "127.0.0.1", "postgres")
            size = int(b.exec("psql", "-XAtc", "SELECT pg_database_size('postgres')", "-h", "127.0.0.1").strip())
            print(f"database: pgbench scale {args.scale}, {mb(size)} (loaded in {time.monotonic() - t0:.0f}s)")

            ours, raw = [], []
            backup_id = ""
            for _ in range(args.runs):
                raw.append(b.raw("pg_dump -Fc -Z6 -f /backups/raw.dump && sync /backups/raw.dump"))
                took, result = b.cli("backups:capture", b.ref, "--follow", "-o", "json")
                ours.append(took)
                backup_id = json.loads(result.stdout).get("id", backup_id)
            our_t, raw_t = statistics.median(ours), statistics.median(raw)
            print(f"\ncapture (-Fc -Z6)        ours {our_t:6.1f}s  {size / our_t / 1e6:6.1f} MB/s   raw pg_dump "
                  f"{raw_t:6.1f}s  {size / raw_t / 1e6:6.1f} MB/s   ratio {raw_t / our_t:.2f}x (target >= 0.95)")

            print("\nformat candidates (raw pg_dump → size, dump time; raw pg_restore into a scratch database)")
            candidates = [("-Fc -Z6", "-Fc -Z6"), ("-Fc -Z3", "-Fc -Z3"), ("-Fc -Z1", "-Fc -Z1"), ("-Fc -Z0", "-Fc -Z0"),
                          ("-Fc lz4", "-Fc --compress=lz4")]
            for label, flags in candidates:
                try:
                    dump_t = b.raw(f"pg_dump {flags} -f /backups/cand.dump && sync /backups/cand.dump")
                except SystemExit as exc:
                    print(f"  {label:<10} unavailable here ({str(exc).splitlines()[-1][:80]})")
                    continue
                dump_size = (b.backups / "cand.dump").stat().st_size
                restore_t = b.raw("dropdb --if-exists scratch && createdb scratch && "
                                  "pg_restore -d scratch --no-owner /backups/cand.dump")
                print(f"  {label:<10} {mb(dump_size):>9}  dump {dump_t:6.1f}s  restore {restore_t:6.1f}s")

            took, _ = b.cli("backups:restore", b.ref, backup_id, "--yes")
            raw_restore = b.raw("pg_restore -d postgres --clean --if-exists --no-owner --no-privileges "
                                "--single-transaction --exit-on-error /backups/raw.dump")
            print(f"\nrestore (one transaction) ours {took:6.1f}s   raw pg_restore {raw_restore:6.1f}s   "
                  f"ratio {raw_restore / took:.2f}x")
        finally:
            b.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
