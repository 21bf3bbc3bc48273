"""The ``reconcile --watch`` daemon: repeated reconcile passes over the applied clusters.

This module owns what a watcher remembers between passes and how it paces them: each cluster's
next pass (probed often when it has ``auto_failover``), the primary's health across passes
(:class:`HealthTracker`), the slower chores (consumers' URLs, scheduled backups) run at the
operator's interval, the messages already said, the skips already reported, and the sleep until
the next cluster is due.

Whatever belongs to the layers above — which clusters are applied, the operation lease, linked
consumers, scheduled backups, where lines are written — comes in through :class:`WatchHooks`, so
the reconciler never imports the commands. The watcher stops only when its ``stop`` callback says
so: the CLI turns SIGTERM into ``KeyboardInterrupt``, which unwinds it (and any lease it holds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from voodu_postgres.adapters.docker import ENGINE_ERRORS
from voodu_postgres.adapters.lease import LeaseBusy
from voodu_postgres.domain.errors import VooduError
from voodu_postgres.domain.health import HealthTracker
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.physical import PhysicalError, refuse_while_restoring
from voodu_postgres.domain.spec import PostgresSpec
from voodu_postgres.reconciler.loop import Context, Report, reconcile

#: the longest pause between two probes of a cluster with auto_failover (a quarter of its
#: failover_timeout when that is shorter)
PROBE_INTERVAL = 0.5

#: a scheduled backup's failure is reported and the watch goes on
PASS_ERRORS: tuple[type[Exception], ...] = (VooduError, *ENGINE_ERRORS)

#: an applied cluster as the watcher sees it: its spec, its recorded body, its network
Watched = tuple[PostgresSpec, Any, str]


def _nothing(_value: Any) -> None:
    return None


def utc_stamp() -> str:
    """The watcher's line prefix: UTC to the millisecond (``2026-12-01T23:59:01.123Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def probe_period(spec: PostgresSpec, interval: float) -> float:
    """A cluster with auto_failover is probed often enough for its failover_timeout to mean
    something; the others keep the operator's interval."""
    if not spec.auto_failover:
        return float(interval)
    return float(min(interval, PROBE_INTERVAL, spec.failover_timeout / 4))  # the spec keeps it ≥ 1 s


@dataclass(frozen=True)
class WatchHooks:
    """What the watcher needs from the layers above it (the reconciler cannot import them).

    ``clusters`` is called at the start of every pass; ``say`` writes a line of the text output
    (a no-op for other outputs), ``warn`` a line of stderr; ``on_pass`` gets each pass's reports
    (the JSON output)."""

    clusters: Callable[[], Sequence[Watched]]
    context: Callable[[str], Context]
    lease: Callable[[str, str], AbstractContextManager[object]]
    refresh_consumers: Callable[[PostgresSpec, str], list[str]]
    run_due: Callable[[Ref], str | None]
    say: Callable[[str], None] = _nothing
    warn: Callable[[str], None] = _nothing
    on_pass: Callable[[list[Report]], None] = _nothing


