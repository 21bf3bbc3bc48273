"""Command line: argument parsing, output formatting, and the single error → exit-code funnel.

Two modes share these commands:

* **standalone** (default): human text on stdout, one-line errors on stderr, state in the
  embedded SQLite store under ``--home`` / ``$VOODU_POSTGRES_HOME``.
* **Voodu plugin** (``$VOODU_PLUGIN_DIR`` is set, as it is for every controller-spawned exec):
  ``expand`` and dispatch commands answer with JSON envelopes on stdout
  (``{"status":"ok","data":…}`` / ``{"status":"error","error":…}``, exit 1). Errors go to stdout
  because that is where the controller looks first (voodu-platform.md §1.4).

Only this module turns exceptions into exit codes; ``--traceback`` re-raises for debugging.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn, TextIO

from voodu_postgres import __version__
from voodu_postgres.reconciler import expand as expand_mod
from voodu_postgres.reconciler.hclfile import (
    Block,
    FileContents,
    HCLSyntaxError,
    blocks_from_json,
    blocks_to_json,
    load_text,
    parse_blocks,
)
from voodu_postgres.reconciler.naming import DEFAULT_NETWORK, RefError
from voodu_postgres.reconciler.spec import SpecError, defaults, load_spec
from voodu_postgres.reconciler.store import SqliteStore, Store, StoreError, resolve_home


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    INTERRUPTED = 130


class UsageError(Exception):
    """Bad command-line usage; printed as one line, exit 2."""


class CommandError(Exception):
    """A command failed for a reason the user can act on; printed as one line, exit 1."""


@dataclass
class Env:
    """Everything a command touches from the outside, injectable for in-process tests."""

    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def plugin_mode(self) -> bool:
        return bool(self.environ.get("VOODU_PLUGIN_DIR"))


# ------------------------------------------------------------------------------------------
# output helpers


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def envelope_ok(env: Env, data: Any) -> None:
    env.stdout.write(_dump({"status": "ok", "data": data}) + "\n")


def envelope_error(env: Env, message: str) -> None:
    env.stdout.write(_dump({"status": "error", "error": message}) + "\n")


NETWORK_ENV = "VOODU_POSTGRES_NETWORK"
_SECRET_RE = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_(READ_)?URL", re.IGNORECASE)
REDACTED = "<redacted>"


def is_secret_key(key: str) -> bool:
    return key in expand_mod.SECRET_KEYS or bool(_SECRET_RE.search(key))


# ------------------------------------------------------------------------------------------
# argument parsing


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting (so errors stay one line)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


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
    p.add_argument("--no-wait", action="store_true", help="start the work, don't wait for readiness")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="seconds to wait (default 300)")
    p.add_argument("--network", help=f"Docker network (default ${NETWORK_ENV} or {DEFAULT_NETWORK})")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("reconcile", help="one pass (or a loop) over applied clusters: repair drift")
    p.add_argument("refs", nargs="*", metavar="REF", help="scope/name (default: every applied cluster)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--watch", action="store_true", help="keep reconciling")
    p.add_argument("--interval", type=float, default=10.0, metavar="S", help="seconds between passes with --watch")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("info", help="cluster topology: the spec, the bucket, and every pod as observed now")
    p.add_argument("ref", metavar="REF")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("delete", help="remove a cluster's containers (--prune: also its data and state)")
    p.add_argument("ref", metavar="REF")
    p.add_argument("--prune", action="store_true", help="also remove data volumes, the config bucket, assets")
    p.add_argument("-y", "--yes", action="store_true", help="confirm (required: this stops the database)")
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
        p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("rejoin", help="re-attach a pod as a standby of the current primary (pg_rewind, "
                                      "or a fresh clone when rewind is impossible)")
    p.add_argument("ref", metavar="REF")
    p.add_argument("-r", "--replica", type=int, required=True, metavar="N", help="ordinal to rejoin")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")

    p = sub.add_parser("defaults", help="print the default postgres block")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    sub.add_parser("help", help="plugin overview")
    return parser


# ------------------------------------------------------------------------------------------
# commands


def _cached_blocks(text: str, source: str, cache_dir: Path | None) -> list[Block]:
    """Parse HCL, reusing an earlier parse of byte-identical text.

    Building the HCL grammar and parsing costs ~0.3 s — a third of a no-op ``apply`` — and the
    result depends only on the text, so it is cached under the home dir keyed by its sha256.
    A cache that cannot be read or written is simply skipped.
    """
    if cache_dir is None:
        return parse_blocks(text, source=source)
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()
    entry = cache_dir / f"hcl-{key}.json"
    try:
        return blocks_from_json(json.loads(entry.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    blocks = parse_blocks(text, source=source)
    if any("password" in b.body for b in blocks):
        return blocks  # never keep a copy of an HCL password outside the state store
    try:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.tmp")
        # the body may hold an HCL password: same privacy as the state store
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(blocks_to_json(blocks), handle)
        os.replace(tmp, entry)
    except OSError:
        pass
    return blocks


def read_files(paths: Sequence[str], cache_dir: Path | None = None) -> list[FileContents]:
    """Parse every file, collecting problems across all of them before failing."""
    contents: list[FileContents] = []
    lines: list[str] = []
    for raw in paths:
        path = Path(raw)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            lines.append(f"{raw}: cannot read: {exc.strerror or exc}")
            continue
        try:
            contents.append(load_text(text, source=raw, blocks=_cached_blocks(text, raw, cache_dir)))
        except (HCLSyntaxError, SpecError) as exc:
            lines.extend(str(exc).splitlines())
    if lines:
        raise CommandError("\n".join(lines))
    return contents


def cmd_validate(args: argparse.Namespace, env: Env) -> int:
    contents = read_files(args.files)
    specs = [s for c in contents for s in c.specs]
    others = [b for c in contents for b in c.others]
    if args.output == "json":
        env.stdout.write(
            json.dumps(
                {
                    "postgres": [{"ref": str(s.ref), "replicas": s.replicas, "image": s.image} for s in specs],
                    "ignored": [b.label for b in others],
                },
                indent=2,
            )
            + "\n"
        )
        return ExitStatus.OK
    for spec in specs:
        shape = "single primary" if spec.replicas == 1 else f"1 primary + {spec.replicas - 1} standby(s)"
        env.stdout.write(f"✓ postgres {spec.ref}: {shape}, {spec.image}\n")
    for block in others:
        env.stdout.write(f"- {block.label}: not a postgres block (ignored)\n")
    if not specs:
        env.stdout.write("no postgres blocks found\n")
    return ExitStatus.OK


def _redact_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(manifest))
    envmap = out.get("spec", {}).get("env")
    if isinstance(envmap, dict):
        for key in envmap:
            if is_secret_key(key):
                envmap[key] = REDACTED
    return out  # type: ignore[no-any-return]


def cmd_render(args: argparse.Namespace, env: Env, store: Store) -> int:
    specs = [s for c in read_files(args.files) for s in c.specs]
    if args.ref:
        specs = [s for s in specs if str(s.ref) == args.ref]
        if not specs:
            raise CommandError(f"no postgres block {args.ref} in {', '.join(args.files)}")
    result: list[dict[str, Any]] = []
    for spec in specs:
        expansion = expand_mod.expand(spec, store.resolve(spec.scope, spec.name))
        if args.out:
            target = Path(args.out) / (spec.scope or "_unscoped") / spec.name
            target.mkdir(parents=True, exist_ok=True)
            for f in expansion.files:
                (target / f.name).write_text(f.text, encoding="utf-8")
        result.append(
            {
                "ref": str(spec.ref),
                "files": {f.name: f.sha256 for f in expansion.files},
                "statefulset": _redact_manifest(expansion.manifests[1]),
                "actions": [a.describe() for a in expansion.actions],
            }
        )
    if args.output == "json":
        env.stdout.write(json.dumps(result, indent=2) + "\n")
        return ExitStatus.OK
    for item in result:
        sts = item["statefulset"]["spec"]
        env.stdout.write(f"postgres {item['ref']}\n")
        env.stdout.write(f"  statefulset  image={sts['image']} replicas={sts['replicas']} ports={sts['ports']}\n")
        for name, digest in item["files"].items():
            env.stdout.write(f"  asset        {name:<20} sha256:{digest[:12]}\n")
        for line in item["actions"] or ["(no bucket changes: already seeded)"]:
            env.stdout.write(f"  bucket       {line}\n")
    return ExitStatus.OK


def cmd_expand(env: Env) -> int:
    """Voodu's expand hook. Always answers with an envelope; never raises."""
    try:
        request = json.loads(env.stdin.read() or "{}")
    except json.JSONDecodeError as exc:
        envelope_error(env, f"decode expand request: {exc}")
        return ExitStatus.ERROR
    if not isinstance(request, dict):
        envelope_error(env, "decode expand request: expected a JSON object")
        return ExitStatus.ERROR
    name = request.get("name")
    if not isinstance(name, str) or not name.strip():
        envelope_error(env, "expand request missing required field 'name'")
        return ExitStatus.ERROR
    scope = request.get("scope") or ""
    kind = request.get("kind") or "postgres"
    spec_raw = request.get("spec") or {}
    config_raw = request.get("config") or {}
    if not isinstance(scope, str):
        envelope_error(env, "decode expand request: scope must be a string")
        return ExitStatus.ERROR
    if kind != "postgres":
        envelope_error(env, f'expand: this plugin handles "postgres" blocks, not "{kind}"')
        return ExitStatus.ERROR
    if not isinstance(spec_raw, dict):
        envelope_error(env, "decode block spec: expected a JSON object")
        return ExitStatus.ERROR
    if not isinstance(config_raw, dict):
        envelope_error(env, "decode expand request: config must be a JSON object")
        return ExitStatus.ERROR
    config = {str(k): "" if v is None else str(v) for k, v in config_raw.items()}
    try:
        spec = load_spec(scope, name.strip(), spec_raw)
    except SpecError as exc:
        envelope_error(env, "; ".join(str(p) for p in exc.problems))
        return ExitStatus.ERROR
    envelope_ok(env, expand_mod.expand(spec, config).to_wire())
    return ExitStatus.OK


