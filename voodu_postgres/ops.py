"""The commands that act on real clusters: ``apply``, ``reconcile``, ``info``, ``delete``.

Kept apart from ``cli.py`` so that parsing, ``validate`` and ``config`` never import the Docker
SDK. Every command here resolves its resources, builds one :class:`Context` (runtime + store +
home + network) and delegates the decisions to the reconciler; this module only formats.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from requests import RequestException
from rich import box
from rich.console import Console
from rich.table import Table

from voodu_postgres.cli import NETWORK_ENV, CommandError, Env, ExitStatus, UsageError, read_files
from voodu_postgres.reconciler.desired import assets_dir_for, derive, state_dir_for
from voodu_postgres.reconciler.expand import (
    EXPOSE_KEY,
    LINKED_CONSUMERS_KEY,
    PASSWORD_KEY,
    REPLICATION_PASSWORD_KEY,
)
from voodu_postgres.reconciler.loop import Context, Report, reconcile
from voodu_postgres.reconciler.model import Desired, Observed
from voodu_postgres.reconciler.naming import DEFAULT_NETWORK, Ref, RefError, parse_ref
from voodu_postgres.reconciler.observe import resource_labels, snapshot
from voodu_postgres.reconciler.plan import streams_from_primary
from voodu_postgres.reconciler.podspec import CONTROLLER_ONLY_KEYS
from voodu_postgres.reconciler.runtime import DockerRuntime, RuntimeFailure
from voodu_postgres.reconciler.spec import PostgresSpec, SpecError, load_spec
from voodu_postgres.reconciler.store import SqliteStore
from voodu_postgres.states.pod import classify


def run(args: argparse.Namespace, env: Env, store: SqliteStore, home: Path) -> int:
    handlers = {"apply": cmd_apply, "reconcile": cmd_reconcile, "info": cmd_info, "delete": cmd_delete,
                "promote": cmd_promote, "failover": cmd_promote, "rejoin": cmd_rejoin}
    return handlers[args.command](args, env, store, home)


def _network(args: argparse.Namespace, env: Env) -> str:
    return getattr(args, "network", None) or env.environ.get(NETWORK_ENV) or DEFAULT_NETWORK


LABELS_ENV = "VOODU_POSTGRES_LABELS"


def extra_labels(env: Env) -> dict[str, str]:
    """``$VOODU_POSTGRES_LABELS`` (``k=v,k2=v2``): extra labels on everything created (tests use it
    to find and remove their objects)."""
    out = {}
    for pair in env.environ.get(LABELS_ENV, "").split(","):
        key, sep, value = pair.strip().partition("=")
        if key and sep:
            out[key] = value
    return out


def _context(store: SqliteStore, home: Path, network: str, env: Env, runtime: DockerRuntime | None = None) -> Context:
    return Context(runtime=runtime or DockerRuntime(), store=store, home=home, network=network,
                   extra_labels=extra_labels(env))


def _say(env: Env, line: str) -> None:
    env.stdout.write(line + "\n")
    env.stdout.flush()


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


def cmd_apply(args: argparse.Namespace, env: Env, store: SqliteStore, home: Path) -> int:
    if args.timeout <= 0:
        raise UsageError("apply: --timeout must be > 0")
    contents = read_files(args.files, cache_dir=home / "cache")
    specs = [(s, b) for c in contents for s, b in zip(c.specs, c.bodies, strict=True)]
    if not specs:
        raise CommandError(f"no postgres blocks in {', '.join(args.files)}")
    network = _network(args, env)
    for spec, _body in specs:
        ignored = [k for k in CONTROLLER_ONLY_KEYS if k in spec.passthrough]
        if ignored and args.output == "text":
            _say(env, f"⚠ postgres {spec.ref}: {', '.join(ignored)} only work under Voodu's controller; "
                      "standalone apply ignores them")
        _refuse_identity_change(store, spec)
        recorded = store.resource(spec.scope, spec.name)
        if recorded is not None and recorded.network != network:
            raise CommandError(f"postgres {spec.ref} runs on network {recorded.network}; apply with "
                               f"--network {recorded.network} (moving a cluster between networks is not supported)")
    ctx = _context(store, home, network, env)
    if not args.dry_run:
        ctx.runtime.ensure_network(network, labels=ctx.extra_labels)
    reports = []
    failed = False
    for spec, body in specs:
        text = args.output == "text"
        report = reconcile(spec, ctx, body=body, dry_run=args.dry_run, wait=not args.no_wait,
                           timeout=args.timeout, progress=(lambda line: _say(env, f"  {line}")) if text else
                           (lambda _line: None))
        reports.append(report)
        if text:
            _print_report(env, report, dry_run=args.dry_run)
        if report.plan.blocked or any(not o.ok for o in report.outcomes):
            failed = True
    if args.output == "json":
        env.stdout.write(json.dumps([_report_json(r) for r in reports], indent=2) + "\n")
    if failed and not args.dry_run:
        raise CommandError("; ".join(r.message for r in reports if r.plan.blocked or
                                     any(not o.ok for o in r.outcomes)))
    return ExitStatus.OK


def _refuse_identity_change(store: SqliteStore, spec: PostgresSpec) -> None:
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


def _recorded_specs(store: SqliteStore, refs: list[str]) -> list[tuple[PostgresSpec, dict[str, Any], str]]:
    recorded = {Ref(r.scope, r.name): r for r in store.resources()}
    wanted: list[Ref] = []
    for text in refs:
        try:
            wanted.append(parse_ref(text))
        except RefError as exc:
            raise UsageError(str(exc)) from None
    out = []
    for ref in wanted or sorted(recorded):
        if ref not in recorded:
            raise CommandError(f"postgres {ref} has not been applied on this host (voodu-postgres apply -f …)")
        rec = recorded[ref]
        try:
            spec = load_spec(rec.scope, rec.name, rec.body)
        except SpecError as exc:
            raise CommandError(f"recorded spec of {ref} no longer validates: {exc}") from None
        out.append((spec, rec.body, rec.network))
    return out


def cmd_reconcile(args: argparse.Namespace, env: Env, store: SqliteStore, home: Path) -> int:
    if args.watch and args.dry_run:
        raise UsageError("reconcile: --watch and --dry-run don't combine")
    if args.interval <= 0:
        raise UsageError("reconcile: --interval must be > 0")
    resources = _recorded_specs(store, args.refs)
    if not resources:
        _say(env, "no applied clusters on this host")
        return ExitStatus.OK
    runtime = DockerRuntime()
    while True:
        reports = []
        if args.watch:
            # re-read every pass: an apply or delete since the last pass must win, not be undone
            recorded = {Ref(r.scope, r.name) for r in store.resources()}
            resources = [r for r in _recorded_specs(store, [str(x) for x in recorded])
                         if not args.refs or str(r[0].ref) in args.refs]
        for spec, _body, network in resources:
            ctx = _context(store, home, network, env, runtime)
            try:
                report = reconcile(spec, ctx, dry_run=args.dry_run, wait=False,
                                   progress=(lambda line: _say(env, f"  {line}")) if args.output == "text"
                                   else (lambda _line: None))
            except (RuntimeFailure, DockerException, RequestException) as exc:
                if not args.watch:
                    raise
                # a watch loop outlives a Docker hiccup: say so and try again next pass
                env.stderr.write(f"⚠ {spec.ref}: pass failed: {exc}\n")
                continue
            reports.append(report)
            if args.output == "text":
                _print_report(env, report, dry_run=args.dry_run)
        if args.output == "json":
            env.stdout.write(json.dumps([_report_json(r) for r in reports], indent=2) + "\n")
        if not args.watch:
            failed = [r for r in reports if any(not o.ok for o in r.outcomes)]
            if failed:
                raise CommandError("; ".join(r.message for r in failed))
            return ExitStatus.OK
        time.sleep(args.interval)


# ------------------------------------------------------------------------------------------
# info


def redact(secret: str | None) -> str:
    """Never shows any part of a secret: only whether it is set and how long it is."""
    return f"<set, {len(secret)} chars>" if secret else "<unset>"


def info_snapshot(desired: Desired, observed: Observed, spec: PostgresSpec, bucket: dict[str, str],
                  image: str) -> dict[str, Any]:
    P = desired.target_primary
    ref = desired.ref
    consumers = [c.strip() for c in bucket.get(LINKED_CONSUMERS_KEY, "").split(",") if c.strip()]
    exposed = bucket.get(EXPOSE_KEY) == "true"
    primary_pod = observed.pod(P)
    lags = {r.application_name: r.lag_bytes for r in (primary_pod.pg.replicas if primary_pod and primary_pod.pg
                                                       else ())}
    writable = len(observed.writable)
    pods = []
    for ordinal in sorted(set(range(desired.replicas)) | {p.ordinal for p in observed.pods}):
        pod = observed.pod(ordinal)
        name = desired.app_name(ordinal)
        entry: dict[str, Any] = {"ordinal": ordinal, "container": ref.container(ordinal), "host": ref.pod_host(ordinal)}
        if pod is None or not pod.exists:
            entry.update(role="down", state="absent", desired=ordinal < desired.replicas)
        else:
            role = classify(pod, target_primary=P, writable_count=writable)
            entry.update(role=role.value, state=pod.state, health=pod.health,
                         desired=ordinal < desired.replicas,
                         up_to_date=pod.spec_hash == desired.pod(ordinal).spec_hash
                         if ordinal < desired.replicas else False)
            if pod.pg is not None:
                entry.update(timeline=pod.pg.timeline, lsn=pod.pg.lsn, pending_restart=pod.pg.pending_restart)
                if pod.pg.in_recovery:
                    entry.update(streaming_from_primary=streams_from_primary(desired, pod),
                                 replay_lag_bytes=lags.get(name))
            elif pod.error:
                entry["error"] = pod.error
        pods.append(entry)
    out: dict[str, Any] = {
        "ref": str(ref),
        "image": image,
        "replicas": desired.replicas,
        "primary_ordinal": P,
        "primary_fqdn": ref.pod_host(P),
    }
    standbys = [ref.pod_host(o) for o in range(desired.replicas) if o != P]
    if standbys:
        out["standby_fqdns"] = standbys
    out.update({
        "super_user": spec.user,
        "database": spec.database,
        "port": spec.port,
        "replication_user": spec.replication_user,
        "password_redacted": redact(bucket.get(PASSWORD_KEY)),
        "replication_password_redacted": redact(bucket.get(REPLICATION_PASSWORD_KEY)),
        "exposed": exposed,
        "bind_address": "0.0.0.0 (internet-facing)" if exposed
        else "127.0.0.1 (loopback only)",
        "synchronous": spec.synchronous,
        "network": desired.network,
    })
    if consumers:
        out["linked_consumers"] = consumers
    out["pods"] = pods
    return out


def format_info(snap: dict[str, Any]) -> str:
    title = f"postgres {snap['ref']}"
    lines = [title, "─" * min(len(title), 80)]

    def row(label: str, value: Any) -> None:
        lines.append(f"  {label:<16}{value}")

    row("image", snap["image"])
    row("replicas", f"{snap['replicas']} (primary=pod-{snap['primary_ordinal']})")
    row("primary", f"{snap['primary_fqdn']}:{snap['port']}")
    if snap.get("standby_fqdns"):
        row("standbys", "")
        lines.extend(f"{'':18}{h}:{snap['port']}" for h in snap["standby_fqdns"])
    lines.append("")
    row("database", snap["database"])
    row("super_user", f"{snap['super_user']} (password {snap['password_redacted']})")
    row("replication", f"{snap['replication_user']} (password {snap['replication_password_redacted']})")
    lines.append("")
    row("bind", snap["bind_address"])
    lines.append("")
    lines.append(_pods_table(snap["pods"]).rstrip("\n"))
    lines.append("")
    consumers = snap.get("linked_consumers") or []
    if consumers:
        lines.append(f"  linked consumers ({len(consumers)})")
        lines.extend(f"{'':18}{c}" for c in consumers)
    else:
        lines.append("  linked consumers (none)")
    return "\n".join(lines) + "\n"


def _pods_table(pods: list[dict[str, Any]]) -> str:
    """One row per pod, rendered by rich as plain text (no colour codes: output may be piped)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 2, 0, 0))
    for header in ("POD", "ROLE", "STATE", "TIMELINE", "LAG", "STREAMING", ""):
        table.add_column(header)
    for pod in pods:
        lag = pod.get("replay_lag_bytes")
        streaming = pod.get("streaming_from_primary")
        notes = [note for flag, note in ((pod.get("desired", True), "surplus"),
                                         (pod.get("up_to_date", True), "outdated spec")) if not flag]
        table.add_row(str(pod["ordinal"]), pod["role"], pod["state"], str(pod.get("timeline") or "—"),
                      "—" if lag is None else f"{lag} B",
                      "—" if streaming is None else ("yes" if streaming else "NO"), ", ".join(notes))
    buffer = io.StringIO()
    Console(file=buffer, width=100, color_system=None, highlight=False).print(table)
    return "\n".join("  " + line.rstrip() for line in buffer.getvalue().splitlines() if line.strip())


