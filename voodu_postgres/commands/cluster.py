"""The commands that act on real clusters in standalone mode: ``apply``, ``reconcile``, ``info``,
``delete``, ``promote`` and ``rejoin``.

Each resolves its resources through :class:`LocalMode`, delegates the work to the reconciler,
and formats. Whenever the cluster's shape may have moved — a promote moves the writer, a scale
changes the reader set — linked consumers' URLs are refreshed afterwards (only those that
differ), so apps follow the cluster without a separate command.

``reconcile --watch`` only wires its daemon (:mod:`voodu_postgres.reconciler.watch`) to this host:
the applied clusters, the leases, the consumer refresh, the backup schedules and the output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

from voodu_postgres.commands.base import Env, ExitStatus
from voodu_postgres.commands.files import read_files
from voodu_postgres.commands.local import LocalMode, Recorded
from voodu_postgres.commands.mode import refreshed_consumers
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.physical import refuse_while_restoring
from voodu_postgres.domain.podspec import CONTROLLER_ONLY_KEYS
from voodu_postgres.domain.spec import PostgresSpec, SpecError, load_spec
from voodu_postgres.reconciler.desired import assets_dir_for, state_dir_for
from voodu_postgres.reconciler.loop import DEFAULT_TIMEOUT, Context, Report, reconcile
from voodu_postgres.reconciler.observe import resource_labels
from voodu_postgres.reconciler.watch import Watcher, WatchHooks


def _say(env: Env, line: str) -> None:
    env.say(line)


def refresh_consumers(mode: LocalMode, spec: PostgresSpec, network: str) -> list[str]:
    """Rewrite linked consumers' URLs that no longer match the cluster; what was refreshed."""
    try:
        facts = mode.facts(spec, network, observe=False)
    except CommandError:
        return []  # not seeded yet: nothing can be linked
    actions = refreshed_consumers(mode, facts)
    mode.apply_actions(actions, progress=lambda _line: None)
    return [a.describe() for a in actions]


def _print_report(env: Env, report: Report, *, dry_run: bool) -> None:
    if dry_run:
        _say(env, f"plan for {report.ref} (dry run — nothing changed):")
        for seed in report.seeded:
            _say(env, f"  bucket   {seed}")
        for step in report.plan.steps:
            _say(env, f"  step     {step}")
        for wait in report.plan.waiting:
            _say(env, f"  then     wait for {wait}")
        for block in report.plan.blocked:
            _say(env, f"  blocked  {block}")
        if not (report.seeded or report.plan.steps or report.plan.waiting or report.plan.blocked):
            _say(env, "  nothing to do")
        return
    _say(env, report.message)


def _write_json(env: Env, reports: list[Report]) -> None:
    env.stdout.write(json.dumps([_report_json(r) for r in reports], indent=2) + "\n")


def _report_json(report: Report) -> dict[str, Any]:
    return {
        "ref": report.ref,
        "converged": report.converged,
        "message": report.message,
        "seeded": report.seeded,
        "steps": [str(s) for s in report.plan.steps],
        "waiting": [str(w) for w in report.plan.waiting],
        "blocked": list(report.plan.blocked),
        "outcomes": [{"step": str(o.step), "ok": o.ok, "detail": o.detail} for o in report.outcomes],
    }


# ------------------------------------------------------------------------------------------
# apply / reconcile


def cmd_apply(args: argparse.Namespace, mode: LocalMode) -> int:
    if args.timeout <= 0:
        raise UsageError("apply: --timeout must be > 0")
    specs = _specs_in_files(args.files, mode)
    network = mode.network(args.network)
    for spec, _body in specs:
        _check_apply(mode, spec, network, warn=args.output == "text")
    ctx = mode.context(network)
    if not args.dry_run:
        ctx.runtime.ensure_network(network, labels=ctx.extra_labels)
    text = args.output == "text"
    reports = []
    for spec, body in specs:
        report, refreshed = _converge(mode, spec, ctx, "apply", dry_run=args.dry_run, text=text, body=body,
                                      wait=not args.no_wait, timeout=args.timeout)
        reports.append(report)
        if text:
            _print_report(mode.env, report, dry_run=args.dry_run)
            for line in refreshed:
                _say(mode.env, f"  {line}")
    if args.output == "json":
        _write_json(mode.env, reports)
    failed = [r for r in reports if r.plan.blocked or any(not o.ok for o in r.outcomes)]
    if failed and not args.dry_run:
        raise CommandError("; ".join(r.message for r in failed))
    return ExitStatus.OK


def _specs_in_files(files: list[str], mode: LocalMode) -> list[tuple[PostgresSpec, dict[str, Any]]]:
    """Every postgres block of the files, with the body it was read from."""
    contents = read_files(files, cache_dir=mode.home / "cache")
    specs = [(s, b) for c in contents for s, b in zip(c.specs, c.bodies, strict=True)]
    if not specs:
        raise CommandError(f"no postgres blocks in {', '.join(files)}")
    return specs


