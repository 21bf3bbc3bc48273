"""One mutating operation per cluster at a time: a lease kept in the state store.

``apply``, each ``reconcile`` pass, ``promote``, ``rejoin``, ``delete``, ``new-password``,
``expose``/``unexpose`` and the physical ``restore`` hold the cluster's lease while they work; a
second one waits (saying who holds it) up to ``--lock-timeout``, or with ``--no-wait`` fails at
once naming the holder.
Read-only commands take none.

Nothing can wedge a cluster: the holder renews the lease from a background thread while it works
(``TTL`` seconds ahead), so a holder killed with ``kill -9`` stops renewing and its lease expires;
on the same host a dead holder is noticed at once (its pid is gone, or now belongs to a process
that started later) and the lease is taken over immediately.

Because every mutating operation holds the lease, an in-flight marker found in the bucket by
someone holding the lease (a promote's ``PG_SWITCHOVER_TO``) can only belong to an operation that
died: the reconciler may finish it instead of waiting for it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from voodu_postgres.adapters.store import Lease, SqliteStore
from voodu_postgres.domain.errors import CommandError
from voodu_postgres.domain.naming import Ref

TTL = 15.0  # seconds a lease lives without renewal
POLL = 0.25


class LeaseBusy(CommandError):
    """Another live operation holds the cluster's lease."""


def _pid_start(pid: int) -> str:
    """The process' start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or ""."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            stat = handle.read()
    except OSError:
        return ""
    # the command name (field 2) may contain spaces and parentheses: split after the last ")"
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def holder_is_dead(lease: Lease) -> bool:
    """A holder on this host whose process is gone (or whose pid was reused) is dead."""
    if lease.host != socket.gethostname():
        return False  # another host: only expiry can tell
    start = _pid_start(lease.pid)
    return start == "" or (lease.pid_start != "" and start != lease.pid_start)


def describe(lease: Lease) -> str:
    since = datetime.fromtimestamp(lease.started, UTC).strftime("%H:%M:%S")
    return f"`{lease.command}` (pid {lease.pid} on {lease.host}, since {since} UTC)"


@contextmanager
def cluster_lease(store: SqliteStore, ref: Ref, command: str, *, wait: bool = True, timeout: float = 300.0,
                  on_wait: Callable[[str], None] = lambda _line: None,
                  clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                  ttl: float = TTL) -> Iterator[Lease]:
    """Hold ``ref``'s lease for the body of the ``with`` block.

    An interrupt (Ctrl-C, or SIGTERM, which the CLI turns into one) can land anywhere — between
    the store committing our row and ``try_lease`` returning, or in the middle of the release. So
    the acquisition runs inside the ``try`` whose ``finally`` deletes our row (by our unique
    holder id: a no-op when we never got it), and a release cut short by the interrupt is done
    again before the interrupt carries on. A watcher takes and drops the lease every pass, so
    these windows are hit in practice, and a lease left behind by a live process blocks every
    other command until it expires."""
    pid = os.getpid()
    want = Lease(ref.scope, ref.name, uuid.uuid4().hex, pid, _pid_start(pid), socket.gethostname(), command,
                 clock(), clock() + ttl)
    deadline = clock() + timeout
    announced = ""
    stop = threading.Event()
    renewer: threading.Thread | None = None
    try:
        while True:
            now = clock()
            got = store.try_lease(Lease(**{**want.__dict__, "started": now, "expires": now + ttl}),
                                  is_dead=holder_is_dead, now=now)
            if got.holder == want.holder:
                want = got
                break
            if not wait:
                raise LeaseBusy(f"postgres {ref} is busy: {describe(got)} is running; retry when it is done "
                                "(or drop --no-wait to wait for it)")
            if clock() > deadline:
                raise LeaseBusy(f"postgres {ref} is still busy after {timeout:.0f}s: {describe(got)} is running "
                                "(raise --lock-timeout to wait longer)")
            if got.holder != announced:
                on_wait(f"waiting for {describe(got)} to finish…")
                announced = got.holder
            sleep(POLL)

        def renew() -> None:
            while not stop.wait(ttl / 3):
                store.renew_lease(ref.scope, ref.name, want.holder, clock() + ttl)

        renewer = threading.Thread(target=renew, name=f"lease-{ref}", daemon=True)
        renewer.start()
        yield want
    finally:
        stop.set()
        _release(store, ref, want.holder, renewer)


def _release(store: SqliteStore, ref: Ref, holder: str, renewer: threading.Thread | None) -> None:
    try:
        if renewer is not None:
            renewer.join(5)  # a renewal after the release is harmless (it updates no row), but wait for it
    finally:
        try:
            store.release_lease(ref.scope, ref.name, holder)
        except KeyboardInterrupt:
            store.release_lease(ref.scope, ref.name, holder)  # the CLI raises only once per SIGTERM
            raise