def _config_ref(text: str) -> tuple[str, str]:
    """``scope/name`` → app bucket, ``scope`` → scope-level bucket, ``/name`` → unscoped app."""
    raw = text.strip()
    if "/" not in raw:
        if not raw:
            raise UsageError("config: empty ref (expected scope, scope/name or /name)")
        return raw, ""
    scope, _, name = raw.partition("/")
    if not name or "/" in name:
        raise UsageError(f'config: invalid ref "{text}" (expected scope, scope/name or /name)')
    return scope, name


_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _refuse_secret_edit(store: Store, scope: str, name: str, keys: list[str]) -> None:
    """The passwords of a cluster that exists live in its roles too: editing only the bucket
    would hand apps (and standbys) a password Postgres does not know."""
    secrets = sorted(set(keys) & expand_mod.SECRET_KEYS)
    if not secrets:
        return
    affected = [r for r in store.resources() if r.scope == scope and (not name or r.name == name)]
    if affected:
        refs = ", ".join(f"{r.scope}/{r.name}" if r.scope else r.name for r in affected)
        raise CommandError(f"refusing to change {', '.join(secrets)}: {refs} already runs with it and "
                           "rotation is not supported yet (set it before the first apply)")


def cmd_config(args: argparse.Namespace, env: Env, store: Store) -> int:
    scope, name = _config_ref(args.ref)
    label = f"{scope}/{name}" if scope and name else (name or f"scope {scope}")
    if args.action == "get":
        values = store.resolve(scope, name) if name else store.own(scope, "")
        if args.keys:
            missing = [k for k in args.keys if k not in values]
            if missing:
                raise CommandError(f"{label}: not set: {', '.join(missing)}")
            shown = {k: values[k] for k in args.keys}
        else:
            shown = {k: (REDACTED if is_secret_key(k) else v) for k, v in values.items()}
        if args.output == "json":
            env.stdout.write(json.dumps(shown, indent=2) + "\n")
        elif args.keys and len(args.keys) == 1:
            env.stdout.write(shown[args.keys[0]] + "\n")
        elif not shown:
            env.stdout.write(f"{label}: no keys set\n")
        else:
            for key, value in shown.items():
                env.stdout.write(f"{key}={value}\n")
        return ExitStatus.OK

    if args.action in ("set", "unset"):
        touched = [p.partition("=")[0] for p in args.pairs] if args.action == "set" else list(args.keys)
        _refuse_secret_edit(store, scope, name, touched)
    if args.action == "set":
        kv: dict[str, str] = {}
        for pair in args.pairs:
            key, sep, value = pair.partition("=")
            if not sep or not _KEY_RE.fullmatch(key):
                raise UsageError(f'config set: "{key if sep else pair}" is not KEY=VALUE with a valid key')
            if value == "-":
                value = env.stdin.readline().rstrip("\n")
            kv[key] = value
        store.patch(scope, name, kv)
        changed = sorted(kv)
        parts = [f"{verb} {', '.join(keys)}" for verb, keys in (
            ("set", [k for k in changed if kv[k]]), ("unset", [k for k in changed if not kv[k]])) if keys]
        message = f"{label}: {'; '.join(parts)}"
    else:
        for key in args.keys:
            if not _KEY_RE.fullmatch(key):
                raise UsageError(f'config unset: "{key}" is not a valid key')
        store.unset(scope, name, args.keys)
        changed = list(args.keys)
        message = f"{label}: unset {', '.join(changed)}"
    if args.output == "json":
        env.stdout.write(json.dumps({"ref": label, "keys": changed}) + "\n")
    else:
        env.stdout.write(message + "\n")
    return ExitStatus.OK


