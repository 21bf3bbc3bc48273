"""The ``backups`` commands, standalone: capture, list, logs, cancel, delete, prune, download,
restore and verify — orchestrated here over the pure core (:mod:`.backup_model`, the state machine
in :mod:`voodu_postgres.states.backup`) and the effects in :mod:`voodu_postgres.reconciler.backups`.

Every command first *observes* the cluster's backups: the files in its backups host directory,
its capture containers and the metadata sidecars. A capture container that has exited is
finalised then — its sidecar written from its log (complete, or failed with the reason; a
cancelled one keeps its recorded cancel), a leftover ``.partial`` removed, and, once, the
retention its capture asked for applied — so a detached capture needs nobody watching it, and
``--follow`` only watches.

Under Voodu (``vd pg:backups:…``) the plugin runs on the host, so the files, sidecars and
containers are read and written the same way; what the controller owns goes in the envelope: a
capture is a Voodu job ``<name>.bk.bNNN`` (``apply_manifest`` + ``run_job``), and cancel, delete,
prune — and retention — ``delete_manifest`` that same job name, which stops and removes its run
containers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from voodu_postgres.adapters.docker import ContainerInfo, RuntimeFailure
from voodu_postgres.adapters.files import download
from voodu_postgres.adapters.postgres import Endpoint
from voodu_postgres.commands.base import ExitStatus, Result
from voodu_postgres.commands.facts import Facts
from voodu_postgres.commands.local import LocalMode, parse_cli_ref
from voodu_postgres.commands.mode import Mode
from voodu_postgres.domain import backups as bm
from voodu_postgres.domain.actions import Action
from voodu_postgres.domain.backup_status import PLUGIN_CLI, BackupState
from voodu_postgres.domain.backups import BackupMetadata, BackupRow, RetentionPolicy, Verification
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.keys import SCHEDULE_KEY
from voodu_postgres.domain.naming import DEFAULT_NETWORK, Ref
from voodu_postgres.reconciler import backups as fx
from voodu_postgres.reconciler.observe import container_endpoint
from voodu_postgres.states.backup import BackupMove, BackupView

CLI = "voodu-postgres "
DUMP_FORMAT, DUMP_COMPRESSION = "custom", fx.DUMP_COMPRESSION
L_ID, L_FILE, L_SOURCE = "voodu.backup.id", "voodu.backup.file", "voodu.backup.source"
L_KEEP, L_MAX_AGE = "voodu.backup.keep", "voodu.backup.max_age"
_EXITED = ("exited", "dead")


@dataclass
class Cluster:
    """One cluster, as the backups commands need it (standalone: applied here; under Voodu: as the
    controller describes it, with Docker on this host)."""

    mode: Mode
    facts: Facts
    network: str
    directory: Path
    gone: list[int] = field(default_factory=list)  # ids deleted by this command (their jobs go too)

    @property
    def ref(self) -> Ref:
        return self.facts.ref

    @property
    def runtime(self) -> fx.BackupRuntime:
        return cast(fx.BackupRuntime, self.mode.runtime)

    def path(self, name: str) -> Path:
        return self.directory / name


def backups_dir_of(statefulset: dict[str, Any], ref: Ref) -> Path:
    """The host directory the pods mount at ``/backups`` (an operator volume may move it)."""
    for entry in statefulset.get("volumes") or []:
        parts = str(entry).split(":")
        if len(parts) >= 2 and parts[1] == fx.BACKUPS_MOUNT:
            return Path(parts[0])
    return Path(ref.backups_dir())


def load(mode: Mode, ref_text: str) -> Cluster:
    ref = parse_cli_ref(ref_text)
    if isinstance(mode, LocalMode):
        spec, _body, network = mode.recorded([str(ref)])[0]
        facts = mode.facts(spec, network, observe=False)
    else:
        facts = mode.load(str(ref), observe=False)
        networks = facts.statefulset.get("networks")
        network = str(facts.statefulset.get("network") or (networks[0] if isinstance(networks, list) and networks
                                                           else DEFAULT_NETWORK))
    return Cluster(mode, facts, network, backups_dir_of(facts.statefulset, ref))


# -- observation and finalisation --------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _read_meta(path: Path, warn: Any) -> BackupMetadata | None:
    try:
        return BackupMetadata.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, bm.BackupError) as exc:
        warn(f"warn: {path.name}: {exc}")
        return None


def _metadata(c: Cluster) -> dict[int, BackupMetadata]:
    out = {}
    for name, _size in fx.scan(c.directory):
        found = bm.parse_artifact(name)
        if found is not None and found.kind == "metadata":
            meta = _read_meta(c.path(name), c.mode.env.warn)
            if meta is not None:
                out[found.id] = meta
    return out


def _as_backup_container(c: Cluster, info: ContainerInfo) -> bm.BackupContainer | None:
    status = f"Exited ({info.exit_code})" if info.state in _EXITED else ""
    return bm.backup_container(c.ref, info.name, info.state, status)


def _reason(log: fx.CaptureLog, code: int) -> str:
    for line in reversed(log.text):
        if line.startswith("capture failed:"):
            return line.removeprefix("capture failed:").strip()
    lines = [line for line in log.text if line.strip()]
    return f"exit code {code}" + (f": {lines[-1].strip()}" if lines else "")


def _parse_when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _finalise_one(c: Cluster, info: ContainerInfo, existing: BackupMetadata | None, *,
                  record: bool = True) -> BackupMetadata | None:
    """The record of an exited capture when its sidecar is missing or out of date — written (and
    its ``.partial`` removed) only with ``record``; a listing reads it without writing."""
    filename = info.labels.get(L_FILE, "")
    backup_id = bm.go_atoi(info.labels.get(L_ID, ""))
    if not filename or backup_id is None:
        return None
    dump = c.path(filename)
    partial = c.path(bm.partial_filename(filename))
    landed = dump.exists()
    if _already_recorded(info, existing, landed, partial):
        return None
    try:
        log = fx.parse_capture_log(c.runtime.logs(info.name))
    except RuntimeFailure:
        log = fx.CaptureLog()
    if record:
        fx.remove_files(partial)
    base = _base_record(c, info, backup_id, filename, log, existing)
    # the capture ended: its machine leaves RUNNING by the trigger that says how, and the state
    # the sidecar records is the one the machine reached
    view = BackupView(backup=bm.format_ref(backup_id), ref=str(c.ref), dump_present=landed)
    if landed:
        meta = replace(_complete_record(base, log, dump), status=BackupMove(BackupState.RUNNING, "finish", view).fire())
    elif existing is not None and existing.status == BackupState.CANCELLED:
        meta = replace(base, status=BackupMove(BackupState.RUNNING, "cancel", view).fire(), reason=existing.reason,
                       finished=existing.finished)
    else:
        meta = replace(base, status=BackupMove(BackupState.RUNNING, "fail", view).fire(),
                       reason=_reason(log, info.exit_code), finished=_now())
    if record:
        fx.write_atomic(c.path(bm.metadata_filename(filename)), meta.to_json())
    return meta


def _already_recorded(info: ContainerInfo, existing: BackupMetadata | None, landed: bool, partial: Path) -> bool:
    """True when the sidecar already tells the capture's outcome, so there is nothing to write."""
    if existing is None:
        return False
    if info.exit_code == 0 and not landed and not partial.exists():
        return True  # it completed, and its dump was deleted since: nothing to record (it lists as gone)
    return existing.status != BackupState.RUNNING and \
        (existing.status == BackupState.COMPLETE) == landed and not partial.exists()


