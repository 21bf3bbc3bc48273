"""The effects that move the primary or bring a former primary back: fence, the WAL positions,
promote, re-point, rewind. The executor runs them for the steps of every switchover — a promote,
an automatic failover, an interrupted one — and for ``rejoin``.

Each function performs one step and returns a line saying what it did; none waits for the
cluster to settle (the caller observes again). What a step records in the bucket is a patch of
the typed cluster record (``domain.record.ClusterRecord``), written by the executor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from voodu_postgres.adapters.docker import Runtime, RuntimeFailure
from voodu_postgres.adapters.files import write_secret
from voodu_postgres.domain.keys import (
    REPLICATION_PASSWORD_KEY,
)
from voodu_postgres.domain.model import STOPPED_STATES, Desired
from voodu_postgres.domain.naming import PGDATA
from voodu_postgres.domain.podspec import STATE_MOUNT
from voodu_postgres.reconciler.observe import pod_endpoint
from voodu_postgres.render.statefulset import WRAPPER_PATH

STOP_TIMEOUT = 60
#: pg_rewind output that means "could not talk to the source", not "cannot rewind this data"
_NOT_A_REWIND_PROBLEM = ("could not connect", "password authentication failed", "Connection refused",
                         "could not translate host name", "timeout expired")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, *, poll: float = 0.05) -> float:
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except RuntimeFailure:
            pass
        if time.monotonic() - start > timeout:
            raise RuntimeFailure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


# -- pod effects ------------------------------------------------------------------------------


def fence(runtime: Runtime, desired: Desired, ordinal: int, *, timeout: int = STOP_TIMEOUT) -> int:
    """Stop a pod so it can take no more writes (Docker also drops its restart policy for a stop).

    Returns the exit code: 0 is a clean fast shutdown, after which every standby that was
    connected has flushed all the WAL it wrote (walsenders wait for that before exiting).
    """
    return runtime.stop_container(desired.ref.container(ordinal), timeout=timeout)


#: seconds a failing primary gets to shut down when fenced before Docker kills it: it is failing
#: (hung, partitioned, crash-looping), so a clean shutdown is not expected — only certainty
FAILING_FENCE_TIMEOUT = 3


def fence_failing(runtime: Runtime, desired: Desired, ordinal: int, *, timeout: int = FAILING_FENCE_TIMEOUT) -> str:
    """Stop a failing primary — paused, hung, restarting, detached — and make sure it stayed stopped
    (Docker's stop also kills a paused container, and drops the restart policy). Raises a transient
    RuntimeFailure when it is still not stopped: nothing may be promoted then."""
    container = desired.ref.container(ordinal)
    state = runtime.container_state(container)
    if state is None:
        return f"{desired.app_name(ordinal)} has no container: nothing to fence"
    if state in STOPPED_STATES:
        return f"fenced {desired.app_name(ordinal)}: its container is {state}"
    runtime.stop_container(container, timeout=timeout)
    after = runtime.container_state(container)
    if after is not None and after not in STOPPED_STATES:
        raise RuntimeFailure(f"fencing {desired.app_name(ordinal)}: still {after} after docker stop", transient=True)
    return f"fenced {desired.app_name(ordinal)}: stopped its {state} container"


def received_positions(runtime: Runtime, desired: Desired, ordinals: list[int]) -> dict[int, int | None]:
    """Each standby's ``pg_last_wal_receive_lsn()`` (None: it did not answer, or is not in recovery)."""
    out: dict[int, int | None] = {}
    for ordinal in ordinals:
        try:
            out[ordinal] = runtime.postgres().received_lsn(pod_endpoint(runtime, desired, ordinal))
        except RuntimeFailure:
            out[ordinal] = None
    return out


def current_position(runtime: Runtime, desired: Desired, ordinal: int) -> int:
    """A primary's ``pg_current_wal_lsn()``."""
    return runtime.postgres().current_lsn(pod_endpoint(runtime, desired, ordinal))


def promote_pod(runtime: Runtime, desired: Desired, ordinal: int, *, timeout: float = 30) -> str:
    """``pg_promote()`` and wait until it accepts writes; the function must return ``t``."""
    name, pg = desired.app_name(ordinal), runtime.postgres()
    endpoint = pod_endpoint(runtime, desired, ordinal)
    if not pg.in_recovery(endpoint):
        return f"{name} already accepts writes"
    if not pg.promote(endpoint):
        raise RuntimeFailure(f"pg_promote() on {name} returned false: not promoted within its wait")
    waited = wait_until(lambda: not pg.in_recovery(endpoint), timeout, f"{name} to leave recovery")
    return f"promoted {name}: accepting writes after {waited:.2f}s"


def repoint(runtime: Runtime, desired: Desired, ordinal: int) -> str:
    """Rewrite a running standby's ``primary_conninfo`` for the current primary and reload it."""
    name = desired.app_name(ordinal)
    result = runtime.exec(desired.ref.container(ordinal), ["bash", WRAPPER_PATH, "--repoint"], user="root")
    if result.exit_code != 0:
        last = (result.output.strip().splitlines() or [f"exit {result.exit_code}"])[-1]
        raise RuntimeFailure(f"{name}: could not rewrite primary_conninfo: {last}")
    runtime.postgres().reload(pod_endpoint(runtime, desired, ordinal))
    return f"re-pointed {name} at {desired.app_name(desired.target_primary)} (reload, no restart)"


REWIND_SECRET = "rewind_password"


def _rewind_secret(desired: Desired, ordinal: int, password: str) -> tuple[Path, str] | None:
    """Write the replication password for a rewind into the pod's state mount (host path, path
    inside the container), or None when the pod has no state mount (then PGPASSWORD is unset and
    pg_rewind relies on the pod's own trust rules)."""
    if ordinal >= len(desired.pods):
        return None
    mount = next((b for b in desired.pod(ordinal).binds if b.target == STATE_MOUNT), None)
    if mount is None:
        return None
    write_secret(Path(mount.source), REWIND_SECRET, password)
    return Path(mount.source) / REWIND_SECRET, f"{STATE_MOUNT}/{REWIND_SECRET}"


def rejoin_pod(runtime: Runtime, desired: Desired, ordinal: int, *, replication_user: str,
               bucket: Mapping[str, str], extra_labels: Mapping[str, str] | None = None,
               progress: Callable[[str], None] = lambda _line: None) -> str:
    """Make a former primary a standby of the current one; returns once it is started again.

    Stop it (ending any split brain), ``CHECKPOINT`` the primary (pg_rewind compares timelines
    from control files, and right after a promotion the new one still shows the old timeline),
    ``pg_rewind`` as the postgres OS user in a one-shot container sharing the pod's mounts, arm
    ``standby.signal`` and start it. If pg_rewind cannot rewind this data, wipe the pod's volume
    and re-create it (a fresh clone) — but never wipe when the primary was merely unreachable.
    """
    ref = desired.ref
    name, primary = desired.app_name(ordinal), desired.target_primary
    container = ref.container(ordinal)
    state = runtime.container_state(container)
    if state is None:
        raise RuntimeFailure(f"{container} does not exist; reconcile recreates it")
    if state in ("running", "restarting"):
        runtime.stop_container(container, timeout=STOP_TIMEOUT)
        progress(f"stopped {name}")
    runtime.postgres().checkpoint(pod_endpoint(runtime, desired, primary))
    # The replication password travels in a 0600 file on the state mount the one-shot inherits,
    # read by its root shell into pg_rewind's own environment: never the container's env or argv
    # (both are in `docker inspect`)
    secret = _rewind_secret(desired, ordinal, bucket.get(REPLICATION_PASSWORD_KEY, ""))
    as_postgres = "exec setpriv --reuid=postgres --regid=postgres --init-groups"
    script = (f'export PGPASSWORD="$(cat {secret[1]})"; {as_postgres} bash -c \'pg_rewind --target-pgdata="$PGDATA" '
              '--source-server="$SOURCE" --progress && touch "$PGDATA/standby.signal"\'') if secret else (
        'pg_rewind --target-pgdata="$PGDATA" --source-server="$SOURCE" --progress && touch "$PGDATA/standby.signal"')
    env = {
        "PGDATA": PGDATA,
        "SOURCE": f"host={desired.host(primary)} port={desired.port} user={replication_user} dbname=postgres",
        # pg_rewind runs crash recovery through `postgres --single`; in a one-shot container
        # pg_rewind is PID 1, which a stale postmaster.pid may name: this tells postgres that
        # PID is its grandparent, not a live postmaster
        "PG_GRANDPARENT_PID": "1",
    }
    t0 = time.monotonic()
    try:
        result = runtime.run_oneshot(runtime.image_of(container), ["bash", "-c", script], volumes_from=container,
                                     network=desired.network, env=env, labels=dict(extra_labels or {}),
                                     user="root" if secret else "postgres")
    finally:
        if secret:
            secret[0].unlink(missing_ok=True)
    if result.exit_code == 0:
        runtime.start_container(container)
        progress(f"rewound {name} onto {desired.app_name(primary)}'s timeline; starting it as a standby")
        return f"pg_rewind kept its data ({time.monotonic() - t0:.2f}s)"
    reason = (result.output.strip().splitlines() or ["pg_rewind failed"])[-1]
    if any(marker in result.output for marker in _NOT_A_REWIND_PROBLEM):
        # the source was unreachable: a re-clone would fail the same way, and wiping this pod's
        # data for nothing would be a loss
        raise RuntimeFailure(f"pg_rewind could not reach {desired.app_name(primary)} ({reason}); {name} is "
                             "stopped with its data intact — fix that and retry")
    progress(f"pg_rewind failed ({reason}); falling back to wipe and re-clone")
    runtime.remove_container(container)
    runtime.remove_volume(ref.volume(ordinal))
    runtime.run_pod(desired.pod(ordinal))
    return "pg_rewind failed, so it was wiped and re-cloned from the primary"