def cmd_defaults(args: argparse.Namespace, env: Env) -> int:
    data = defaults()
    if env.plugin_mode:
        envelope_ok(env, data)
    elif args.output == "json":
        env.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        env.stdout.write('postgres "scope" "name" {\n')
        for key, value in sorted(data.items()):
            env.stdout.write(f"  {key:<17}= {json.dumps(value)}\n")
        env.stdout.write("}\n")
    return ExitStatus.OK


HELP_TEXT = """\
voodu-postgres — PostgreSQL clusters on Docker from a `postgres "scope" "name" { … }` block

One primary plus N streaming-replication standbys, generated secrets, promote/rejoin,
synchronous replication, and a reconciler that keeps Docker in line with the file.

USAGE
  voodu-postgres apply -f voodu.hcl             create or converge; waits until every standby streams
  voodu-postgres info REF [-o json]             topology and every pod as observed now
  voodu-postgres reconcile [REF…] [--dry-run]   one repair pass (--watch: keep going)
  voodu-postgres promote REF --replica N        switchover (no acknowledged write lost); --force: failover
  voodu-postgres rejoin REF --replica N         re-attach a pod as a standby (pg_rewind, else re-clone)
  voodu-postgres delete REF --yes [--prune]     remove pods (--prune: data, secrets, assets too)
  voodu-postgres validate -f voodu.hcl          check every postgres block, report every problem
  voodu-postgres render -f voodu.hcl            what expand emits (secrets redacted)
  voodu-postgres config get|set|unset REF …     the config bucket (passwords, ordinal, retention)
  voodu-postgres defaults                       the default block
  voodu-postgres expand                         Voodu plugin hook (JSON on stdin/stdout)

REF is scope/name. `voodu-postgres <command> --help` shows a command's flags.
As a Voodu plugin: vd plugins:install <this repository>, then `vd apply -f voodu.hcl`.
"""