def _digits(text: str) -> int | None:
    """``text`` as a number when it is plain ASCII digits (a label or log value), else None."""
    return int(text) if (text.isascii() and text.isdigit()) else None


def _base_record(c: Cluster, info: ContainerInfo, backup_id: int, filename: str, log: fx.CaptureLog,
                 existing: BackupMetadata | None) -> BackupMetadata:
    """What is known of a capture whatever its outcome: where it ran, what it dumped, when it started."""
    started = _parse_when(log.values.get("started")) or (existing.started if existing else None)
    source = _digits(info.labels.get(L_SOURCE, ""))
    return BackupMetadata(
        id=backup_id, file=filename, source_pod=c.ref.container(source) if source is not None else None,
        source_ordinal=source,
        source_role={"t": "standby", "f": "primary"}.get(log.values.get("in_recovery", "")),
        server_version=log.values.get("server_version"), database=c.facts.spec.database, user=c.facts.spec.user,
        started=started, format=DUMP_FORMAT, compression=DUMP_COMPRESSION)


def _complete_record(base: BackupMetadata, log: fx.CaptureLog, dump: Path) -> BackupMetadata:
    """The record of a capture whose dump landed, from its log (the file's size if the log lacks it)."""
    finished = _parse_when(log.values.get("finished"))
    started = base.started
    size = _digits(log.values.get("size", ""))
    toc = bm.parse_toc("\n".join(log.toc))
    return replace(base, finished=finished,
                   server_version=base.server_version or toc.server_version,
                   duration_s=(finished - started).total_seconds() if finished and started else None,
                   size_bytes=size if size is not None else dump.stat().st_size,
                   sha256=log.values.get("sha256"), toc=toc.counts,
                   table_rows=log.rows, table_rows_skipped=_rows_skipped(log))


NO_COUNTS = "no row counts were recorded at capture"


def _rows_skipped(log: fx.CaptureLog) -> str | None:
    """Why a complete capture's sidecar holds no row counts; None when it holds them (or there
    were no tables to count)."""
    if log.rows:
        return None
    table_bytes, budget = (bm.go_atoi(log.values.get(key, "")) for key in ("table_bytes", "row_budget"))
    if table_bytes == 0:
        return None  # no tables: every table, even an empty one, has a count line
    if table_bytes is None:
        return NO_COUNTS  # a log without the size (unreadable, or from before the budget)
    return fx.rows_skipped_reason(table_bytes, budget if budget is not None else fx.ROW_COUNT_BUDGET) or NO_COUNTS


def _policy_of(info: ContainerInfo) -> RetentionPolicy:
    keep = bm.go_atoi(info.labels.get(L_KEEP, "0")) or 0
    try:
        max_age = bm.parse_retention_duration(info.labels.get(L_MAX_AGE, "0") or "0")
    except ValueError:
        max_age = timedelta(0)
    return RetentionPolicy(keep, max_age)


def observe(c: Cluster, *, record: bool = True) -> tuple[list[BackupRow], list[str]]:
    """The cluster's backups now, and what retention pruned.

    With ``record`` (every command that changes backups) exited captures are finalised first —
    their sidecars written, leftovers removed — and a capture's own retention is applied once, when
    it is first seen complete. Without it (the ``backups`` listing) the same rows are computed in
    memory and nothing is written or deleted: looking never changes what is there."""
    containers = fx.list_capture_containers(c.runtime, c.ref)
    metadata = _metadata(c)
    pruned: list[str] = []
    completed: list[ContainerInfo] = []
    for info in containers:
        if info.state not in _EXITED:
            continue
        found = _as_backup_container(c, info)
        meta = _finalise_one(c, info, metadata.get(found.id) if found else None, record=record)
        if meta is not None and found is not None:
            metadata[found.id] = meta
            if meta.status == BackupState.COMPLETE:
                completed.append(info)
    started_ids = {b.id for b in (_as_backup_container(c, i) for i in containers) if b is not None}
    for backup_id, meta in list(metadata.items()):
        if bm.job_never_started(meta, has_container=backup_id in started_ids, now=_now()):
            failed = BackupMove(BackupState.RUNNING, "fail", BackupView(backup=bm.format_ref(backup_id))).fire()
            meta = replace(meta, status=failed, finished=_now(),
                           reason=f"its job never started (dispatched {bm.rfc3339(meta.started)}; see the "
                                  "controller's log)" if meta.started else "its job never started")
            if record:
                fx.write_atomic(c.path(bm.metadata_filename(meta.file)), meta.to_json())
            metadata[backup_id] = meta
    rows = _rows(c, containers, metadata)
    if not record:
        return rows, pruned
    for info in completed:  # a capture's own retention, applied once, when it is first seen complete
        policy, warnings = bm.retention_from_buckets(_policy_of(info), c.facts.bucket)
        for line in warnings:
            c.mode.env.warn(line)
        doomed = bm.apply_retention(rows, policy, _now())
        if doomed:
            _delete(c, doomed, containers)
            pruned += [d.ref for d in doomed]
            rows = _rows(c, fx.list_capture_containers(c.runtime, c.ref), _metadata(c))
    return rows, pruned


