"""Command line: argument parsing and the single error → exit-code funnel.

Two modes share these commands:

* **standalone** (default): human text on stdout (``-o json`` for machines), one-line errors on
  stderr, state in the embedded SQLite store under ``--home`` / ``$VOODU_POSTGRES_HOME``.
* **Voodu plugin** (``$VOODU_PLUGIN_DIR`` is set, as it is for every controller-spawned exec):
  ``expand`` and the dispatch commands answer with exactly one JSON envelope on stdout
  (``{"status":"ok","data":…}`` / ``{"status":"error","error":…}``, exit 1). Errors go to stdout
  because that is where the controller looks first (voodu-platform.md §1.4).

The command names are the plugin's: ``voodu-postgres link …`` here is ``vd pg:link …`` under
Voodu; :mod:`.registry` holds one row per command and ``plugin.yml`` declares exactly its names.
Only this module turns exceptions into exit codes; ``--traceback`` re-raises for debugging.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from voodu_postgres.cli.handlers import Call, refused
from voodu_postgres.cli.parser import build_parser
from voodu_postgres.cli.registry import BY_NAME, COMMANDS, PLUGIN_COMMANDS, REGISTRY
from voodu_postgres.commands.base import Env, ExitStatus, envelope_error
from voodu_postgres.domain.errors import UsageError, VooduError

__all__ = ["BY_NAME", "COMMANDS", "PLUGIN_COMMANDS", "REGISTRY", "build_parser", "entry", "main"]


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
    if argv[:1] == ["expand"]:  # the plugin hook: answered before anything else is loaded
        return BY_NAME["expand"].handler(Call(argparse.Namespace(command="expand", home=None), env))
    parser = build_parser()
    if not argv:
        parser.print_help(env.stdout)
        return ExitStatus.OK
    argv, passthrough = _split_passthrough(argv) if _command_of(argv) == "psql" else (argv, [])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version print and "exit" through argparse
        return exc.code if isinstance(exc.code, int) else 0
    if args.command is None:  # only global flags (`--home DIR`): as with no arguments at all
        parser.print_help(env.stdout)
        return ExitStatus.OK
    row = BY_NAME[args.command]
    call = Call(args, env, passthrough)
    if env.plugin_mode and not row.modeless and row.standalone_only is not None:
        return refused(call, row.standalone_only)
    return row.handler(call)
