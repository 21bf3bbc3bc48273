"""``backup`` and ``restore``: the physical pair (``pg_basebackup`` tar files), as opposed to the
``backups:*`` suite's ``pg_dump`` archives.

* ``backup REF --destination PATH [--from-replica N] [--force]`` writes one tar (``base.tar`` +
  ``pg_wal.tar`` [+ ``backup_manifest``]) at PATH, from the primary or a running standby. It
  works standalone and under Voodu (the plugin runs on the host: PATH is a path on that host).
* ``restore REF --from PATH --yes`` replaces the whole cluster's data with the tar's, holding the
  cluster lease, with its intent recorded in the bucket so an interruption is finished by running
  it again. Standalone only: under Voodu the controller owns the pods' lifecycle (the CLI refuses
  it there in one line).

This module checks the arguments and the files, takes the lease and reports; the decisions are
in :mod:`voodu_postgres.domain.physical`, the effects in
:mod:`voodu_postgres.reconciler.physical`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO, cast

from voodu_postgres.commands.base import ExitStatus, Result
from voodu_postgres.commands.local import LocalMode, parse_cli_ref
from voodu_postgres.commands.mode import Mode
from voodu_postgres.domain import physical as pm
from voodu_postgres.domain.backups import format_size
from voodu_postgres.domain.errors import CommandError, UsageError, VooduError
from voodu_postgres.domain.keys import REPLICATION_PASSWORD_KEY
from voodu_postgres.domain.naming import Ref
from voodu_postgres.domain.spec import PostgresSpec
from voodu_postgres.reconciler import physical as fx
from voodu_postgres.reconciler.backups import BackupRuntime, backup_labels
from voodu_postgres.reconciler.plan import roles_of


def _labels(mode: Mode, ref: Ref, role: str) -> dict[str, str]:
    return {**backup_labels(ref, role), **mode.env.extra_labels()}


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{int(value) // 60}m{int(value) % 60:02d}s"


class _Meter:
    """Bytes written and time elapsed on one terminal line, redrawn in place (only on a terminal)."""

    def __init__(self, stream: TextIO, label: str, *, enabled: bool) -> None:
        self.stream, self.label, self.enabled, self.drawn = stream, label, enabled, False

    def __call__(self, size: int, elapsed: float) -> None:
        if self.enabled:
            self.stream.write(f"\r{self.label}: {format_size(size)} written, {_seconds(elapsed)}\x1b[K")
            self.stream.flush()
            self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- backup -------------------------------------------------------------------------------------


def cmd_backup(args: Any, mode: Mode) -> int:
    ref = parse_cli_ref(args.ref)
    dest = Path(args.destination).expanduser()
    pm.check_destination(args.destination, exists=dest.exists() or dest.is_symlink(), is_dir=dest.is_dir(),
                         parent_is_dir=dest.absolute().parent.is_dir(), force=args.force,
                         absolute_required=mode.plugin)
    dest = dest.absolute()
    facts = mode.load(str(ref), observe=True)
    spec = facts.spec
    pm.refuse_while_restoring(facts.bucket, ref, "a backup")
    assert facts.desired is not None and facts.observed is not None
    every = roles_of(facts.desired, facts.observed)  # classified once, not once per pod
    roles = {o: every[o] for o in range(spec.replicas)}
    source = pm.choose_source(replicas=spec.replicas, primary=facts.primary, from_replica=args.from_replica,
                              roles=roles, ref=ref)
    state_dir = mode.state_dir(spec)
    if state_dir is None:
        raise CommandError("no plugin_dir in the dispatch context: nowhere to keep the backup's pgpass file")
    password = facts.bucket.get(REPLICATION_PASSWORD_KEY, "")
    if not password:
        raise CommandError(f"postgres {ref} has no {REPLICATION_PASSWORD_KEY} in its bucket; has it been applied?")
    label = pm.source_label(source, facts.primary)
    pod = ref.container(source)
    meter = _Meter(mode.env.stderr, f"pg_basebackup from {pod}",
                   enabled=not mode.plugin and args.output == "text" and _is_tty(mode.env.stderr))
    try:
        result = fx.take_backup(cast(BackupRuntime, mode.runtime), image=spec.image, network=facts.desired.network,
                                host=ref.pod_host(source), port=spec.port, user=spec.replication_user,
                                password=password, state_dir=state_dir, dest=dest, force=args.force,
                                name=f"{ref.app_id}.basebackup.{os.getpid()}",
                                labels=_labels(mode, ref, fx.BACKUP_ROLE), progress=meter)
    finally:
        meter.close()
    text = (f"postgres {ref}: physical backup of {pod} ({label}) → {dest}: {format_size(result.size)}, "
            f"PostgreSQL {result.major}, {', '.join(result.members)}, elapsed {_seconds(result.elapsed_s)}")
    data = {"ref": str(ref), "path": str(dest), "size_bytes": result.size, "source": label, "source_pod": pod,
            "pg_major": result.major, "members": list(result.members), "elapsed_s": round(result.elapsed_s, 3)}
    return mode.finish(Result(text, data), output=args.output)


# -- restore ------------------------------------------------------------------------------------


def _check_file(spec: PostgresSpec, mode: LocalMode, typed: str, labels: dict[str, str]) -> tuple[Path, int, bool]:
    """Everything checked before anything changes: the file is a readable backup tar whose major is
    the image's. (absolute path, major, has a manifest)."""
    path = Path(typed).expanduser().absolute()
    if not path.is_file():
        raise pm.PhysicalError(f"{typed}: no such file")
    listing = fx.inspect_tar(path)
    major = pm.check_listing(listing, path=str(path))
    image = fx.image_major(cast(BackupRuntime, mode.runtime), spec.image, name=f"{spec.ref.app_id}.restore.version",
                           labels=labels)
    pm.check_major(major, image, path=str(path), image=spec.image)
    return path, major, pm.MANIFEST in {m.removeprefix("./") for m in listing.members}


