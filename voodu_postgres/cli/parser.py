"""The argument parser, built from the registry: each row's own flags, then the shared ones
(``--lock-timeout``/``--no-wait`` for commands holding the lease, ``-o/--output``), declared here
once."""

from __future__ import annotations

import argparse
from typing import NoReturn

from voodu_postgres import __version__
from voodu_postgres.cli import flags
from voodu_postgres.cli.registry import REGISTRY, Command
from voodu_postgres.domain.errors import UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting (so errors stay one line)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")


def _lease(p: argparse.ArgumentParser, no_wait_help: str | None) -> None:
    """Flags of every command that holds the cluster's lease (one mutating operation at a time)."""
    p.add_argument("--lock-timeout", type=float, default=300.0, metavar="S",
                   help="how long to wait for another operation on the cluster to finish (default 300)")
    p.add_argument("--no-wait", action="store_true",
                   help=no_wait_help or "fail at once, naming it, if another operation holds the cluster")


def _add(sub: argparse._SubParsersAction[_Parser], row: Command) -> None:
    p = sub.add_parser(row.name, aliases=list(row.aliases), help=row.help, description=row.description)
    if row.name == "config":  # sub-subcommands, each with its own -o
        flags.config(p, subparser=_Parser, output=_output)
    elif row.flags is not None:
        row.flags(p)
    if row.lease:
        _lease(p, row.no_wait_help)
    if row.output:
        _output(p)


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
    for row in REGISTRY:
        _add(sub, row)
    return parser