def cmd_help(env: Env) -> int:
    env.stdout.write(HELP_TEXT)
    return ExitStatus.OK


# ------------------------------------------------------------------------------------------
# the funnel


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
    if isinstance(exc, UsageError):
        return ExitStatus.USAGE, str(exc)
    if isinstance(exc, CommandError | SpecError | HCLSyntaxError | StoreError | RefError):
        return ExitStatus.ERROR, str(exc)
    from voodu_postgres.reconciler.failover import FailoverError
    from voodu_postgres.reconciler.loop import ConvergeTimeout
    from voodu_postgres.reconciler.runtime import RuntimeFailure

    if isinstance(exc, ConvergeTimeout | RuntimeFailure | FailoverError):
        return ExitStatus.ERROR, str(exc)
    # anything else is a bug or an unexpected environment problem: still one line, no traceback
    return ExitStatus.ERROR, f"error: {type(exc).__name__}: {exc} (run with --traceback for details)"


def _dispatch(argv: list[str], env: Env) -> int:
    if argv[:1] == ["expand"]:
        return cmd_expand(env)
    parser = build_parser()
    if not argv:
        parser.print_help(env.stdout)
        return ExitStatus.OK
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version print and "exit" through argparse
        code = exc.code if isinstance(exc.code, int) else 0
        return code
    if args.command == "help":
        return cmd_help(env)
    if args.command == "defaults":
        return cmd_defaults(args, env)
    if args.command == "validate":
        return cmd_validate(args, env)
    home = resolve_home(args.home, env.environ)
    store = SqliteStore(home)
    if args.command in ("apply", "reconcile", "info", "delete", "promote", "failover", "rejoin"):
        from voodu_postgres import ops  # imports docker lazily: validate/config stay fast

        return ops.run(args, env, store, home)
    if args.command == "render":
        return cmd_render(args, env, store)
    if args.command == "config":
        return cmd_config(args, env, store)
    raise UsageError(f"unknown command {args.command!r}")  # pragma: no cover - argparse rejects first