def _rows(c: Cluster, containers: Sequence[ContainerInfo], metadata: dict[int, BackupMetadata]) -> list[BackupRow]:
    seen = [b for b in (_as_backup_container(c, i) for i in containers) if b is not None]
    return bm.merge_listing(fx.scan(c.directory), seen, metadata)


def _delete(c: Cluster, rows: Sequence[BackupRow], containers: Sequence[ContainerInfo], *,
            cli: str = CLI) -> None:
    """Remove backups — each only as its machine's ``delete`` allows (a running one must be
    cancelled first): their files first, then their (stopped) capture containers."""
    moves = [BackupMove(row.state, "delete", _view(c, row), cli=cli).ensure() for row in rows]
    for row, move in zip(rows, moves, strict=True):
        _delete_one(c, row, containers)
        move.fire()


def _delete_one(c: Cluster, row: BackupRow, containers: Sequence[ContainerInfo]) -> None:
    c.gone.append(row.id)
    for name, _size in fx.scan(c.directory):
        found = bm.parse_artifact(name)
        if found is not None and found.id == row.id:
            fx.remove_files(c.path(name))
    for info in containers:
        seen = _as_backup_container(c, info)
        if seen is not None and seen.id == row.id and not seen.alive:
            try:
                c.runtime.remove_container(info.name, timeout=1)
            except RuntimeFailure as exc:
                c.mode.env.warn(f"warn: {exc}")


def _job_deletions(c: Cluster, ids: Iterable[int] = ()) -> list[Action]:
    """Under Voodu: ``delete_manifest`` of the capture job ``<name>.bk.bNNN`` of every backup this
    command removed (``ids``, and what it or retention deleted), and of every finished job run whose
    backup is gone (pruned by an earlier command) — deleting a job removes its run containers,
    running or not. Standalone: nothing (the containers are Docker's, handled directly)."""
    if not c.mode.plugin:
        return []
    wanted = [*ids, *c.gone]
    containers = fx.list_capture_containers(c.runtime, c.ref)
    listed = {r.id for r in _rows(c, containers, _metadata(c))}
    for info in containers:
        found = _as_backup_container(c, info)
        if found is not None and fx.is_job_run(info) and not found.alive and found.id not in listed:
            wanted.append(found.id)
    return [Action("delete_manifest", c.ref.scope, job, kind="job")
            for job in dict.fromkeys(bm.job_name(c.ref, i) for i in wanted)]


def _cli(mode: Mode) -> str:
    return PLUGIN_CLI if mode.plugin else CLI


def _view(c: Cluster, row: BackupRow, target_major: int | None = None) -> BackupView:
    meta = row.metadata
    return BackupView(backup=row.ref, ref=str(c.ref), dump_present=row.state is BackupState.COMPLETE,
                      dump_major=meta.server_major if meta else None, target_major=target_major,
                      reason=row.reason)


def _find(c: Cluster, typed: str) -> tuple[BackupRow, list[BackupRow]]:
    rows, _pruned = observe(c)
    return bm.resolve_backup(typed, rows, cli=CLI), rows


# -- output ------------------------------------------------------------------------------------


def _emit(mode: Mode, output: str, text: str, data: dict[str, Any], actions: Sequence[Action] = ()) -> None:
    """Standalone: the text (or the JSON) on stdout. Under Voodu: the one envelope."""
    if mode.plugin:
        mode.finish(Result(text.rstrip("\n"), data, list(actions)), output=output)
        return
    env = mode.env
    if output == "json":
        env.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        env.stdout.write(text if text.endswith("\n") else text + "\n")
    env.stdout.flush()


def _flags(keep: str | None, max_age: str | None) -> RetentionPolicy:
    return RetentionPolicy(bm.keep_flag(keep) if keep is not None else 0,
                           bm.max_age_flag(max_age) if max_age is not None else timedelta(0))


# -- capture -----------------------------------------------------------------------------------