class Watcher:
    """One watcher process's passes: call :meth:`run` (or :meth:`run_pass` for a single pass)."""

    def __init__(
        self,
        hooks: WatchHooks,
        *,
        interval: float,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        stamp: Callable[[], str] = utc_stamp,
        stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.hooks = hooks
        self.interval = interval
        # looked up at call time, not bound here: tests replace ``time.sleep`` on the module
        self._clock = clock or (lambda: time.monotonic())
        self._sleep = sleep or (lambda seconds: time.sleep(seconds))
        self._stamp = stamp
        self._stop = stop
        # the watcher's memory of each primary across passes: how long it has been failing
        self.tracker = HealthTracker()
        self._said: dict[str, str] = {}  # the last message said per cluster
        self._skipped: dict[str, str] = {}  # why each cluster was last skipped
        self._due: dict[str, float] = {}  # when each cluster's next pass is (monotonic)
        self._bookkeeping: dict[str, float] = {}  # when its chores are next run (the operator's interval)

    def run(self) -> None:
        """Pass, sleep until the next cluster is due, pass again — until ``stop`` says so."""
        while not self._stop():
            watched = self.run_pass()
            self._sleep(self._pause(watched))

    def run_pass(self) -> list[Watched]:
        """One pass over the clusters that are due; the clusters it looked at."""
        # re-read every pass: an apply or delete since the last pass must win, not be undone
        watched = list(self.hooks.clusters())
        reports = []
        for spec, _body, network in watched:
            report = self._visit(spec, network)
            if report is not None:
                reports.append(report)
        self.hooks.on_pass(reports)
        return watched

    def _pause(self, watched: Sequence[Watched]) -> float:
        """Until the next cluster is due (at least a little, so a busy loop cannot spin)."""
        wake = min([self._due.get(str(spec.ref), 0.0) for spec, _b, _n in watched]
                   or [self._clock() + self.interval])
        return max(0.05, wake - self._clock())

    def _visit(self, spec: PostgresSpec, network: str) -> Report | None:
        """A pass of one cluster when it is due; its report, or None (not due, skipped, failed)."""
        key = str(spec.ref)
        if self._clock() < self._due.get(key, 0.0):
            return None
        self._due[key] = self._clock() + probe_period(spec, self.interval)
        ctx = self.hooks.context(network)
        # the slower chores (backup schedules, consumers' URLs when nothing changed) run at the
        # operator's interval, not on every failover probe
        chores = self._clock() >= self._bookkeeping.get(key, 0.0)
        try:
            report, refreshed = self._reconcile(spec, ctx, network, chores=chores)
        except (LeaseBusy, PhysicalError) as exc:
            self._skip(spec, exc)
            return None
        except ENGINE_ERRORS as exc:
            # a watch loop outlives a Docker hiccup: say so and try again next pass
            self.hooks.warn(f"{self._stamp()} ⚠ {spec.ref}: pass failed: {exc}")
            return None
        self._skipped.pop(key, None)
        self._tell(spec, report, refreshed)
        if chores:
            self._bookkeeping[key] = self._clock() + self.interval
            self._run_scheduled_backups(spec)
        return report

    def _reconcile(self, spec: PostgresSpec, ctx: Context, network: str, *,
                   chores: bool) -> tuple[Report, list[str]]:
        """One reconcile pass under the cluster's lease; its report and the consumers refreshed."""
        stamp, say = self._stamp, self.hooks.say

        def progress(line: str, ref: Ref = spec.ref) -> None:
            say(f"{stamp()} {ref}: {line}")  # watching: one timestamped line per action

        with self.hooks.lease(str(spec.ref), "reconcile"):
            # a physical restore that did not finish: nothing may start pods on its volumes
            refuse_while_restoring(ctx.store.resolve(spec.scope, spec.name), spec.ref, "reconcile")
            report = reconcile(spec, ctx, dry_run=False, wait=False, progress=progress, health=self.tracker)
            # after any step (a failover moves the primary) at once; otherwise with the chores
            refreshed = self.hooks.refresh_consumers(spec, network) if report.outcomes or chores else []
        return report, refreshed

    def _skip(self, spec: PostgresSpec, exc: Exception) -> None:
        """The cluster is busy (another operation holds its lease) or mid-restore: not this pass."""
        key = str(spec.ref)
        self.tracker.forget(key)  # no probe this pass: a count of failures would span the gap
        if self._skipped.get(key) != str(exc):  # once per holder, not every half second
            self.hooks.warn(f"{self._stamp()} ⚠ {spec.ref}: skipped: {exc}")
            self._skipped[key] = str(exc)

    def _tell(self, spec: PostgresSpec, report: Report, refreshed: list[str]) -> None:
        # a watcher passes every second or so: say what changed, not the same state again
        if self._said.get(report.ref) != report.message:
            self.hooks.say(f"{self._stamp()} {report.message}")
            self._said[report.ref] = report.message
        for line in refreshed:
            self.hooks.say(f"{self._stamp()} {spec.ref}: {line}")

    def _run_scheduled_backups(self, spec: PostgresSpec) -> None:
        """Scheduled backups are started by the watcher (backups:schedule); a failure is reported
        and the watch goes on."""
        try:
            started = self.hooks.run_due(spec.ref)
        except PASS_ERRORS as exc:
            self.hooks.warn(f"⚠ {spec.ref}: scheduled backup: {exc}")
            started = None
        if started:
            self.hooks.say(f"{self._stamp()} {spec.ref}: {started}")
