"""Each command's own arguments: one function per command (or family), named after it.

The flags every command shares are not here: ``-o/--output`` and the lease flags are added by
:mod:`voodu_postgres.cli.parser` from the command's registry row, so each is declared once.
"""

from __future__ import annotations

import argparse
from typing import Any

from voodu_postgres.commands.base import NETWORK_ENV
from voodu_postgres.domain.naming import DEFAULT_NETWORK

Parser = argparse.ArgumentParser


def hcl_files(p: Parser) -> None:
    p.add_argument("-f", "--file", dest="files", action="append", required=True, metavar="FILE")


def ref(p: Parser) -> None:
    p.add_argument("ref", metavar="REF")


def ref_and_id(p: Parser) -> None:
    ref(p)
    p.add_argument("id", metavar="ID")


def yes(p: Parser, why: str) -> None:
    p.add_argument("-y", "--yes", action="store_true", help=f"confirm (required{why})")


def retention(p: Parser, what: str) -> None:
    p.add_argument("--keep", metavar="N", help=f"{what}: keep the N newest complete backups (over BACKUP_KEEP)")
    p.add_argument("--max-age", "--retention", dest="max_age", metavar="D",
                   help=f"{what}: drop backups older than D (7d, 2w, 168h; over BACKUP_MAX_AGE)")


def from_replica(p: Parser, what: str = "dump from pod N (default: the primary)") -> None:
    p.add_argument("--from-replica", type=int, metavar="N", help=what)


def render(p: Parser) -> None:
    hcl_files(p)
    p.add_argument("--ref", help="only this block (scope/name)")
    p.add_argument("--out", metavar="DIR", help="also write the asset files into DIR/<scope>/<name>/")


def config(p: Parser, *, subparser: Any, output: Any) -> None:
    """``config get|set|unset``: sub-subcommands, each with its own ``-o``."""
    csub = p.add_subparsers(dest="action", metavar="<get|set|unset>", parser_class=subparser, required=True)
    for action, text, dest, nargs, metavar in (
            ("get", "show keys (all, or the named ones)", "keys", "*", "KEY"),
            ("set", "set KEY=VALUE pairs", "pairs", "+", "KEY=VALUE"),
            ("unset", "remove keys", "keys", "+", "KEY")):
        c = csub.add_parser(action, help=text)
        c.add_argument("ref")
        c.add_argument(dest, nargs=nargs, metavar=metavar)
        output(c)


def apply(p: Parser) -> None:
    hcl_files(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to wait (default 300)")
    p.add_argument("--network", help=f"Docker network (default ${NETWORK_ENV} or {DEFAULT_NETWORK})")


def reconcile(p: Parser) -> None:
    p.add_argument("refs", nargs="*", metavar="REF", help="scope/name (default: every applied cluster)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--watch", action="store_true", help="keep reconciling")
    p.add_argument("--interval", type=float, default=10.0, metavar="S", help="seconds between passes with --watch")


def delete(p: Parser) -> None:
    ref(p)
    p.add_argument("--prune", action="store_true", help="also remove data volumes, the config bucket, assets")
    yes(p, ": this stops the database")


def promote(p: Parser) -> None:
    ref(p)
    p.add_argument("-r", "--replica", type=int, required=True, metavar="N", help="ordinal to promote")
    p.add_argument("--force", action="store_true",
                   help="skip the lag check; required when the primary is down (failover)")
    p.add_argument("--no-restart", action="store_true",
                   help="leave the old primary stopped instead of rejoining it")
    p.add_argument("-y", "--yes", action="store_true",
                   help="failover: accept promoting a standby that received less WAL than another")
    p.add_argument("--max-lag", type=int, default=16 * 1024 * 1024, metavar="BYTES",
                   help="largest replay lag a planned switchover accepts (default 16 MiB)")


def rejoin(p: Parser) -> None:
    ref(p)
    p.add_argument("-r", "--replica", type=int, required=True, metavar="N", help="ordinal to rejoin")


def link(p: Parser) -> None:
    p.add_argument("ref", metavar="PROVIDER", help="the postgres cluster, scope/name")
    p.add_argument("consumer", metavar="CONSUMER", help="the app's bucket, scope/name")
    p.add_argument("--reads", action="store_true", help="also set DATABASE_READ_URL")
    p.add_argument("--load-balance", action="store_true",
                   help="add load_balance_hosts=random to the read URL (needs libpq 16 or newer in the app)")


def unlink(p: Parser) -> None:
    p.add_argument("ref", metavar="PROVIDER")
    p.add_argument("consumer", metavar="CONSUMER")


def new_password(p: Parser) -> None:
    ref(p)
    p.add_argument("--replication", action="store_true",
                   help="rotate the replication role instead (standbys reconnect by reload)")
    p.add_argument("--no-restart", action="store_true",
                   help="don't restart linked apps for their new URLs (under Voodu; you restart them)")


def psql(p: Parser) -> None:
    ref(p)
    p.add_argument("-r", "--replica", type=int, metavar="N", help="pod ordinal (default: the primary)")
    p.add_argument("-c", "--command", dest="sql", metavar="SQL", help="run one command and exit")


def backups(p: Parser) -> None:
    p.add_argument("target", nargs="?", metavar="REF|SCOPE")


def backups_capture(p: Parser) -> None:
    ref(p)
    from_replica(p)
    p.add_argument("-f", "--follow", action="store_true", help="wait, showing progress, and report the result")
    retention(p, "after the capture")
    p.add_argument("--verify", action="store_true",
                   help="after capturing, restore it into a throw-away server and compare row counts "
                        "when they were recorded (implies --follow)")


def backups_logs(p: Parser) -> None:
    ref_and_id(p)
    p.add_argument("-f", "--follow", action="store_true")


def backups_cancel(p: Parser) -> None:
    ref(p)
    p.add_argument("id", nargs="?", metavar="ID")


def backups_delete(p: Parser) -> None:
    ref_and_id(p)
    yes(p, "")


def backups_prune(p: Parser) -> None:
    ref(p)
    retention(p, "policy")
    p.add_argument("--dry-run", action="store_true", help="only list what would go")
    yes(p, " unless --dry-run")


def backups_download(p: Parser) -> None:
    ref_and_id(p)
    p.add_argument("--to", metavar="PATH", help="file or directory (default: the backup's file name here); "
                                                "an existing file is never overwritten")


def backups_restore(p: Parser) -> None:
    ref_and_id(p)
    yes(p, ": objects are replaced")


def backups_schedule(p: Parser) -> None:
    ref(p)
    p.add_argument("--at", metavar="CRON", help="standard 5-field cron, UTC (default '0 3 * * *')")
    from_replica(p)
    retention(p, "after each scheduled capture")
    p.add_argument("--remove", action="store_true", help="drop the schedule")


def backup(p: Parser) -> None:
    ref(p)
    p.add_argument("--destination", required=True, metavar="PATH",
                   help="the tar file to write (never over an existing file without --force)")
    from_replica(p, "copy running standby N (default: the primary)")
    p.add_argument("--force", action="store_true", help="replace an existing PATH (atomically, once the backup is good)")


def restore(p: Parser) -> None:
    ref(p)
    p.add_argument("--from", dest="source", required=True, metavar="PATH", help="a tar written by `backup`")
    yes(p, ": every pod's data is replaced")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for the standbys to re-clone and stream (default 300)")
