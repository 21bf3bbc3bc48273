"""The per-cluster operation lease: exclusion, waiting, --no-wait, takeover of dead or expired holders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from voodu_postgres.adapters.lease import LeaseBusy, cluster_lease
from voodu_postgres.adapters.store import Lease, SqliteStore
from voodu_postgres.domain.naming import Ref

REF = Ref("shop", "db")


def test_second_holder_fails_at_once_with_no_wait_naming_the_first(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    with cluster_lease(store, REF, "promote"):
        with pytest.raises(LeaseBusy) as err:
            with cluster_lease(store, REF, "apply", wait=False):
                pass
    text = str(err.value)
    assert "`promote`" in text and f"pid {os.getpid()}" in text and "\n" not in text
    with cluster_lease(store, REF, "apply", wait=False):  # released on exit
        assert store.lease("shop", "db") is not None
    assert store.lease("shop", "db") is None


def test_waiter_gets_the_lease_when_the_holder_finishes_and_says_who_it_waited_for(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    order: list[str] = []
    messages: list[str] = []
    released = threading.Event()

    def holder() -> None:
        with cluster_lease(store, REF, "promote"):
            order.append("holder in")
            released.wait(5)
            order.append("holder out")

    t = threading.Thread(target=holder)
    t.start()
    while not order:
        time.sleep(0.01)
    threading.Timer(0.5, released.set).start()
    with cluster_lease(store, REF, "apply", timeout=10, on_wait=messages.append):
        order.append("waiter in")
    t.join()
    assert order == ["holder in", "holder out", "waiter in"]
    assert len(messages) == 1 and "`promote`" in messages[0]


def test_wait_times_out_with_one_line(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    with cluster_lease(store, REF, "promote"):
        with pytest.raises(LeaseBusy, match="still busy after 0s"):
            with cluster_lease(store, REF, "apply", timeout=0.3):
                pass


def test_a_holder_killed_with_sigkill_is_taken_over_at_once(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from voodu_postgres.adapters.lease import cluster_lease
        from voodu_postgres.domain.naming import Ref
        from voodu_postgres.adapters.store import SqliteStore
        with cluster_lease(SqliteStore(Path({str(tmp_path)!r})), Ref("shop", "db"), "promote", ttl=3600):
            print("held", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    store = SqliteStore(tmp_path)
    with pytest.raises(LeaseBusy):
        with cluster_lease(store, REF, "apply", wait=False):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = time.monotonic()
    with cluster_lease(store, REF, "apply", wait=False):  # its pid is gone: no need to wait for expiry
        pass
    assert time.monotonic() - started < 2


def test_an_expired_lease_of_another_host_is_taken_over_and_a_live_one_is_not(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    now = time.time()
    other = Lease("shop", "db", "h1", 1, "1", "elsewhere", "promote", now, now + 60)
    assert store.try_lease(other, is_dead=lambda _l: False, now=now).holder == "h1"
    with pytest.raises(LeaseBusy, match="elsewhere"):
        with cluster_lease(store, REF, "apply", wait=False):
            pass
    with cluster_lease(store, REF, "apply", wait=False, clock=lambda: now + 61):  # past its expiry
        pass


def test_leases_are_per_cluster(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    with cluster_lease(store, REF, "promote"), cluster_lease(store, Ref("shop", "other"), "apply", wait=False):
        pass


class InterruptedStore(SqliteStore):
    """The real store; ``interrupt_after`` names the one call after which a Ctrl-C / SIGTERM
    lands (the call itself completes: the row is written, or deleted, first)."""

    interrupt_after = ""

    def try_lease(self, *args: object, **kwargs: object) -> Lease:
        got = super().try_lease(*args, **kwargs)  # type: ignore[arg-type]
        if self.interrupt_after == "try_lease":
            self.interrupt_after = ""
            raise KeyboardInterrupt
        return got

    def release_lease(self, scope: str, name: str, holder: str) -> None:
        if self.interrupt_after == "release_lease":  # lands just before the delete
            self.interrupt_after = ""
            raise KeyboardInterrupt
        super().release_lease(scope, name, holder)


@pytest.mark.parametrize("where", ["try_lease", "release_lease"])
def test_an_interrupt_while_taking_or_dropping_the_lease_leaves_none_behind(tmp_path: Path, where: str) -> None:
    store = InterruptedStore(tmp_path)
    store.interrupt_after = where
    with pytest.raises(KeyboardInterrupt):
        with cluster_lease(store, REF, "reconcile", wait=False):
            assert where == "release_lease", "the body must not run when the acquisition was interrupted"
    assert store.lease("shop", "db") is None
    with cluster_lease(SqliteStore(tmp_path), REF, "apply", wait=False):  # free for the next command
        pass