def cmd_capture(args: Any, mode: Mode) -> int:
    env = mode.env
    flags = _flags(args.keep, args.max_age)
    c = load(mode, args.ref)
    if mode.plugin:
        return _capture_job(args, c, flags)
    ref = c.ref
    source = args.from_replica if args.from_replica is not None else c.facts.primary
    backup_id, filename, name, started = start(c, source, flags)
    # earlier captures are finalised (and their retention applied) while this one dumps: the
    # dump's clock starts first; a running capture is never pruned
    _rows, pruned_before = observe(c)
    bid = bm.format_ref(backup_id)
    label = bm.source_label(source, c.facts.primary)
    data: dict[str, Any] = {"ref": str(ref), "id": bid, "file": filename, "container": name, "source": label}
    if not (args.follow or args.verify):
        text = (f"postgres {ref}: capturing backup {bid} in background (source: {label}, container {name})\n\n"
                f"Track:\n  {CLI}backups {ref}\n  {CLI}backups:logs {ref} {bid} --follow")
        _emit(mode, args.output, text, {**data, "status": "running"})
        return ExitStatus.OK
    quiet = args.output == "json"
    estimate = 0 if quiet else _estimate(c, source)  # only the progress bar uses it
    try:
        code = _follow(c, name, filename, started, estimate, quiet=quiet)
    except KeyboardInterrupt:
        env.warn(f"\nstopped following; backup {bid} keeps running in the background "
                 f"(follow again: {CLI}backups:logs {ref} {bid} --follow; cancel: {CLI}backups:cancel {ref} {bid})")
        return ExitStatus.INTERRUPTED
    rows, pruned = observe(c)
    row = next((r for r in rows if r.id == backup_id), None)
    if row is None or row.state is not BackupState.COMPLETE:
        reason = row.reason if row else f"exit code {code}"
        tail = "".join(fx.human_log(c.runtime.logs(name)).splitlines(keepends=True)[-5:]) if row else ""
        raise CommandError(f"backup {bid} failed: {reason}\n{tail.rstrip()}\nfull log: {CLI}backups:logs {ref} {bid}"
                           .replace("\n\n", "\n"))
    meta = row.metadata
    elapsed = bm.go_duration(bm.round_to_second(_now() - started))
    text = f"postgres {ref}: backup {bid} captured ({filename}, {bm.format_size(row.size_bytes)}, source: {label}, " \
           f"elapsed {elapsed})"
    if pruned or pruned_before:
        policy, _w = bm.retention_from_buckets(flags, c.facts.bucket)
        text += f"\nretention: {policy}, pruned {', '.join(pruned_before + pruned)}"
    data.update(status=str(row.state), size_bytes=row.size_bytes, sha256=meta.sha256 if meta else None,
                pruned=pruned_before + pruned)
    if args.verify:
        ok, detail = _verify(c, row)
        text += f"\nverify: {'ok' if ok else 'FAILED'} — {detail}"
        data["verified"] = ok
        _emit(mode, args.output, text, data)
        return ExitStatus.OK if ok else ExitStatus.ERROR
    _emit(mode, args.output, text, data)
    return ExitStatus.OK


def _capture_job(args: Any, c: Cluster, flags: RetentionPolicy) -> int:
    """Under Voodu: the capture as a job ``<name>.bk.bNNN`` in the cluster's scope — registered
    (``apply_manifest``) and started (``run_job``) by the controller once this answer is back."""
    ref, spec = c.ref, c.facts.spec
    if args.follow or args.verify:
        flag = "--verify" if args.verify else "--follow"
        raise UsageError(f"{flag} waits for the dump, which a plugin answer cannot: capture without it, then "
                         f"watch {PLUGIN_CLI}backups {ref} (and {PLUGIN_CLI}backups:verify {ref} ID once complete)")
    source = args.from_replica if args.from_replica is not None else c.facts.primary
    _check_source(c, source)
    observe(c)  # finalise earlier captures (and their retention) before taking the next id
    state_dir = c.mode.state_dir(spec)
    if state_dir is None:
        raise CommandError("no plugin_dir in the dispatch context: nowhere to keep the capture's pgpass file")
    pgpass = fx.write_pgpass(state_dir, spec.user, c.facts.password)
    backup_id, filename, started, labels, script = _prepare(c, source, flags)
    bid, job = bm.format_ref(backup_id), bm.job_name(ref, backup_id)
    # the job lives where the cluster lives: an unscoped cluster's job is unscoped too (scope "",
    # run containers <name>.bk.bNNN.<runid>), and is shown without a leading "/"
    job_ref = str(Ref(ref.scope, job))
    # The job starts asynchronously: a sidecar recording it as running reserves the id meanwhile
    # (it lists once its container exists; a job that never starts leaves only this record).
    c.directory.mkdir(parents=True, exist_ok=True)
    reserved = BackupMetadata(id=backup_id, file=filename, status=BackupState.RUNNING, source_pod=ref.container(source),
                              source_ordinal=source, database=spec.database, user=spec.user, started=started,
                              format=DUMP_FORMAT, compression=DUMP_COMPRESSION)
    fx.write_atomic(c.path(bm.metadata_filename(filename)), reserved.to_json())
    manifest = {"kind": "job", "scope": ref.scope, "name": job,
                "spec": fx.capture_job_spec(image=spec.image, network=c.network, backups_dir=c.directory,
                                            pgpass=pgpass, script=script, labels=labels)}
    actions = [Action("apply_manifest", ref.scope, ref.name, manifest=manifest,
                      summary=f"job manifest applied: {job_ref}"),
               Action("run_job", ref.scope, job, summary=f"backup {bid} dispatched"),
               *_job_deletions(c)]
    label = bm.source_label(source, c.facts.primary)
    text = f"postgres {ref}: capturing backup {bid} in background (source: {label}, job {job_ref})"
    if c.gone:
        text += f"\nretention: pruned {', '.join(bm.format_ref(i) for i in c.gone)}"
    policy, _warnings = bm.retention_from_buckets(flags, c.facts.bucket)
    if not policy.is_zero:
        text += (f"\nretention ({policy}) is applied once the dump has landed, by the next "
                 f"{PLUGIN_CLI}backups command that sees it complete")
    text += (f"\n\nTrack:\n  {PLUGIN_CLI}backups {ref}\n  {PLUGIN_CLI}backups:logs {ref} {bid}"
             f"\n  {PLUGIN_CLI}backups:cancel {ref} {bid}")
    _emit(c.mode, args.output, text, {"ref": str(ref), "id": bid, "file": filename, "job": job_ref,
                                      "source": label, "status": "running",
                                      "pruned": [bm.format_ref(i) for i in c.gone]}, actions)
    return ExitStatus.OK


def _check_source(c: Cluster, source: int) -> None:
    spec, ref = c.facts.spec, c.ref
    if not 0 <= source < spec.replicas:
        raise UsageError(f"--from-replica {source} out of range (valid: 0..{spec.replicas - 1})")
    pod = ref.container(source)
    state = c.runtime.container_state(pod)
    if state is None:
        raise CommandError(f"container {pod} not found on this host (capture must run on the same host as the "
                           "source pod)")
    if state != "running":
        raise CommandError(f"container {pod} is not running (need a live pod to dump from)")


