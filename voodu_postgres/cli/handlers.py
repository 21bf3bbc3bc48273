"""What runs each command once it is parsed: one small function per command, all with the same
signature (a :class:`Call`), so the registry can name them.

Modules are imported inside the handler that needs them: the HCL parser, docker and the reconciler
cost half a second of start-up, which a backups command (a capture's wall time) should not pay.
The decisions themselves live in ``voodu_postgres.commands``; a handler only picks the mode
(standalone or Voodu) and hands over.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voodu_postgres.commands.base import Env, ExitStatus
from voodu_postgres.domain.errors import CommandError, UsageError

if TYPE_CHECKING:
    from voodu_postgres.adapters.store import SqliteStore
    from voodu_postgres.commands.mode import Mode


@dataclass
class Call:
    """One parsed invocation: its arguments, the process environment, what follows ``--`` (psql),
    and, built on first use, the standalone store or the mode the command runs in."""

    args: argparse.Namespace
    env: Env
    passthrough: list[str] = field(default_factory=list)
    _store: Any = None
    _mode: Any = None

    @property
    def command(self) -> str:
        return str(self.args.command)

    @property
    def output(self) -> str:
        return str(getattr(self.args, "output", "text"))

    def store(self) -> SqliteStore:
        if self._store is None:
            from voodu_postgres.adapters.store import SqliteStore, resolve_home

            self._store = SqliteStore(resolve_home(self.args.home, self.env.environ))
        return self._store  # type: ignore[no-any-return]

    def mode(self) -> Mode:
        """Standalone: the local engine and store. Under Voodu: the controller, from the dispatch
        context on stdin."""
        if self._mode is not None:
            return self._mode  # type: ignore[no-any-return]
        if self.env.plugin_mode:
            from voodu_postgres.adapters.controller import read_invocation
            from voodu_postgres.commands.plugin import PluginMode

            try:
                context = self.env.stdin.read()
            except UnicodeDecodeError as exc:
                raise CommandError(f"decode stdin: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                                   f"offset {exc.start})") from exc
            self._mode = PluginMode(self.env, read_invocation(context, self.env.environ))
        else:
            from voodu_postgres.adapters.store import resolve_home
            from voodu_postgres.commands.local import LocalMode

            self._mode = LocalMode(self.env, self.store(), resolve_home(self.args.home, self.env.environ),
                                   lock_timeout=getattr(self.args, "lock_timeout", 300.0),
                                   lock_wait=not getattr(self.args, "no_wait", False))
        return self._mode  # type: ignore[no-any-return]


Handler = Callable[[Call], int]


# -- files and buckets (no cluster needed) ------------------------------------------------------

def expand(call: Call) -> int:
    from voodu_postgres.commands import files

    return files.cmd_expand(call.env)


def defaults(call: Call) -> int:
    from voodu_postgres.commands import files

    return files.cmd_defaults(call.args, call.env)


def validate(call: Call) -> int:
    from voodu_postgres.commands import files

    return files.cmd_validate(call.args, call.env)


def render(call: Call) -> int:
    from voodu_postgres.commands import files

    return files.cmd_render(call.args, call.env, call.store())


def config(call: Call) -> int:
    from voodu_postgres.commands import files

    return files.cmd_config(call.args, call.env, call.store())


# -- the cluster's lifecycle (standalone) -------------------------------------------------------

def _delegate(module: str, name: str) -> Handler:
    """A handler that passes the arguments and the mode to ``voodu_postgres.commands.<module>.<name>``
    (imported when the command runs, not at start-up)."""

    def handler(call: Call) -> int:
        import importlib

        function = getattr(importlib.import_module(f"voodu_postgres.commands.{module}"), name)
        result: int = function(call.args, call.mode())
        return result

    handler.__name__ = name
    return handler


def _cluster(name: str) -> Handler:
    return _delegate("cluster", name)


apply = _cluster("cmd_apply")
reconcile = _cluster("cmd_reconcile")
delete = _cluster("cmd_delete")
promote = _cluster("cmd_promote")
rejoin = _cluster("cmd_rejoin")


def info(call: Call) -> int:
    if not call.env.plugin_mode:
        return _cluster("cmd_info")(call)
    from voodu_postgres.commands.base import Result
    from voodu_postgres.commands.info import format_info, info_snapshot

    mode = call.mode()
    snap = info_snapshot(mode.load(call.args.ref, observe=True))
    return mode.finish(Result(format_info(snap).rstrip("\n"), snap), output=call.output)


# -- backups (both modes) -----------------------------------------------------------------------

def _backups(name: str) -> Handler:
    return _delegate("backups", name)


def _physical(name: str) -> Handler:
    return _delegate("physical", name)


backups_list = _backups("cmd_list")
backups_capture = _backups("cmd_capture")
backups_logs = _backups("cmd_logs")
backups_cancel = _backups("cmd_cancel")
backups_delete = _backups("cmd_delete")
backups_prune = _backups("cmd_prune")
backups_download = _backups("cmd_download")
backups_restore = _backups("cmd_restore")
backups_verify = _backups("cmd_verify")
backups_schedule = _backups("cmd_schedule")
backup = _physical("cmd_backup")
restore = _physical("cmd_restore")


# -- app wiring and access (both modes: decide through the mode's facts, carry out through it) ---

def link(call: Call) -> int:
    from voodu_postgres.commands import apps

    mode, args = call.mode(), call.args
    result = apps.decide_link(mode.load(args.ref, observe=False), args.consumer, reads=args.reads,
                              load_balance=args.load_balance)
    return mode.finish(result, output=call.output)


def unlink(call: Call) -> int:
    from voodu_postgres.commands import apps

    mode = call.mode()
    return mode.finish(apps.decide_unlink(mode.load(call.args.ref, observe=False), call.args.consumer),
                       output=call.output)


def new_password(call: Call) -> int:
    from voodu_postgres.commands import credentials

    mode, args = call.mode(), call.args
    say = mode.env.say if call.output == "text" and not mode.plugin else (lambda _line: None)
    with mode.lease(args.ref, "new-password"):
        result = credentials.new_password(mode, args.ref, replication=args.replication,
                                          no_restart=args.no_restart, progress=lambda line: say(f"  {line}"))
        return mode.finish(result, output=call.output)


def expose(call: Call) -> int:
    from voodu_postgres.commands import expose as expose_cmd

    mode = call.mode()
    with mode.lease(call.args.ref, call.command):
        result = expose_cmd.decide_expose(mode.load(call.args.ref, observe=False), public=call.command == "expose")
        return mode.finish(result, output=call.output)


def psql(call: Call) -> int:
    from voodu_postgres.commands import psql as psql_cmd

    mode, args = call.mode(), call.args
    extra = (["-c", args.sql] if args.sql is not None else []) + call.passthrough
    tty = None if call.env.plugin_mode else _stdin_is_tty(call.env)
    result = psql_cmd.decide_psql(mode.load(args.ref, observe=True), replica=args.replica, passthrough=extra,
                                  tty=tty)
    return mode.finish(result, output=call.output)


def _stdin_is_tty(env: Env) -> bool:
    try:
        return env.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def overview(call: Call) -> int:
    from voodu_postgres.cli.overview import HELP_TEXT

    call.env.stdout.write(HELP_TEXT)
    return ExitStatus.OK


def refused(call: Call, instead: str) -> int:
    """A standalone-only command invoked under Voodu: one line saying what to use instead."""
    raise UsageError(f"{call.command} manages standalone clusters; under Voodu use {instead}")