def _check_apply(mode: LocalMode, spec: PostgresSpec, network: str, *, warn: bool) -> None:
    """What an apply refuses (or warns about) before anything is touched."""
    ignored = [k for k in CONTROLLER_ONLY_KEYS if k in spec.passthrough]
    if ignored and warn:
        _say(mode.env, f"⚠ postgres {spec.ref}: {', '.join(ignored)} only work under Voodu's controller; "
                       "standalone apply ignores them")
    _refuse_identity_change(mode.store, spec)
    recorded = mode.store.resource(spec.scope, spec.name)
    if recorded is not None and recorded.network != network:
        raise CommandError(f"postgres {spec.ref} runs on network {recorded.network}; apply with "
                           f"--network {recorded.network} (moving a cluster between networks is not supported)")


def _converge(mode: LocalMode, spec: PostgresSpec, ctx: Context, command: str, *, dry_run: bool, text: bool,
              body: Mapping[str, Any] | None = None, wait: bool = False,
              timeout: float = DEFAULT_TIMEOUT) -> tuple[Report, list[str]]:
    """One cluster reconciled by ``apply`` or a one-shot ``reconcile``, under its lease; the
    report and the linked consumers whose URLs were refreshed."""
    env = mode.env

    def progress(line: str) -> None:
        if text:
            _say(env, f"  {line}")

    # a dry run reads only: it takes no lease
    with nullcontext() if dry_run else mode.lease(str(spec.ref), command):
        _refuse_while_restoring(mode, spec, command)
        report = reconcile(spec, ctx, body=body, dry_run=dry_run, wait=wait, timeout=timeout, progress=progress)
        refreshed = [] if dry_run else refresh_consumers(mode, spec, ctx.network)
    return report, refreshed


def _refuse_while_restoring(mode: LocalMode, spec: PostgresSpec, command: str) -> None:
    """A physical restore that did not finish leaves its intent in the bucket: until it is run
    again, nothing may start pods on the half-restored volumes (checked under the lease, so a
    restore that is still running is waited for, not refused)."""
    refuse_while_restoring(mode.store.resolve(spec.scope, spec.name), spec.ref, command)


def _refuse_identity_change(store: Any, spec: PostgresSpec) -> None:
    """``user``, ``database`` and ``replication_user`` are created once, at initdb: changing them
    in the file afterwards would make the pods connect as roles that do not exist."""
    recorded = store.resource(spec.scope, spec.name)
    if recorded is None:
        return
    try:
        before = load_spec(spec.scope, spec.name, recorded.body)
    except SpecError:
        return
    for field in ("user", "database", "replication_user"):
        old, new = getattr(before, field), getattr(spec, field)
        if old != new:
            raise CommandError(
                f"postgres {spec.ref}: {field} cannot change from {old!r} to {new!r} once the cluster exists "
                f"(it is created at initdb); create it with SQL instead, or delete --prune and re-apply")


def cmd_reconcile(args: argparse.Namespace, mode: LocalMode) -> int:
    if args.watch and args.dry_run:
        raise UsageError("reconcile: --watch and --dry-run don't combine")
    if args.interval <= 0:
        raise UsageError("reconcile: --interval must be > 0")
    resources = mode.recorded(args.refs)
    if not resources:
        _say(mode.env, "no applied clusters on this host")
        return ExitStatus.OK
    if args.watch:
        _watch(args, mode)
        return ExitStatus.OK
    return _reconcile_once(args, mode, resources)


def _reconcile_once(args: argparse.Namespace, mode: LocalMode, resources: list[Recorded]) -> int:
    """``reconcile`` without ``--watch``: one pass over each cluster; any error ends it."""
    text = args.output == "text"
    reports = []
    for spec, _body, network in resources:
        report, refreshed = _converge(mode, spec, mode.context(network), "reconcile", dry_run=args.dry_run,
                                      text=text)
        reports.append(report)
        if text:
            _print_report(mode.env, report, dry_run=args.dry_run)
            for line in refreshed:
                _say(mode.env, f"  {line}")
    if args.output == "json":
        _write_json(mode.env, reports)
    failed = [r for r in reports if any(not o.ok for o in r.outcomes)]
    if failed:
        raise CommandError("; ".join(r.message for r in failed))
    return ExitStatus.OK