def _prepare(c: Cluster, source: int, flags: RetentionPolicy) -> tuple[int, str, datetime, dict[str, str], str]:
    """The next capture's id, file name, start time, labels and script."""
    spec, ref = c.facts.spec, c.ref
    names = [name for name, _size in fx.scan(c.directory)]
    container_ids = [b.id for b in (_as_backup_container(c, i) for i in fx.list_capture_containers(c.runtime, ref))
                     if b is not None]
    backup_id = bm.next_backup_id(names, container_ids)
    started = _now()
    filename = bm.backup_filename(backup_id, started)
    labels = {**fx.backup_labels(ref), **c.mode.env.extra_labels(), L_ID: str(backup_id), L_FILE: filename,
              L_SOURCE: str(source), L_KEEP: str(flags.keep), L_MAX_AGE: bm.format_duration_short(flags.max_age)}
    script = fx.capture_script(host=ref.pod_host(source), port=spec.port, user=spec.user, database=spec.database,
                               filename=filename)
    return backup_id, filename, started, labels, script


def start(c: Cluster, source: int, flags: RetentionPolicy) -> tuple[int, str, str, datetime]:
    """Start a detached capture from pod ``source``: (id, file name, container, start time)."""
    spec, ref = c.facts.spec, c.ref
    _check_source(c, source)
    state_dir = c.mode.state_dir(spec)
    assert state_dir is not None
    pgpass = fx.write_pgpass(state_dir, spec.user, c.facts.password)
    backup_id, filename, started, labels, script = _prepare(c, source, flags)
    name = bm.container_name(ref, backup_id)
    fx.start_capture(c.runtime, image=spec.image, name=name, network=c.network, backups_dir=c.directory,
                     pgpass=pgpass, script=script, labels=labels)
    return backup_id, filename, name, started


def _estimate(c: Cluster, source: int) -> int:
    try:
        return c.runtime.postgres().database_size(_endpoint(c, c.ref.container(source))) // 2
    except (RuntimeFailure, ValueError):
        return 0


def _endpoint(c: Cluster, container: str) -> Endpoint:
    spec = c.facts.spec
    return container_endpoint(c.runtime, container, name=container, port=spec.port, user=spec.user,
                              database=spec.database, passwords=(c.facts.password,))