def _load_recorded(store: SqliteStore, text: str) -> tuple[PostgresSpec, dict[str, Any], str]:
    try:
        ref = parse_ref(text)
    except RefError as exc:
        raise UsageError(str(exc)) from None
    return _recorded_specs(store, [str(ref)])[0]


def cmd_info(args: argparse.Namespace, env: Env, store: SqliteStore, home: Path) -> int:
    spec, _body, network = _load_recorded(store, args.ref)
    bucket = store.resolve(spec.scope, spec.name)
    ctx = _context(store, home, network, env)
    assets = assets_dir_for(home, spec)
    desired = derive(spec, bucket, assets_dir=assets, network=network, extra_labels=extra_labels(env),
                     state_dir=state_dir_for(home, spec))
    observed = snapshot(ctx.runtime, desired, assets)
    snap = info_snapshot(desired, observed, spec, bucket, spec.image)
    if args.output == "json":
        env.stdout.write(json.dumps(snap, indent=2) + "\n")
    else:
        env.stdout.write(format_info(snap))
    return ExitStatus.OK


# ------------------------------------------------------------------------------------------
# delete


def cmd_delete(args: argparse.Namespace, env: Env, store: SqliteStore, home: Path) -> int:
    spec, _body, network = _load_recorded(store, args.ref)
    ref = spec.ref
    if not args.yes:
        what = "containers, data volumes, config bucket and assets" if args.prune else "containers"
        raise CommandError(f"refusing to delete postgres {ref} without --yes (removes its {what})")
    runtime = DockerRuntime()
    containers = sorted(runtime.list_containers(resource_labels(ref)), key=lambda c: -int(c.labels.get("voodu.replica_ordinal", 0)))
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


