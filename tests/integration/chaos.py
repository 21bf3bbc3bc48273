"""Chaos scenarios on real clusters, shared by ``test_chaos.py`` (a few iterations in CI) and
``bench/chaos.py`` (N iterations and a tally).

Each scenario runs a real ``voodu-postgres`` process, kills it with SIGKILL at a random instant
spread over its whole run, then lets the next command finish the job (the same command again, or
``reconcile``), under a write load and with a sampler asking every pod whether it is writable every
~50 ms. The outcome records whether the cluster converged (exactly one writable pod, the recorded
primary, every other pod streaming from it), how many acknowledged writes are missing on the
primary, and the largest number of writable pods seen in one sample.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from tests.integration.conftest import SESSION, TEST_LABEL
from tests.integration.helpers_cli import LABELS_ENV, Cluster
from tests.integration.load import Sampler, Writer, assert_healed, ids_on, primary_ordinal, q


@dataclass
class Outcome:
    scenario: str
    kill_at: float
    converged: bool
    lost: int
    max_writable: int
    acked: int
    detail: str = ""


def spawn(c: Cluster, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, LABELS_ENV: f"{TEST_LABEL}={SESSION}"}
    return subprocess.Popen([sys.executable, "-m", "voodu_postgres", "--home", str(c.home), *argv],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def kill_after(proc: subprocess.Popen[str], delay: float) -> tuple[int, str]:
    """SIGKILL ``proc`` after ``delay`` seconds unless it ended first; (exit code, stderr)."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    _out, err = proc.communicate(timeout=30)
    return proc.returncode, err


def converge(c: Cluster, replicas: int, timeout: float = 150) -> tuple[bool, str]:
    """Run ``reconcile`` passes until the cluster is healed (or time runs out)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        run = c.cli("reconcile", c.ref)
        lines = (run.out + run.err).strip().splitlines()
        last = lines[-1] if lines else ""
        try:
            assert_healed(c, primary=int(primary_ordinal(c)), replicas=replicas, timeout=3)
            return True, last
        except AssertionError as exc:
            last = f"{last} | {str(exc).splitlines()[0] if str(exc) else 'not healed'}"
        except Exception as exc:  # a pod still booting: connection refused
            last = f"{last} | {type(exc).__name__}"
        time.sleep(0.5)
    return False, last


_tables = itertools.count(1)


def _under_load(c: Cluster, replicas: int) -> tuple[Writer, Sampler]:
    # a fresh table per run: the writer numbers its rows from 1
    table = f"chaos_{next(_tables)}"
    q(c, int(primary_ordinal(c)), f"CREATE TABLE {table} (id bigint PRIMARY KEY)")
    writer, sampler = Writer(c, replicas, table=table), Sampler(c, replicas)
    sampler.start()
    writer.start()
    deadline = time.monotonic() + 30
    while writer.acked_count() < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    return writer, sampler


def _finish(c: Cluster, name: str, replicas: int, writer: Writer, sampler: Sampler, kill_at: float,
            detail: str) -> Outcome:
    ok, why = converge(c, replicas)
    time.sleep(0.5)  # a few more acknowledged writes on the healed cluster
    acked = writer.stop()
    sampler.stop()
    lost = len(set(acked) - ids_on(c, int(primary_ordinal(c)), writer.table)) if ok else -1
    most = max([len(w) for _t, w in sampler.doubles] or [1 if sampler.writable_seen else 0])
    return Outcome(name, kill_at, ok, lost, most, len(acked), detail if ok else f"{detail}; {why}")


def promote_killed(c: Cluster, rng: random.Random, *, replicas: int = 3, span: float = 6.0) -> Outcome:
    """``promote`` killed at a random instant, then the same promote again (or a reconcile)."""
    current = int(primary_ordinal(c))
    target = rng.choice([o for o in range(replicas) if o != current])
    writer, sampler = _under_load(c, replicas)
    kill_at = rng.uniform(0.0, span)
    code, err = kill_after(spawn(c, "promote", c.ref, "--replica", str(target)), kill_at)
    how = "reconcile"
    if rng.random() < 0.5:
        rerun = c.cli("promote", c.ref, "--replica", str(target))
        how = f"promote again (exit {rerun.code})"
    return _finish(c, "promote", replicas, writer, sampler, kill_at,
                   f"to db-{target}, first run exit {code}, then {how}")


def rejoin_killed(c: Cluster, rng: random.Random, *, replicas: int = 3, span: float = 4.0) -> Outcome:
    """A former primary left stopped (promote --no-restart); ``rejoin`` killed at a random instant."""
    current = int(primary_ordinal(c))
    target = rng.choice([o for o in range(replicas) if o != current])
    c.cli("promote", c.ref, "--replica", str(target), "--no-restart").ok()
    writer, sampler = _under_load(c, replicas)
    kill_at = rng.uniform(0.0, span)
    code, _err = kill_after(spawn(c, "rejoin", c.ref, "--replica", str(current)), kill_at)
    if rng.random() < 0.5:
        c.cli("rejoin", c.ref, "--replica", str(current))
    return _finish(c, "rejoin", replicas, writer, sampler, kill_at, f"db-{current}, first run exit {code}")


def concurrent_promotes(c: Cluster, rng: random.Random, *, replicas: int = 3) -> Outcome:
    """Two promotes to different targets at once: serialised by the lease, each ends with one line."""
    current = int(primary_ordinal(c))
    a, b = [o for o in range(replicas) if o != current][:2]
    writer, sampler = _under_load(c, replicas)
    first, second = spawn(c, "promote", c.ref, "--replica", str(a)), spawn(c, "promote", c.ref, "--replica", str(b))
    results = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, err))
    bad = [f"exit {code}: {err!r}" for code, err in results
           if code not in (0, 1) or "Traceback" in err or (code == 1 and err.count("\n") != 1)]
    outcome = _finish(c, "concurrent promotes", replicas, writer, sampler, 0.0,
                      f"exits {[code for code, _ in results]}")
    if bad:
        outcome.converged = False
        outcome.detail += "; " + "; ".join(bad)
    return outcome


def apply_killed(c: Cluster, rng: random.Random, *, replicas: int = 3, span: float = 10.0) -> Outcome:
    """A cold-start ``apply`` killed at a random instant, then ``apply`` again."""
    c.write(replicas=replicas)
    kill_at = rng.uniform(0.0, span)
    code, _err = kill_after(spawn(c, "apply", "-f", str(c.hcl), "--network", c.network), kill_at)
    again = c.apply(replicas=replicas)
    ok = again.code == 0
    try:
        assert_healed(c, primary=int(primary_ordinal(c)), replicas=replicas, timeout=30)
    except Exception as exc:
        ok = False
        again = again.__class__(again.code, again.out, f"{again.err} | {exc}")
    return Outcome("apply (cold start)", kill_at, ok, 0, 1, 0,
                   f"first run exit {code}" + ("" if ok else f"; {again.err.strip()[-300:]}"))
