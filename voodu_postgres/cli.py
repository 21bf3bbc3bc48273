"""Command line: argument parsing and the single error → exit-code funnel.

Two modes share these commands:

* **standalone** (default): human text on stdout (``-o json`` for machines), one-line errors on
  stderr, state in the embedded SQLite store under ``--home`` / ``$VOODU_POSTGRES_HOME``.
* **Voodu plugin** (``$VOODU_PLUGIN_DIR`` is set, as it is for every controller-spawned exec):
  ``expand`` and the dispatch commands answer with exactly one JSON envelope on stdout
  (``{"status":"ok","data":…}`` / ``{"status":"error","error":…}``, exit 1). Errors go to stdout
  because that is where the controller looks first (voodu-platform.md §1.4).

The command names are the plugin's: ``voodu-postgres link …`` here is ``vd pg:link …`` under
Voodu, and ``plugin.yml`` declares exactly :data:`COMMANDS`. Only this module turns exceptions
into exit codes; ``--traceback`` re-raises for debugging.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from voodu_postgres import __version__
from voodu_postgres.commands.base import NETWORK_ENV, Env, ExitStatus, envelope_error
from voodu_postgres.domain.errors import CommandError, UsageError, VooduError
from voodu_postgres.domain.naming import DEFAULT_NETWORK

if TYPE_CHECKING:
    from voodu_postgres.commands.mode import Mode

#: every command, as plugin.yml must declare it (aliases included)
COMMANDS = ("expand", "validate", "render", "config", "apply", "reconcile", "info", "delete", "promote",
            "failover", "rejoin", "link", "unlink", "new-password", "expose", "unexpose", "psql", "defaults",
            "help", *("backups", "backups:capture", "backups:logs", "backups:cancel", "backups:delete",
                      "backups:prune", "backups:download", "backups:restore", "backups:verify",
                      "backups:schedule"), "backup", "restore")
_PLUGIN_BACKUPS = ("backups", "backups:capture", "backups:logs", "backups:cancel", "backups:delete", "backups:prune",
                   "backups:download", "backups:restore", "backups:verify", "backups:schedule")
#: commands that answer under Voodu; the rest manage standalone state and refuse there
PLUGIN_COMMANDS = frozenset({"expand", "help", "defaults", "info", "link", "unlink", "new-password", "expose",
                             "unexpose", "psql", "backup", *_PLUGIN_BACKUPS})
#: what to use instead, under Voodu, of each standalone-only command
_UNDER_VOODU = {"apply": "vd apply -f voodu.hcl", "reconcile": "Voodu's controller reconciles by itself",
                "delete": "vd delete <scope>/<name>", "config": "vd config <scope>/<name> …",
                "validate": "vd diff -f voodu.hcl", "render": "vd diff -f voodu.hcl",
                "promote": "voodu-postgres promote on the host (standalone)",
                "failover": "voodu-postgres promote on the host (standalone)",
                "rejoin": "voodu-postgres rejoin on the host (standalone)",
                "restore": ("vd pg:backups:restore (a physical restore replaces every pod's data, and the controller "
                            "owns the pods: it is standalone-only)")}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting (so errors stay one line)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _lock_flags(p: argparse.ArgumentParser, *, no_wait_help: str | None = None) -> None:
    """Flags of every command that holds the cluster's lease (one mutating operation at a time)."""
    p.add_argument("--lock-timeout", type=float, default=300.0, metavar="S",
                   help="how long to wait for another operation on the cluster to finish (default 300)")
    p.add_argument("--no-wait", action="store_true",
                   help=no_wait_help or "fail at once, naming it, if another operation holds the cluster")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="voodu-postgres",
        description="Declarative PostgreSQL clusters on Docker: one primary, N streaming standbys.",
        epilog="Run `voodu-postgres <command> --help` for a command's flags.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--home", help="state directory (default $VOODU_POSTGRES_HOME or ~/.voodu-postgres)")
    parser.add_argument("--traceback", action="store_true", help="re-raise errors (debugging)")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)

    p = sub.add_parser("validate", help="check postgres blocks in HCL files; report every problem")
    p.add_argument("-f", "--file", dest="files", action="append", required=True, metavar="FILE")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser(
        "render",
        help="show what expand produces for each block (secrets redacted; nothing is written)",
    )
    p.add_argument("-f", "--file", dest="files", action="append", required=True, metavar="FILE")
    p.add_argument("--ref", help="only this block (scope/name)")
    p.add_argument("--out", metavar="DIR", help="also write the asset files into DIR/<scope>/<name>/")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("expand", help="Voodu plugin protocol: expand request on stdin → envelope on stdout")

    p = sub.add_parser(
        "config",
        help="read and write config buckets (standalone stand-in for `vd config`)",
        description=(
            "REF is scope/name for a resource bucket, scope for a scope-level bucket shared by every "
            "resource of that scope, or /name for an unscoped resource. Reads of a resource bucket "
            "include scope-level values (the resource's own win). Secret values are shown only when "
            "asked for by key. An empty value unsets; VALUE '-' reads the value from stdin."
        ),
    )
    csub = p.add_subparsers(dest="action", metavar="<get|set|unset>", parser_class=_Parser, required=True)
    c = csub.add_parser("get", help="show keys (all, or the named ones)")
    c.add_argument("ref")
    c.add_argument("keys", nargs="*", metavar="KEY")
    c.add_argument("-o", "--output", choices=["text", "json"], default="text")
    c = csub.add_parser("set", help="set KEY=VALUE pairs")
    c.add_argument("ref")
    c.add_argument("pairs", nargs="+", metavar="KEY=VALUE")
    c.add_argument("-o", "--output", choices=["text", "json"], default="text")
    c = csub.add_parser("unset", help="remove keys")
    c.add_argument("ref")
    c.add_argument("keys", nargs="+", metavar="KEY")
    c.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("apply", help="create or converge the clusters in HCL files and wait until ready")
    p.add_argument("-f", "--file", dest="files", action="append", required=True, metavar="FILE")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to wait (default 300)")
    _lock_flags(p, no_wait_help="never block: start the work without waiting for readiness, and fail at once if "
                                "another operation holds the cluster")
    p.add_argument("--network", help=f"Docker network (default ${NETWORK_ENV} or {DEFAULT_NETWORK})")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("reconcile", help="one pass (or a loop) over applied clusters: repair drift")
    p.add_argument("refs", nargs="*", metavar="REF", help="scope/name (default: every applied cluster)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--watch", action="store_true", help="keep reconciling")
    p.add_argument("--interval", type=float, default=10.0, metavar="S", help="seconds between passes with --watch")
    _lock_flags(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("info", help="cluster topology: the spec, the bucket, and every pod as observed now")
    p.add_argument("ref", metavar="REF")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("delete", help="remove a cluster's containers (--prune: also its data and state)")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--prune", action="store_true", help="also remove data volumes, the config bucket, assets")
    p.add_argument("-y", "--yes", action="store_true", help="confirm (required: this stops the database)")
    _lock_flags(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    for name, aliases in (("promote", ["failover"]),):
        p = sub.add_parser(
            name, aliases=aliases,
            help="make a standby the primary (planned switchover, or failover with --force)",
            description=(
                "Planned switchover (the primary is healthy): fence the primary with a clean shutdown, "
                "wait until the target has every committed write, promote it, re-point the other "
                "standbys, and rejoin the old primary as a standby. No acknowledged write is lost. "
                "Failover (--force, primary down): promote the target and report how far it had got."
            ),
        )
        p.add_argument("ref", metavar="REF")
        p.add_argument("-r", "--replica", type=int, required=True, metavar="N", help="ordinal to promote")
        p.add_argument("--force", action="store_true",
                       help="skip the lag check; required when the primary is down (failover)")
        p.add_argument("--no-restart", action="store_true",
                       help="leave the old primary stopped instead of rejoining it")
        p.add_argument("-y", "--yes", action="store_true",
                       help="failover: accept promoting a standby that received less WAL than another")
        p.add_argument("--max-lag", type=int, default=16 * 1024 * 1024, metavar="BYTES",
                       help="largest replay lag a planned switchover accepts (default 16 MiB)")
        _lock_flags(p)
        p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("rejoin", help="re-attach a pod as a standby of the current primary (pg_rewind, "
                                      "or a fresh clone when rewind is impossible)")
    p.add_argument("ref", metavar="REF")
    p.add_argument("-r", "--replica", type=int, required=True, metavar="N", help="ordinal to rejoin")
    _lock_flags(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("link", help="wire an app to the cluster: DATABASE_URL (and DATABASE_READ_URL) in its bucket",
                       description=(
                           "Writes DATABASE_URL (the current primary) into CONSUMER's config bucket, and with --reads "
                           "DATABASE_READ_URL (every standby; the primary when replicas = 1). The consumer is "
                           "remembered in POSTGRES_LINKED_CONSUMERS, and its URLs follow the cluster: after promote, "
                           "scaling and new-password they are rewritten."))
    p.add_argument("ref", metavar="PROVIDER", help="the postgres cluster, scope/name")
    p.add_argument("consumer", metavar="CONSUMER", help="the app's bucket, scope/name")
    p.add_argument("--reads", action="store_true", help="also set DATABASE_READ_URL")
    p.add_argument("--load-balance", action="store_true",
                   help="add load_balance_hosts=random to the read URL (needs libpq 16 or newer in the app)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("unlink", help="remove DATABASE_URL / DATABASE_READ_URL from an app and forget it")
    p.add_argument("ref", metavar="PROVIDER")
    p.add_argument("consumer", metavar="CONSUMER")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("new-password", help="rotate the superuser password on the live cluster (zero downtime)",
                       description=(
                           "Generates a new password, sets it on the role (as a SCRAM verifier: the password never "
                           "reaches Postgres), stores it in the bucket and rewrites linked apps' URLs. Open sessions "
                           "keep working; no pod restarts. An interrupted rotation is finished by running it again."))
    p.add_argument("ref", metavar="REF")
    p.add_argument("--replication", action="store_true",
                   help="rotate the replication role instead (standbys reconnect by reload)")
    p.add_argument("--no-restart", action="store_true",
                   help="don't restart linked apps for their new URLs (under Voodu; you restart them)")
    _lock_flags(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    for name, text in (("expose", "publish the cluster on every interface (0.0.0.0)"),
                       ("unexpose", "publish the cluster on loopback (127.0.0.1) only")):
        p = sub.add_parser(name, help=text)
        p.add_argument("ref", metavar="REF")
        _lock_flags(p)
        p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("psql", help="psql in the primary (or pod N) as the superuser, no password needed",
                       description="Arguments after -- go to psql unchanged. Exit code is psql's.")
    p.add_argument("ref", metavar="REF")
    p.add_argument("-r", "--replica", type=int, metavar="N", help="pod ordinal (default: the primary)")
    p.add_argument("-c", "--command", dest="sql", metavar="SQL", help="run one command and exit")

    _backup_parsers(sub)
    _physical_parsers(sub)

    p = sub.add_parser("defaults", help="print the default postgres block")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    sub.add_parser("help", help="plugin overview")
    return parser


def _retention_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--keep", metavar="N", help=f"{what}: keep the N newest complete backups (over BACKUP_KEEP)")
    p.add_argument("--max-age", "--retention", dest="max_age", metavar="D",
                   help=f"{what}: drop backups older than D (7d, 2w, 168h; over BACKUP_MAX_AGE)")


def _backup_parsers(sub: Any) -> None:
    o = {"choices": ["text", "json"], "default": "text"}
    p = sub.add_parser("backups", help="list backups: one cluster (scope/name), a scope, or every cluster",
                       description="Rows come from the backups directory, the capture containers and the metadata "
                                   "sidecars; a row's state (running, complete, failed, cancelled) is derived now.")
    p.add_argument("target", nargs="?", metavar="REF|SCOPE")
    p.add_argument("-o", "--output", **o)

    p = sub.add_parser("backups:capture", help="pg_dump the cluster into its backups directory (detached)",
                       description=(
                           "Runs pg_dump (custom format: one file) in a container of the cluster's image on its "
                           "network, from the primary or --from-replica N, counting every table's rows in the "
                           "dump's own snapshot. The dump is written as .partial, read back (TOC), checksummed, "
                           "synced and renamed only when every stage succeeded; a JSON "
                           "sidecar records what it holds. Returns at once with the id; --follow shows progress "
                           "(Ctrl-C stops following, not the capture). Retention runs after a successful capture, "
                           "so --keep N leaves exactly N. Under Voodu the capture is a job <name>.bk.bNNN "
                           "(no --follow/--verify there)."))
    p.add_argument("ref", metavar="REF")
    p.add_argument("--from-replica", type=int, metavar="N", help="dump from pod N (default: the primary)")
    p.add_argument("-f", "--follow", action="store_true", help="wait, showing progress, and report the result")
    _retention_flags(p, "after the capture")
    p.add_argument("--verify", action="store_true",
                   help="after capturing, restore it into a throw-away server and compare row counts "
                        "when they were recorded (implies --follow)")
    p.add_argument("-o", "--output", **o)

    p = sub.add_parser("backups:logs", help="a capture's log (--follow: until it ends)")
    p.add_argument("ref", metavar="REF")
    p.add_argument("id", metavar="ID")
    p.add_argument("-f", "--follow", action="store_true")

    p = sub.add_parser("backups:cancel", help="stop a running capture (every running one without ID); "
                                              "nothing partial is left")
    p.add_argument("ref", metavar="REF")
    p.add_argument("id", nargs="?", metavar="ID")
    p.add_argument("-o", "--output", **o)

    p = sub.add_parser("backups:delete", help="delete a finished backup (a running one must be cancelled)")
    p.add_argument("ref", metavar="REF")
    p.add_argument("id", metavar="ID")
    p.add_argument("-y", "--yes", action="store_true", help="confirm (required)")
    p.add_argument("-o", "--output", **o)

    p = sub.add_parser("backups:prune", help="apply a retention policy now (flags over BACKUP_KEEP/BACKUP_MAX_AGE)")
    p.add_argument("ref", metavar="REF")
    _retention_flags(p, "policy")
    p.add_argument("--dry-run", action="store_true", help="only list what would go")
    p.add_argument("-y", "--yes", action="store_true", help="confirm (required unless --dry-run)")
    p.add_argument("-o", "--output", **o)

    p = sub.add_parser("backups:download", help="copy a complete backup out of the backups directory")
    p.add_argument("ref", metavar="REF")
    p.add_argument("id", metavar="ID")
    p.add_argument("--to", metavar="PATH", help="file or directory (default: the backup's file name here); "
                                                "an existing file is never overwritten")
    p.add_argument("-o", "--output", **o)

    p = sub.add_parser("backups:restore", help="restore a complete backup into the primary, in one transaction",
                       description=(
                           "pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction into "
                           "the primary: a failed restore changes nothing. A dump from a newer PostgreSQL major is "
                           "refused. Standbys receive the restored data by streaming. Holds the cluster lease."))
    p.add_argument("ref", metavar="REF")
    p.add_argument("id", metavar="ID")
    p.add_argument("-y", "--yes", action="store_true", help="confirm (required: objects are replaced)")
    _lock_flags(p)
    p.add_argument("-o", "--output", **o)

    p = sub.add_parser("backups:schedule", help="record a backup schedule (cron, UTC); `reconcile --watch` runs it",
                       description=(
                           "Records the schedule in the cluster's bucket (BACKUP_SCHEDULE). `reconcile --watch` "
                           "starts a capture when a slot is due; a slot missed while it was down runs once when it "
                           "comes back. --remove drops the schedule. Under Voodu it prints the cronjob block to add "
                           "to voodu.hcl instead (Voodu's scheduler runs it)."))
    p.add_argument("ref", metavar="REF")
    p.add_argument("--at", metavar="CRON", help="standard 5-field cron, UTC (default '0 3 * * *')")
    p.add_argument("--from-replica", type=int, metavar="N", help="dump from pod N (default: the primary)")
    _retention_flags(p, "after each scheduled capture")
    p.add_argument("--remove", action="store_true", help="drop the schedule")
    p.add_argument("-o", "--output", **o)

    p = sub.add_parser("backups:verify", help="restore a backup into a throw-away server and compare row counts "
                                              "with its metadata when recorded (the result is recorded)")
    p.add_argument("ref", metavar="REF")
    p.add_argument("id", metavar="ID")
    p.add_argument("-o", "--output", **o)


def _physical_parsers(sub: Any) -> None:
    p = sub.add_parser("backup", help="pg_basebackup the whole cluster into one tar file (base.tar + pg_wal.tar)",
                       description=(
                           "pg_basebackup -Ft -X stream (WAL streamed alongside, so the copy is self-consistent) "
                           "from the primary, or from a running standby with --from-replica N, into ONE tar at "
                           "PATH holding base.tar, pg_wal.tar and backup_manifest. Written under a temporary name "
                           "next to PATH, checked, fsynced and renamed last: a failure leaves nothing at PATH. "
                           "Mode 0600 (it holds password hashes). Restore it with `restore REF --from PATH`."))
    p.add_argument("ref", metavar="REF")
    p.add_argument("--destination", required=True, metavar="PATH",
                   help="the tar file to write (never over an existing file without --force)")
    p.add_argument("--from-replica", type=int, metavar="N", help="copy running standby N (default: the primary)")
    p.add_argument("--force", action="store_true", help="replace an existing PATH (atomically, once the backup is good)")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("restore", help="DESTRUCTIVE: replace the whole cluster's data with a `backup` tar",
                       description=(
                           "Checks the tar first (base.tar with PG_VERSION, pg_wal.tar, the image's major) and "
                           "changes nothing if it is wrong. Then, holding the cluster lease and with its intent "
                           "recorded in the bucket (PG_PHYSICAL_RESTORE: apply and reconcile refuse until it "
                           "finishes): stops every pod, wipes every data volume, unpacks the tar into the "
                           "primary's, sets the bucket's passwords on the superuser and replication roles, starts "
                           "the primary, and lets the reconciler re-clone the standbys. Interrupted, it is "
                           "finished by running it again. Standalone only."))
    p.add_argument("ref", metavar="REF")
    p.add_argument("--from", dest="source", required=True, metavar="PATH", help="a tar written by `backup`")
    p.add_argument("-y", "--yes", action="store_true", help="confirm (required: every pod's data is replaced)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for the standbys to re-clone and stream (default 300)")
    _lock_flags(p)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")


HELP_TEXT = """\
voodu-postgres — PostgreSQL clusters on Docker from a `postgres "scope" "name" { … }` block

One primary plus N streaming-replication standbys, generated secrets, promote/rejoin,
synchronous replication, app wiring and zero-downtime password rotation, and a reconciler that
keeps Docker in line with the file.

USAGE
  voodu-postgres apply -f voodu.hcl             create or converge; waits until every standby streams
  voodu-postgres info REF [-o json]             topology and every pod as observed now
  voodu-postgres reconcile [REF…] [--dry-run]   one repair pass (--watch: keep going)
  voodu-postgres link REF APP [--reads]         DATABASE_URL (+ DATABASE_READ_URL) into APP's bucket
  voodu-postgres unlink REF APP                 remove them again
  voodu-postgres new-password REF               rotate the superuser password (--replication: the replicator's)
  voodu-postgres expose REF / unexpose REF      publish on 0.0.0.0 / back to 127.0.0.1
  voodu-postgres psql REF [-c SQL] [-- ARGS]    psql in the primary (or --replica N), no password needed
  voodu-postgres promote REF --replica N        switchover (no acknowledged write lost); --force: failover
  voodu-postgres rejoin REF --replica N         re-attach a pod as a standby (pg_rewind, else re-clone)
  voodu-postgres delete REF --yes [--prune]     remove pods (--prune: data, secrets, assets too)
  voodu-postgres validate -f voodu.hcl          check every postgres block, report every problem
  voodu-postgres render -f voodu.hcl            what expand emits (secrets redacted)
  voodu-postgres config get|set|unset REF …     the config bucket (passwords, ordinal, retention)
  voodu-postgres defaults                       the default block
  voodu-postgres backups [REF|SCOPE]            list backups (state derived now; verified or not)
  voodu-postgres backups:capture REF [--follow] pg_dump (--from-replica N, --keep N, --max-age D, --verify)
  voodu-postgres backups:restore REF ID --yes   restore into the primary in one transaction
  voodu-postgres backups:verify REF ID          restore into a throw-away server, compare row counts
  voodu-postgres backups:logs|cancel|delete|prune|download …   the rest of the backups suite
  voodu-postgres backup REF --destination PATH  pg_basebackup of the whole cluster into one tar (--from-replica N)
  voodu-postgres restore REF --from PATH --yes  DESTRUCTIVE: the whole cluster from such a tar (standalone only)
  voodu-postgres expand                         Voodu plugin hook (JSON on stdin/stdout)

REF is scope/name. `voodu-postgres <command> --help` shows a command's flags.
As a Voodu plugin: vd plugins:install <this repository>; then `vd pg:<command> …` runs the same
commands (info, link, unlink, new-password, expose, unexpose, psql, backup, and the backups
suite: captures run as Voodu jobs; backups:schedule prints the cronjob block to add).
"""


# ------------------------------------------------------------------------------------------
# the funnel


def entry() -> NoReturn:
    """The ``voodu-postgres`` executable: :func:`main`, then exit.

    SIGTERM (``systemctl stop``, ``docker stop``, ``kill``) unwinds like Ctrl-C — a lease held is
    released, a ``--follow`` says the capture goes on — and then the process ends by that same
    signal, so whoever sent it (systemd counts it a clean stop) sees how it ended.

    Before exiting, every live object is frozen out of the garbage collector: the interpreter's
    final collections would otherwise walk everything docker, pydantic and rich allocated — a
    quarter of a second added to every command (and to every capture's wall time) for memory the
    operating system takes back anyway. Finalisers, atexit handlers and buffered output run as
    usual; only the cycle search is skipped."""
    import gc
    import os
    import signal

    terminated = False

    def on_sigterm(_signum: int, _frame: object) -> None:
        nonlocal terminated
        if terminated:  # already unwinding: a second SIGTERM must not interrupt the clean-up
            return
        terminated = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    code = main()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # from here on a SIGTERM simply ends the process
    gc.freeze()
    if terminated:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGTERM)
    raise SystemExit(code)


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    env = env or Env()
    args_list = list(sys.argv[1:] if argv is None else argv)
    # --traceback may appear anywhere (the error hint suggests appending it to the failing command)
    traceback = "--traceback" in args_list
    args_list = [a for a in args_list if a != "--traceback"]
    try:
        return _dispatch(args_list, env)
    except KeyboardInterrupt:
        env.stderr.write("interrupted\n")
        return ExitStatus.INTERRUPTED
    except Exception as exc:
        if traceback:
            raise
        status, message = _classify(exc)
        if env.plugin_mode:
            envelope_error(env, message.replace("\n", "; "))
            return ExitStatus.ERROR
        env.stderr.write(message + "\n")
        return status


def _classify(exc: Exception) -> tuple[int, str]:
    from voodu_postgres.domain.spec import printable

    if isinstance(exc, UsageError):
        return exc.exit_code, printable(str(exc))  # bad usage is one line, whatever the arguments held
    if isinstance(exc, VooduError):
        return exc.exit_code, str(exc)
    # anything else is a bug or an unexpected environment problem: still one line, no traceback
    text = printable(" ".join(str(exc).split()))
    return ExitStatus.ERROR, f"error: {type(exc).__name__}: {text} (run with --traceback for details)"


def _command_of(argv: list[str]) -> str | None:
    """The command word: the first token that is not a global option (``--home`` takes a value)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token == "--home":
            skip = True
        elif token == "--":
            return None
        elif not token.startswith("-"):
            return token
    return None


def _split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """``psql … -- ARGS``: everything after the first ``--`` goes to psql untouched."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1:]
    return argv, []


def _dispatch(argv: list[str], env: Env) -> int:
    # Modules are imported by the branch that needs them: the HCL parser and the reconciler cost
    # half a second of start-up, which a backups command (a capture's wall time) should not pay.
    if argv[:1] == ["expand"]:
        from voodu_postgres.commands import files

        return files.cmd_expand(env)
    parser = build_parser()
    if not argv:
        parser.print_help(env.stdout)
        return ExitStatus.OK
    argv, passthrough = _split_passthrough(argv) if _command_of(argv) == "psql" else (argv, [])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version print and "exit" through argparse
        return exc.code if isinstance(exc.code, int) else 0
    command = args.command
    if command is None:  # only global flags (`--home DIR`): as with no arguments at all
        parser.print_help(env.stdout)
        return ExitStatus.OK
    if command == "help":
        env.stdout.write(HELP_TEXT)
        return ExitStatus.OK
    if command == "expand":  # after global flags (`--home DIR expand`)
        from voodu_postgres.commands import files

        return files.cmd_expand(env)
    if command == "defaults":
        from voodu_postgres.commands import files

        return files.cmd_defaults(args, env)
    if env.plugin_mode:
        return _plugin(args, passthrough, env)
    if command == "validate":
        from voodu_postgres.commands import files

        return files.cmd_validate(args, env)

    from voodu_postgres.adapters.store import SqliteStore, resolve_home

    home = resolve_home(args.home, env.environ)
    store = SqliteStore(home)
    if command in ("render", "config"):
        from voodu_postgres.commands import files

        return files.cmd_render(args, env, store) if command == "render" else files.cmd_config(args, env, store)

    from voodu_postgres.commands.local import LocalMode

    mode = LocalMode(env, store, home, lock_timeout=getattr(args, "lock_timeout", 300.0),
                     lock_wait=not getattr(args, "no_wait", False))
    if command == "backups" or command.startswith("backups:"):
        from voodu_postgres.commands import backups

        backup_handlers = {"backups": backups.cmd_list, "backups:capture": backups.cmd_capture,
                           "backups:logs": backups.cmd_logs, "backups:cancel": backups.cmd_cancel,
                           "backups:delete": backups.cmd_delete, "backups:prune": backups.cmd_prune,
                           "backups:download": backups.cmd_download, "backups:restore": backups.cmd_restore,
                           "backups:verify": backups.cmd_verify, "backups:schedule": backups.cmd_schedule}
        return backup_handlers[command](args, mode)
    if command in ("backup", "restore"):
        from voodu_postgres.commands import physical

        return physical.cmd_backup(args, mode) if command == "backup" else physical.cmd_restore(args, mode)

    from voodu_postgres.commands import cluster  # imports docker lazily: validate/config stay fast

    handlers = {"apply": cluster.cmd_apply, "reconcile": cluster.cmd_reconcile, "info": cluster.cmd_info,
                "delete": cluster.cmd_delete, "promote": cluster.cmd_promote, "failover": cluster.cmd_promote,
                "rejoin": cluster.cmd_rejoin}
    if command in handlers:
        return handlers[command](args, mode)
    return _app_command(args, passthrough, mode, tty=_stdin_is_tty(env))


def _stdin_is_tty(env: Env) -> bool:
    try:
        return env.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _plugin(args: argparse.Namespace, passthrough: list[str], env: Env) -> int:
    from voodu_postgres.adapters.controller import read_invocation
    from voodu_postgres.commands.plugin import PluginMode

    if args.command not in PLUGIN_COMMANDS:
        instead = _UNDER_VOODU.get(args.command, "the standalone CLI")
        raise UsageError(f"{args.command} manages standalone clusters; under Voodu use {instead}")
    try:
        context = env.stdin.read()
    except UnicodeDecodeError as exc:
        raise CommandError(f"decode stdin: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                           f"{exc.start})") from exc
    invocation = read_invocation(context, env.environ)
    mode = PluginMode(env, invocation)
    if args.command in _PLUGIN_BACKUPS:
        from voodu_postgres.commands import backups

        handlers = {"backups": backups.cmd_list, "backups:capture": backups.cmd_capture,
                    "backups:logs": backups.cmd_logs, "backups:cancel": backups.cmd_cancel,
                    "backups:delete": backups.cmd_delete, "backups:prune": backups.cmd_prune,
                    "backups:download": backups.cmd_download, "backups:restore": backups.cmd_restore,
                    "backups:verify": backups.cmd_verify, "backups:schedule": backups.cmd_schedule}
        return handlers[args.command](args, mode)
    if args.command == "backup":
        from voodu_postgres.commands import physical

        return physical.cmd_backup(args, mode)
    if args.command == "info":
        from voodu_postgres.commands.base import Result
        from voodu_postgres.commands.info import format_info, info_snapshot

        snap = info_snapshot(mode.load(args.ref, observe=True))
        return mode.finish(Result(format_info(snap).rstrip("\n"), snap), output=args.output)
    return _app_command(args, passthrough, mode, tty=None)


def _app_command(args: argparse.Namespace, passthrough: list[str], mode: Mode, *, tty: bool | None) -> int:
    """The commands shared by both modes: decide through the mode's facts, carry out through it."""
    from voodu_postgres.commands import apps, credentials, expose, psql

    command = args.command
    output = getattr(args, "output", "text")
    if command == "link":
        result = apps.decide_link(mode.load(args.ref, observe=False), args.consumer, reads=args.reads,
                                  load_balance=args.load_balance)
    elif command == "unlink":
        result = apps.decide_unlink(mode.load(args.ref, observe=False), args.consumer)
    elif command == "new-password":
        say = mode.env.say if output == "text" and not mode.plugin else (lambda _line: None)
        with mode.lease(args.ref, "new-password"):
            result = credentials.new_password(mode, args.ref, replication=args.replication,
                                              no_restart=args.no_restart, progress=lambda line: say(f"  {line}"))
            return mode.finish(result, output=output)
    elif command in ("expose", "unexpose"):
        with mode.lease(args.ref, command):
            result = expose.decide_expose(mode.load(args.ref, observe=False), public=command == "expose")
            return mode.finish(result, output=output)
    elif command == "psql":
        extra = (["-c", args.sql] if args.sql is not None else []) + passthrough
        result = psql.decide_psql(mode.load(args.ref, observe=True), replica=args.replica, passthrough=extra,
                                  tty=tty)
    else:  # pragma: no cover - argparse rejects unknown commands first
        raise UsageError(f"unknown command {command!r}")
    return mode.finish(result, output=output)