def _failover_run(args: argparse.Namespace, env: Env, store: SqliteStore, home: Path,
                  action: FailoverAction) -> int:
    spec, _body, network = _load_recorded(store, args.ref)
    ctx = _context(store, home, network, env)
    lines: list[str] = []
    started = time.monotonic()

    def progress(line: str) -> None:
        stamped = f"[{time.monotonic() - started:5.2f}s] {line}"
        lines.append(stamped)
        if args.output == "text":
            _say(env, f"  {stamped}")

    message = action(spec, ctx, progress)
    if args.output == "json":
        env.stdout.write(json.dumps({"ref": str(spec.ref), "message": message, "steps": lines}, indent=2) + "\n")
    else:
        _say(env, message)
    return ExitStatus.OK


def cmd_promote(args: argparse.Namespace, env: Env, store: SqliteStore, home: Path) -> int:
    from voodu_postgres.reconciler.failover import promote

    return _failover_run(args, env, store, home, lambda spec, ctx, progress: promote(
        spec, ctx, target=args.replica, force=args.force, no_restart=args.no_restart, yes=args.yes,
        max_lag=args.max_lag, progress=progress))


def cmd_rejoin(args: argparse.Namespace, env: Env, store: SqliteStore, home: Path) -> int:
    from voodu_postgres.reconciler.failover import rejoin

    return _failover_run(args, env, store, home, lambda spec, ctx, progress: rejoin(
        spec, ctx, ordinal=args.replica, progress=progress))