def cmd_restore(args: Any, mode: LocalMode) -> int:
    env = mode.env
    if not args.yes:
        ref = parse_cli_ref(args.ref)
        raise UsageError(f"refusing to restore without --yes: it stops every pod of {ref} and replaces all its data "
                         f"with the backup's (run `{pm.restore_command(ref, args.source)}`)")
    if args.timeout <= 0:
        raise UsageError("restore: --timeout must be > 0")
    spec, _body, network = mode.recorded([args.ref])[0]
    ref = spec.ref
    labels = _labels(mode, ref, fx.RESTORE_ROLE)
    tar, major, manifest = _check_file(spec, mode, args.source, labels)

    text = args.output == "text"
    began = time.monotonic()
    lines: list[str] = []

    def progress(line: str) -> None:
        stamped = f"[{time.monotonic() - began:6.1f}s] {line}"
        lines.append(stamped)
        if text:
            env.say(f"  {stamped}")

    with mode.lease(str(ref), "restore"):
        facts = mode.facts(spec, network, observe=True)
        assert facts.desired is not None and facts.observed is not None
        previous = pm.interrupted_restore(facts.bucket)
        if previous is not None:
            progress(f"an earlier restore (from {previous}) did not finish: starting over from the top")
        runtime = cast(BackupRuntime, mode.runtime)
        volumes = runtime.list_volumes({"voodu.scope": ref.scope, "voodu.name": ref.name, "voodu.claim": "data"})
        steps = pm.restore_steps(replicas=spec.replicas, primary=facts.primary,
                                 containers=[p.ordinal for p in facts.observed.pods if p.exists],
                                 volumes=[o for v in volumes if (o := pm.data_volume_ordinal(v, ref)) is not None])
        workdir = Path(tempfile.mkdtemp(dir=mode.home, prefix=".restore-"))

        def converge() -> str:
            from voodu_postgres.reconciler.loop import reconcile

            try:
                report = reconcile(spec, mode.context(network), wait=True, timeout=args.timeout,
                                   progress=lambda line: progress(f"  {line}"))
            except VooduError as exc:
                first = str(exc).splitlines()[0]
                raise CommandError(f"postgres {ref}: the primary serves the restored data, but the standbys did not "
                                   f"converge: {first} (run `voodu-postgres reconcile {ref}`)") from exc
            if not report.converged:
                raise CommandError(f"postgres {ref}: the primary serves the restored data, but the cluster did not "
                                   f"converge: {report.message} (run `voodu-postgres reconcile {ref}`)")
            return report.message

        ctx = fx.RestoreContext(runtime=runtime, desired=facts.desired, bucket=facts.bucket,
                                replication_user=spec.replication_user, tar=tar, manifest=manifest, labels=labels,
                                workdir=workdir, state_dir=mode.state_dir(spec),
                                record=lambda kv: mode.record(ref, kv), converge=converge)
        try:
            fx.run_restore(steps, ctx, progress)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    took = time.monotonic() - began
    message = (f"postgres {ref}: restored from {tar} (PostgreSQL {major}) in {_seconds(took)}: "
               f"{ref.name}-{facts.primary} is the primary"
               + (", every standby re-cloned from it and streaming" if spec.replicas > 1 else ""))
    if text:
        env.say(message)
    else:
        env.say(json.dumps({"ref": str(ref), "from": str(tar), "pg_major": major, "message": message,
                            "steps": lines, "elapsed_s": round(took, 3)}, indent=2))
    return ExitStatus.OK