def _follow(c: Cluster, name: str, filename: str, started: datetime, estimate: int, *, quiet: bool) -> int:
    """Watch a capture until its container exits (progress with rich); its exit code."""
    if quiet:  # nothing to draw: one blocking wait at a time, no wake-ups taking CPU from the dump
        while (code := fx.wait_or_gone(c.runtime, name, 30)) is None:
            pass
        return code
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    console = Console(file=c.mode.env.stderr)
    partial, dump = c.path(bm.partial_filename(filename)), c.path(filename)
    columns = (TextColumn(f"{bm.format_ref(int(filename[1:].split('-')[0]))} pg_dump"), BarColumn(),
               DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("dump", total=estimate or None)
        while True:
            code = fx.wait_or_gone(c.runtime, name, 0.5)  # returns the moment the capture exits: no poll interval
            size = 0
            for path in (partial, dump):
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue
            done = code is not None
            progress.update(task, completed=size, total=(size if done and code == 0 else max(estimate, size)) or None)
            if code is not None:
                return code


# -- listing, logs, cancel, delete, prune, download ---------------------------------------------


def cmd_list(args: Any, mode: Mode) -> int:
    target = args.target
    # A bare word is a scope — and, if one exists, the unscoped cluster of that name, whose ref is
    # just its name. Under Voodu it can only be the cluster: the plugin cannot enumerate a scope.
    if target is not None and ("/" in target or not isinstance(mode, LocalMode)):
        c = load(mode, target)
        rows, _pruned = observe(c, record=False)  # a listing changes nothing (no job deletions either)
        _emit(mode, args.output, bm.render_listing(c.ref, rows, cli=CLI), bm.listing_json(c.ref, rows))
        return ExitStatus.OK
    if not isinstance(mode, LocalMode):
        raise UsageError("under Voodu, name the cluster: vd pg:backups <scope>/<name> (or <name>, unscoped)")
    clusters = []
    for rec in sorted(mode.store.resources(), key=lambda r: (r.scope, r.name)):
        if target is not None and rec.scope != target and (rec.scope, rec.name) != ("", target):
            continue
        c = load(mode, str(Ref(rec.scope, rec.name)))
        rows, _pruned = observe(c, record=False)
        clusters.append((c.ref, rows))
    _emit(mode, args.output, bm.render_listing_many(clusters, scope=target, cli=CLI), bm.listing_json_many(clusters))
    return ExitStatus.OK


def cmd_logs(args: Any, mode: Mode) -> int:
    c = load(mode, args.ref)
    wanted = bm.parse_backup_id(args.id, example="b008")
    infos = [(b, i) for i in fx.list_capture_containers(c.runtime, c.ref)
             if (b := _as_backup_container(c, i)) is not None and b.id == wanted]
    if not infos:
        meta = _metadata(c).get(wanted)
        extra = f"; recorded: {meta.status}{f' ({meta.reason})' if meta.reason else ''}" if meta else ""
        raise CommandError(f"backup {args.id} not found (auto-pruned, or capture never started){extra}")
    name = infos[0][1].name
    if mode.plugin:
        if args.follow:
            raise UsageError(f"--follow streams, which a plugin answer cannot: run voodu-postgres backups:logs "
                             f"{c.ref} {args.id} --follow on the host")
        _emit(mode, "text", fx.human_log(c.runtime.logs(name)), {})
        return ExitStatus.OK
    out = mode.env.stdout
    if args.follow:
        pending = ""
        for chunk in c.runtime.follow_logs(name):
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                if not line.startswith(fx.MARK):
                    out.write(line + "\n")
            out.flush()
        if pending and not pending.startswith(fx.MARK):
            out.write(pending + "\n")
        observe(c)
    else:
        out.write(fx.human_log(c.runtime.logs(name)))
    out.flush()
    return ExitStatus.OK


def cmd_cancel(args: Any, mode: Mode) -> int:
    c = load(mode, args.ref)
    rows, _pruned = observe(c)
    if args.id is not None:
        row = bm.resolve_backup(args.id, rows, cli=_cli(mode))
        BackupMove(row.state, "cancel", _view(c, row), cli=_cli(mode)).ensure()
        running = [row]
    else:
        running = [r for r in rows if r.state is BackupState.RUNNING]
        if not running:
            _emit(mode, args.output, f"postgres {c.ref}: no captures in progress",
                  {"ref": str(c.ref), "cancelled": []}, _job_deletions(c))
            return ExitStatus.OK
    for row in running:
        cancelled = BackupMove(row.state, "cancel", _view(c, row), cli=_cli(mode)).fire()
        meta = BackupMetadata(id=row.id, file=_file_of(c, row), status=cancelled,
                              reason=f"cancelled by {_cli(mode)}backups:cancel", finished=_now(),
                              database=c.facts.spec.database, user=c.facts.spec.user)
        fx.write_atomic(c.path(bm.metadata_filename(meta.file)), meta.to_json())  # the intent, before the stop
        if mode.plugin:
            # The controller stops the job (delete_manifest) after this answer; the unlinked
            # .partial can no longer be renamed into place, and its space is freed at the stop.
            fx.remove_files(c.path(bm.partial_filename(meta.file)))
            continue
        if row.container:
            try:
                c.runtime.stop_container(row.container, timeout=0)
            except RuntimeFailure as exc:
                mode.env.warn(f"warn: {exc}")
    count = len(running)
    if mode.plugin:
        ids = [r.ref for r in running]
        text = (f"postgres {c.ref}: cancelling {count} capture{'s' if count != 1 else ''} ({', '.join(ids)}): "
                f"recorded as cancelled, nothing partial left; deleting {'their jobs' if count != 1 else 'its job'} "
                "stops and removes the capture container")
        _emit(mode, args.output, text, {"ref": str(c.ref), "cancelled": ids, "states": dict.fromkeys(ids, "cancelled")},
              _job_deletions(c, [r.id for r in running]))
        return ExitStatus.OK
    rows, _pruned = observe(c)
    states = {r.ref: str(r.state) for r in rows if r.id in {x.id for x in running}}
    text = f"postgres {c.ref}: stopped {count} capture{'s' if count != 1 else ''}" + "".join(
        f"\n  {b}: {s}" for b, s in states.items())
    _emit(mode, args.output, text, {"ref": str(c.ref), "cancelled": list(states), "states": states})
    return ExitStatus.OK


def _file_of(c: Cluster, row: BackupRow) -> str:
    if row.filename:
        return row.filename.removesuffix(bm.PARTIAL_EXT)
    if row.metadata is not None and row.metadata.file:  # a queued Voodu job: only its record exists
        return row.metadata.file
    for info in fx.list_capture_containers(c.runtime, c.ref):
        found = _as_backup_container(c, info)
        if found is not None and found.id == row.id and info.labels.get(L_FILE):
            return info.labels[L_FILE]
    return bm.backup_filename(row.id, row.created_at or _now())


def cmd_delete(args: Any, mode: Mode) -> int:
    if not args.yes:
        raise UsageError("refusing to delete without --yes (destructive)")
    c = load(mode, args.ref)
    rows, _pruned = observe(c)
    row = bm.resolve_backup(args.id, rows, cli=_cli(mode))
    _delete(c, [row], fx.list_capture_containers(c.runtime, c.ref), cli=_cli(mode))
    _emit(mode, args.output, f"postgres {c.ref}: backup {row.ref} ({row.filename or 'no file'}) deleted",
          {"ref": str(c.ref), "id": row.ref, "deleted": True}, _job_deletions(c, [row.id]))
    return ExitStatus.OK


def cmd_prune(args: Any, mode: Mode) -> int:
    c = load(mode, args.ref)
    policy, warnings = bm.retention_from_buckets(_flags(args.keep, args.max_age), c.facts.bucket)
    for line in warnings:
        mode.env.warn(line)
    if policy.is_zero:
        raise UsageError("--keep or --max-age required, or set BACKUP_KEEP / BACKUP_MAX_AGE in the config bucket "
                         "(nothing to prune by)")
    rows, _pruned = observe(c)
    doomed = bm.apply_retention(rows, policy, _now())
    ids = [d.ref for d in doomed]
    data = {"ref": str(c.ref), "policy": str(policy), "pruned": ids, "dry_run": bool(args.dry_run)}
    if not doomed:
        _emit(mode, args.output, f"postgres {c.ref}: nothing to prune ({len(rows)} backups, policy: {policy})",
              data, _job_deletions(c))
        return ExitStatus.OK
    if args.dry_run:
        _emit(mode, args.output, f"postgres {c.ref}: dry-run — would prune {len(ids)} backup(s) under policy "
                                     f"{policy}: {', '.join(ids)}", data, _job_deletions(c))
        return ExitStatus.OK
    if not args.yes:
        raise UsageError(f"refusing to prune {len(ids)} backup(s) ({', '.join(ids)}) without --yes")
    _delete(c, doomed, fx.list_capture_containers(c.runtime, c.ref))
    _emit(mode, args.output, f"postgres {c.ref}: pruned {len(ids)} backup(s) under policy {policy}: "
                                 f"{', '.join(ids)}", data, _job_deletions(c))
    return ExitStatus.OK


def cmd_download(args: Any, mode: Mode) -> int:
    c = load(mode, args.ref)
    row, _rows = _find(c, args.id)
    download = BackupMove(row.state, "download", _view(c, row), cli=CLI).ensure()
    if mode.plugin:  # the operator's vd CLI does the transfer
        dest_text = args.to or row.filename
        fetch = Action("fetch_file", c.ref.scope, c.ref.name, remote_path=str(c.path(row.filename)),
                       dest_path=dest_text, size_bytes=row.size_bytes, summary=f"fetch_file {row.ref} → {dest_text}")
        _emit(mode, args.output, f"postgres {c.ref}: backup {row.ref} located ({bm.format_size(row.size_bytes)})",
              {"ref": str(c.ref), "id": row.ref, "path": dest_text, "size_bytes": row.size_bytes}, [fetch])
        download.fire()
        return ExitStatus.OK
    dest = Path(args.to) if args.to else Path(row.filename)
    if dest.is_dir():
        dest = dest / row.filename
    if dest.exists():
        raise CommandError(f"{dest} already exists; not overwriting it (remove it, or pick another --to)")
    tmp = dest.with_name(f".{dest.name}.download")
    shutil.copyfile(c.path(row.filename), tmp)
    os.replace(tmp, dest)
    download.fire()
    _emit(mode, args.output, f"postgres {c.ref}: backup {row.ref} → {dest} ({bm.format_size(row.size_bytes)})",
          {"ref": str(c.ref), "id": row.ref, "path": str(dest), "size_bytes": row.size_bytes})
    return ExitStatus.OK


# -- restore and verify -------------------------------------------------------------------------


def cmd_restore(args: Any, mode: Mode) -> int:
    env = mode.env
    if not args.yes:
        env.warn("⚠  RESTORE IS DESTRUCTIVE: the database's objects are dropped and replaced by the backup's.")
        raise UsageError("refusing to restore without --yes (destructive)")
    c = load(mode, args.ref)
    ref = c.ref
    primary = ref.container(c.facts.primary)
    url = args.id if bm.is_http_url(args.id) else None
    downloaded: Path | None = None
    with mode.lease(str(ref), "backups:restore"):
        if url is not None:
            downloaded = _download(c, url)
            row = BackupRow(0, BackupState.COMPLETE, downloaded.name, None, downloaded.stat().st_size)
        else:
            row, _rows = _find(c, args.id)
        try:
            toc, listing, took = _restore(c, row, primary, quiet=args.output != "text")
        finally:
            if downloaded is not None:
                fx.remove_files(downloaded)
    source = url if url is not None else f"{row.ref} ({row.filename})"
    text = (f"postgres {ref}: restored from {source} in {took:.1f}s\n{toc}\n"
            "Cluster stayed up; standbys replicate restored state via streaming WAL.")
    _emit(mode, args.output, text, {"ref": str(ref), "id": row.ref if url is None else None, "url": url,
                                   "file": row.filename if url is None else None, "duration_s": round(took, 3),
                                   "toc": bm.parse_toc(listing).counts})
    return ExitStatus.OK


def _download(c: Cluster, url: str) -> Path:
    """Fetch an http(s) dump into the backups directory under a hidden temporary name (pods see it
    at /backups): pg_restore needs a file, not a pipe."""
    c.mode.env.warn(f"restore: downloading {url}")
    return download(url, c.directory)


def _restore(c: Cluster, row: BackupRow, primary: str, *, quiet: bool) -> tuple[str, str, float]:
    """pg_restore ``row``'s file into the primary in one transaction: (TOC sentence, listing, seconds)."""
    spec = c.facts.spec
    if c.runtime.container_state(primary) != "running":
        raise CommandError(f"container {primary} is not running (need a live primary to restore into)")
    try:
        target = c.runtime.postgres().server_version_num(_endpoint(c, primary)) // 10000
    except (RuntimeFailure, ValueError) as exc:
        raise CommandError(f"cannot read the server version of {primary}: {exc}") from exc
    view = _view(c, row, target)
    restore = BackupMove(row.state, "restore", view, cli=CLI).ensure()  # complete, and not from a newer major
    path = f"{fx.BACKUPS_MOUNT}/{row.filename}"
    listing = fx.toc_in(c.runtime, primary, path)
    if listing.exit_code != 0:
        raise CommandError(f"pg_restore --list cannot read {row.filename}: "
                           f"{(listing.output.strip().splitlines() or ['?'])[-1]}")
    parsed = bm.parse_toc(listing.output)
    if row.metadata is None and parsed.server_version:  # no sidecar (a downloaded dump): its TOC header says
        restore = BackupMove(row.state, "restore", replace(view, dump_major=bm.server_major(parsed.server_version)),
                             cli=CLI).ensure()
    toc = parsed.sentence()
    if not quiet:
        c.mode.env.warn(f"restore: pg_restore in {primary} ← {path} (db={spec.database}, user={spec.user}, "
                        f"{bm.format_size(row.size_bytes)})\n{toc}")
    started = time.monotonic()
    result = fx.restore_into(c.runtime, primary, port=spec.port, user=spec.user, database=spec.database, path=path)
    if result.exit_code != 0:
        raise CommandError(f"pg_restore failed (nothing changed: one transaction): "
                           f"{(result.output.strip().splitlines() or ['?'])[-1]}")
    restore.fire()
    return toc, listing.output, time.monotonic() - started


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(c: Cluster, row: BackupRow) -> tuple[bool, str]:
    """Checksum, then a restore into a throw-away server and the per-table row counts; recorded in
    the metadata. (ok, detail)."""
    meta = row.metadata or BackupMetadata(id=row.id, file=row.filename)
    begun, when = time.monotonic(), _now()
    problems: list[str] = []
    if meta.sha256 and _sha256(c.path(row.filename)) != meta.sha256:
        problems.append("sha256 differs from the one recorded at capture (the file changed or is corrupt)")
    else:
        labels = {**fx.backup_labels(c.ref, "backup-verify"), **c.mode.env.extra_labels()}
        code, log = fx.run_verify(c.runtime, image=c.facts.spec.image, name=f"{c.ref.app_id}.bk.verify.{row.ref}",
                                  backups_dir=c.directory, filename=row.filename, labels=labels)
        parsed = fx.parse_capture_log(log)
        if code != 0:
            last = [line for line in parsed.text if line.strip()]
            problems.append(f"restore failed (exit {code}){': ' + last[-1].strip() if last else ''}")
        else:
            problems += bm.row_count_mismatches(meta.table_rows, parsed.rows)
    took = round(time.monotonic() - begun, 3)
    ok = not problems
    if not ok:
        detail = "; ".join(problems)
    elif meta.table_rows_skipped or (not meta.table_rows and parsed.rows):
        detail = (f"restored into a throw-away server; {len(parsed.rows)} table(s); row counts not compared "
                  f"({meta.table_rows_skipped or NO_COUNTS})")
    else:
        detail = f"restored into a throw-away server; {len(meta.table_rows)} table(s), row counts match"
    record = replace(meta, verification=Verification(at=when, duration_s=took, ok=ok, detail=detail))
    fx.write_atomic(c.path(bm.metadata_filename(row.filename)), record.to_json())
    return ok, detail


def cmd_verify(args: Any, mode: Mode) -> int:
    c = load(mode, args.ref)
    row, _rows = _find(c, args.id)
    verify = BackupMove(row.state, "verify", _view(c, row), cli=CLI).ensure()
    ok, detail = _verify(c, row)
    if ok:
        verify.fire()
    _emit(mode, args.output, f"postgres {c.ref}: backup {row.ref} verify {'ok' if ok else 'FAILED'}: {detail}",
          {"ref": str(c.ref), "id": row.ref, "ok": ok, "detail": detail})
    return ExitStatus.OK if ok else ExitStatus.ERROR


# -- schedules ---------------------------------------------------------------------------------


def cmd_schedule(args: Any, mode: Mode) -> int:
    from voodu_postgres.domain import schedule as sch

    if mode.plugin:
        return _schedule_hcl(args, mode)
    assert isinstance(mode, LocalMode)
    c = load(mode, args.ref)
    ref = c.ref
    if args.remove:
        had = sch.schedule_from_bucket(c.facts.bucket) is not None
        mode.record(ref, {SCHEDULE_KEY: ""})
        _emit(mode, args.output, f"postgres {ref}: backup schedule {'removed' if had else 'was not set'}",
              {"ref": str(ref), "schedule": None, "changed": had})
        return ExitStatus.OK
    if args.from_replica is not None and not 0 <= args.from_replica < c.facts.spec.replicas:
        raise UsageError(f"--from-replica {args.from_replica} out of range (valid: 0..{c.facts.spec.replicas - 1})")
    flags = _flags(args.keep, args.max_age)
    cron = sch.validate_cron(args.at if args.at is not None else sch.DEFAULT_CRON)
    now = _now()
    record = sch.BackupSchedule(cron, args.from_replica, flags.keep, flags.max_age, since=now)
    mode.record(ref, {SCHEDULE_KEY: record.to_json()})
    upcoming = bm.rfc3339(sch.next_fire(cron, now))
    text = (f"postgres {ref}: backups scheduled at {cron!r} (UTC; next {upcoming}): "
            f"{sch.capture_command(ref, record, cli=CLI)}\n"
            f"Captures start from `{CLI}reconcile --watch` — keep it running (see the README's systemd unit).")
    _emit(mode, args.output, text, {"ref": str(ref), "schedule": record.to_dict(), "next": upcoming})
    return ExitStatus.OK


def _schedule_hcl(args: Any, mode: Mode) -> int:
    """Under Voodu a schedule is a ``cronjob`` block (declarative): print it, change nothing."""
    from voodu_postgres.domain import schedule as sch

    ref = parse_cli_ref(args.ref)
    if args.remove:
        _emit(mode, args.output, f"postgres {ref}: under Voodu the schedule is the cronjob "
                                 f"{bm.go_quote(sch.cronjob_name(ref))} in your voodu.hcl: delete that block, then run "
                                 "`vd apply --prune`", {"ref": str(ref), "cronjob": sch.cronjob_name(ref)})
        return ExitStatus.OK
    if args.from_replica is not None and args.from_replica < 0:
        raise UsageError(f"--from-replica {args.from_replica} out of range (must be >= 0)")
    flags = _flags(args.keep, args.max_age)
    cron = sch.validate_cron(args.at if args.at is not None else sch.DEFAULT_CRON)
    record = sch.BackupSchedule(cron, args.from_replica, flags.keep, flags.max_age)
    hcl = sch.cronjob_hcl(ref, record)
    data = {"ref": str(ref), "schedule": record.to_dict(), "cronjob": sch.cronjob_name(ref), "hcl": hcl}
    _emit(mode, args.output, hcl, data)
    return ExitStatus.OK


def run_due(mode: LocalMode, ref: Ref, now: datetime | None = None) -> str | None:
    """Start the cluster's scheduled capture when one is due (called by ``reconcile --watch`` each
    pass; also finalises exited captures, applying their retention); a line saying what it did."""
    from voodu_postgres.domain import schedule as sch

    c = load(mode, str(ref))
    record = sch.schedule_from_bucket(c.facts.bucket)
    rows, pruned = observe(c)
    note = f"backups: retention pruned {', '.join(pruned)}" if pruned else None
    if record is None:
        return note
    if any(r.state is BackupState.RUNNING for r in rows):
        return note
    starts = [r.metadata.started for r in rows if r.metadata and r.metadata.started]
    starts += [r.created_at for r in rows if r.created_at]
    if record.since is not None:  # a new schedule waits for its first slot, older backups or not
        starts.append(record.since)
    last = max(starts) if starts else None
    slot = sch.due_slot(record.cron, last, now or _now(), since=record.since)
    if slot is None:
        return note
    source = record.from_replica if record.from_replica is not None else c.facts.primary
    backup_id, _file, _name, _started = start(c, source, record.policy)
    return f"backups: scheduled capture {bm.format_ref(backup_id)} started (slot {bm.rfc3339(slot)})"