def _watch(args: argparse.Namespace, mode: LocalMode) -> None:
    """``reconcile --watch``: the daemon lives in the reconciler; this wires it to the host's
    clusters, leases, consumers, backup schedules and output. Returns only by an exception
    (SIGTERM unwinds it as ``KeyboardInterrupt``)."""
    # imported here, as before the daemon moved: only a watcher runs scheduled backups
    from voodu_postgres.commands.backups import run_due

    env = mode.env
    # a watcher never queues behind another operation: one busy cluster must not delay the
    # probes (and failovers) of the others; it skips that cluster this pass instead
    mode.lock_wait = False

    def warn(line: str) -> None:
        env.stderr.write(line + "\n")

    hooks = WatchHooks(
        clusters=lambda: [r for r in mode.recorded([]) if not args.refs or str(r[0].ref) in args.refs],
        context=mode.context,
        lease=mode.lease,
        refresh_consumers=lambda spec, network: refresh_consumers(mode, spec, network),
        run_due=lambda ref: run_due(mode, ref),
        say=env.say if args.output == "text" else (lambda _line: None),
        warn=warn,
        on_pass=(lambda reports: _write_json(env, reports)) if args.output == "json" else (lambda _reports: None),
    )
    Watcher(hooks, interval=args.interval).run()


def cmd_info(args: argparse.Namespace, mode: LocalMode) -> int:
    # imported here: the info renderer (rich tables, cron, backup listing) costs a no-op apply ~45 ms
    from voodu_postgres.commands.info import format_info, info_snapshot

    snap = info_snapshot(mode.load(args.ref, observe=True))
    if args.output == "json":
        mode.env.say(json.dumps(snap, indent=2))
    else:
        mode.env.stdout.write(format_info(snap))
    return ExitStatus.OK


# ------------------------------------------------------------------------------------------
# delete


def cmd_delete(args: argparse.Namespace, mode: LocalMode) -> int:
    env, store, home = mode.env, mode.store, mode.home
    spec, _body, _network = mode.recorded([args.ref])[0]
    ref = spec.ref
    if not args.yes:
        what = "containers, data volumes, config bucket and assets" if args.prune else "containers"
        raise CommandError(f"refusing to delete postgres {ref} without --yes (removes its {what})")
    runtime = mode.runtime
    with mode.lease(str(ref), "delete"):
        containers = sorted(runtime.list_containers(resource_labels(ref)),
                            key=lambda c: -int(c.labels.get("voodu.replica_ordinal", 0)))
        for info in containers:  # top-down, the primary (usually pod 0) last
            runtime.remove_container(info.name)
        removed_volumes: list[str] = []
        if args.prune:
            for volume in runtime.list_volumes({"voodu.scope": ref.scope, "voodu.name": ref.name}):
                runtime.remove_volume(volume)
                removed_volumes.append(volume)
            shutil.rmtree(assets_dir_for(home, spec), ignore_errors=True)
            shutil.rmtree(state_dir_for(home, spec), ignore_errors=True)
        store.forget(ref.scope, ref.name, bucket=args.prune)
    result = {"ref": str(ref), "containers": [c.name for c in containers], "volumes": removed_volumes,
              "pruned": args.prune}
    if args.output == "json":
        env.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        kept = "" if args.prune else " (data volumes and config bucket kept; re-apply to bring it back)"
        _say(env, f"deleted postgres {ref}: removed {len(containers)} container(s)"
                  + (f" and {len(removed_volumes)} volume(s)" if args.prune else "") + kept)
    return ExitStatus.OK


# ------------------------------------------------------------------------------------------
# promote / rejoin


FailoverAction = Callable[[PostgresSpec, Context, Callable[[str], None]], str]


def _failover_run(args: argparse.Namespace, mode: LocalMode, action: FailoverAction) -> int:
    env = mode.env
    spec, _body, network = mode.recorded([args.ref])[0]
    ctx = mode.context(network)
    lines: list[str] = []
    started = time.monotonic()

    def progress(line: str) -> None:
        stamped = f"[{time.monotonic() - started:5.2f}s] {line}"
        lines.append(stamped)
        if args.output == "text":
            _say(env, f"  {stamped}")

    with mode.lease(str(spec.ref), args.command):
        _refuse_while_restoring(mode, spec, args.command)
        message = action(spec, ctx, progress)
        # the writer may have moved: linked apps follow it
        for line in refresh_consumers(mode, spec, network):
            progress(line)
    if args.output == "json":
        env.stdout.write(json.dumps({"ref": str(spec.ref), "message": message, "steps": lines}, indent=2) + "\n")
    else:
        _say(env, message)
    return ExitStatus.OK


def cmd_promote(args: argparse.Namespace, mode: LocalMode) -> int:
    from voodu_postgres.reconciler.switchover import promote

    return _failover_run(args, mode, lambda spec, ctx, progress: promote(
        spec, ctx, target=args.replica, force=args.force, no_restart=args.no_restart, yes=args.yes,
        max_lag=args.max_lag, progress=progress))


def cmd_rejoin(args: argparse.Namespace, mode: LocalMode) -> int:
    from voodu_postgres.reconciler.switchover import rejoin

    return _failover_run(args, mode, lambda spec, ctx, progress: rejoin(
        spec, ctx, ordinal=args.replica, progress=progress))
