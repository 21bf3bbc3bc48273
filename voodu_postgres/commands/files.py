"""Commands that work on files and buckets only: ``validate``, ``render``, ``expand``, ``config``,
``defaults`` and ``help``. None of them talks to Docker, so the CLI answers them without importing
the Docker SDK.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voodu_postgres.adapters.store import Store
from voodu_postgres.commands.base import REDACTED, Env, ExitStatus, envelope_error, envelope_ok, is_secret_key
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.hcl import (
    Block,
    FileContents,
    HCLSyntaxError,
    blocks_from_json,
    blocks_to_json,
    parse_blocks,
)
from voodu_postgres.domain.keys import REPLICATION_PASSWORD_KEY, SECRET_KEYS
from voodu_postgres.domain.naming import label_problem
from voodu_postgres.domain.spec import SpecError, defaults, load_spec, printable
from voodu_postgres.render.expansion import expand
from voodu_postgres.render.validate import load_text


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
            data = path.read_bytes()
        except OSError as exc:
            lines.append(printable(f"{raw}: cannot read: {exc.strerror or exc}"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = f"byte 0x{data[exc.start]:02x} at offset {exc.start}"
            lines.append(printable(f"{raw}: not UTF-8 text ({where})"))
            continue
        try:
            contents.append(load_text(text, source=raw, blocks=_cached_blocks(text, raw, cache_dir)))
        except HCLSyntaxError as exc:
            lines.append(printable(str(exc)))
        except SpecError as exc:
            # one line per problem, whatever the file's text put in the messages
            lines.extend(printable(str(problem)) for problem in exc.problems)
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
            raise CommandError(printable(f"no postgres block {args.ref} in {', '.join(args.files)}"))
    result: list[dict[str, Any]] = []
    expansions = [(spec, expand(spec, store.resolve(spec.scope, spec.name))) for spec in specs]
    for spec, expansion in expansions:
        if args.out:
            target = Path(args.out) / (spec.scope or "_unscoped") / spec.name
            try:
                target.mkdir(parents=True, exist_ok=True)
                for f in expansion.files:
                    (target / f.name).write_text(f.text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(printable(f"render: cannot write {exc.filename or target}: "
                                             f"{exc.strerror or exc}")) from exc
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
        request = json.loads(env.stdin.read() or "{}", parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        envelope_error(env, f"decode expand request: not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
                            f"{exc.start})")
        return ExitStatus.ERROR
    except RecursionError:
        envelope_error(env, "decode expand request: nested too deeply")
        return ExitStatus.ERROR
    except ValueError as exc:  # JSONDecodeError, or NaN/Infinity (not JSON: the controller can't read it)
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
        envelope_ok(env, expand(spec, config).to_wire())
    except SpecError as exc:
        envelope_error(env, "; ".join(str(p) for p in exc.problems))
        return ExitStatus.ERROR
    except RecursionError:  # the answer is encoded whole before it is written: nothing half-printed
        envelope_error(env, "expand: block spec nested too deeply")
        return ExitStatus.ERROR
    return ExitStatus.OK


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _config_ref(text: str) -> tuple[str, str]:
    """``scope/name`` → app bucket, ``scope`` → scope-level bucket, ``/name`` → unscoped app."""
    raw = text.strip()
    if not raw:
        raise UsageError("config: empty ref (expected scope, scope/name or /name)")
    scope, sep, name = raw.partition("/")
    if sep and (not name or "/" in name):
        raise UsageError(f'config: invalid ref "{text}" (expected scope, scope/name or /name)')
    # the same DNS labels every resource has (a bucket no resource or app can ever read is a typo)
    for part, what in ((scope, "scope"), (name, "name")):
        issue = label_problem(part, what) if part else None
        if issue:
            raise UsageError(f'config: invalid ref "{text}": {issue}')
    return scope, name


_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _refuse_secret_edit(store: Store, scope: str, name: str, keys: list[str]) -> None:
    """The passwords of a cluster that exists live in its roles too: editing only the bucket
    would hand apps (and standbys) a password Postgres does not know."""
    secrets = sorted(set(keys) & SECRET_KEYS)
    if not secrets:
        return
    affected = [r for r in store.resources() if r.scope == scope and (not name or r.name == name)]
    if affected:
        refs = ", ".join(f"{r.scope}/{r.name}" if r.scope else r.name for r in affected)
        flag = " --replication" if secrets == [REPLICATION_PASSWORD_KEY] else ""
        raise CommandError(f"refusing to change {', '.join(secrets)}: {refs} already runs with it (the bucket "
                           f"alone would not change the role); rotate it with "
                           f"`voodu-postgres new-password {refs.split(', ')[0]}{flag}`")


def cmd_config(args: argparse.Namespace, env: Env, store: Store) -> int:
    scope, name = _config_ref(args.ref)
    label = f"{scope}/{name}" if scope and name else (name or f"scope {scope}")
    if args.action == "get":
        return _config_get(args, env, store, scope, name, label)

    if args.action in ("set", "unset"):
        touched = [p.partition("=")[0] for p in args.pairs] if args.action == "set" else list(args.keys)
        _refuse_secret_edit(store, scope, name, touched)
    if args.action == "set":
        changed, message = _config_set(args, env, store, scope, name, label)
    else:
        changed, message = _config_unset(args, store, scope, name, label)
    if args.output == "json":
        env.stdout.write(json.dumps({"ref": label, "keys": changed}) + "\n")
    else:
        env.stdout.write(message + "\n")
    return ExitStatus.OK


def _check_keys(verb: str, keys: Sequence[str]) -> None:
    for key in keys:
        if not _KEY_RE.fullmatch(key):
            raise UsageError(f'config {verb}: "{key}" is not a valid key')


def _config_get(args: argparse.Namespace, env: Env, store: Store, scope: str, name: str, label: str) -> int:
    """``config get``: the named keys (all of them, secrets redacted, when none is named)."""
    values = store.resolve(scope, name) if name else store.own(scope, "")
    _check_keys("get", args.keys)
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
        env.stdout.write(shown[args.keys[0]] + "\n")  # one key: its bare value, for scripts
    elif not shown:
        env.stdout.write(f"{label}: no keys set\n")
    else:
        for key, value in shown.items():
            env.stdout.write(f"{key}={value}\n")
    return ExitStatus.OK


def _config_set(args: argparse.Namespace, env: Env, store: Store, scope: str, name: str,
                label: str) -> tuple[list[str], str]:
    """``config set KEY=VALUE…`` (``-`` reads the value from stdin); the keys changed and the message."""
    kv: dict[str, str] = {}
    for pair in args.pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _KEY_RE.fullmatch(key):
            raise UsageError(f'config set: "{key if sep else pair}" is not KEY=VALUE with a valid key')
        kv[key] = _config_value(env, key, value)
    store.patch(scope, name, kv)
    changed = sorted(kv)
    parts = [f"{verb} {', '.join(keys)}" for verb, keys in (
        ("set", [k for k in changed if kv[k]]), ("unset", [k for k in changed if not kv[k]])) if keys]
    return changed, f"{label}: {'; '.join(parts)}"


def _config_value(env: Env, key: str, value: str) -> str:
    """A ``config set`` value as text: ``-`` is one line of stdin."""
    try:
        if value == "-":
            value = env.stdin.readline().rstrip("\n")
        value.encode("utf-8")  # argv and stdin may carry undecodable bytes (as surrogate escapes)
    except UnicodeError as exc:
        raise CommandError(f"config set: the value of {key} is not UTF-8 text") from exc
    return value


def _config_unset(args: argparse.Namespace, store: Store, scope: str, name: str,
                  label: str) -> tuple[list[str], str]:
    """``config unset KEY…``; the keys changed and the message."""
    _check_keys("unset", args.keys)
    store.unset(scope, name, args.keys)
    changed = list(args.keys)
    return changed, f"{label}: unset {', '.join(changed)}"


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


