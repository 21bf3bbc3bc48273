"""Fuzzing the real entry points (issue 8 §5): HCL files, ``expand`` requests, config refs and
keys, and whole command lines, all through :func:`voodu_postgres.cli.main` in-process.

Whatever the input:

* no Python traceback, and no unexpected exception (the funnel's ``run with --traceback`` line);
* the exit code is 0, 1 or 2;
* a failure is one non-empty, printable line on stderr — several lines only when ``validate`` /
  ``render`` report several problems, and then every line starts with the file it is about;
* a rejected input writes nothing: the store's ``bucket``, ``resource`` and ``lease`` tables are
  unchanged, and no file appears in the home directory besides ``state.db`` (and its -wal/-shm)
  and the ``cache`` directory;
* ``expand`` always answers with exactly one JSON envelope line on stdout, exit 0 or 1.

``VOODU_FUZZ_EXAMPLES`` sets the examples per property (default 150: the file runs in well under
a minute); ``bench/fuzz.py`` runs the same properties with thousands. Nothing here needs Docker:
every cluster command is given a ref that is not applied in the temporary home, so it fails
before it could reach Docker.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import string
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from voodu_postgres.adapters.store import SqliteStore
from voodu_postgres.cli import main
from voodu_postgres.commands.base import Env
from voodu_postgres.domain.spec import printable

EXAMPLES = int(os.environ.get("VOODU_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

#: cases run per property (read by bench/fuzz.py for its tally)
CASES: Counter[str] = Counter()

PLUGIN_ENV = {"VOODU_PLUGIN_DIR": "/x"}
#: what must never reach a terminal inside an error line (newlines split it, escapes drive it)
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ALLOWED_IN_HOME = {"state.db", "state.db-wal", "state.db-shm"}


# ------------------------------------------------------------------------------------------
# running the CLI and looking at the state it leaves


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run(argv: Sequence[str], *, stdin: str | bytes = "", environ: dict[str, str] | None = None) -> Outcome:
    # bytes go through a strict UTF-8 reader, as a real pipe into sys.stdin would
    stdin_io = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8") if isinstance(stdin, bytes) \
        else io.StringIO(stdin)
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), Env(stdin=stdin_io, stdout=out, stderr=err, environ=environ or {}))
    with suppress(InvalidArgument):  # outside a hypothesis test (a reproduction at the prompt)
        note(f"argv={list(argv)!r} → exit {code}\n"
             f"stdout={out.getvalue()[:2000]!r}\nstderr={err.getvalue()!r}")
    return Outcome(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class State:
    tables: tuple[tuple[str, ...], ...]  # bucket, resource, lease rows (empty when there is no store)
    files: frozenset[str]


def state(*dirs: Path) -> State:
    """The store's rows, and every file or directory under ``dirs`` (the first is the home: its
    store and parse cache don't count)."""
    tables: list[tuple[str, ...]] = []
    home = dirs[0]
    db = home / "state.db"
    for table in ("bucket", "resource", "lease"):
        rows: list[Any] = []
        if db.exists():
            with closing(sqlite3.connect(db)) as conn:
                try:
                    rows = conn.execute(f"SELECT * FROM {table}").fetchall()
                except sqlite3.OperationalError:  # not created (yet)
                    pass
        tables.append(tuple(sorted(repr(r) for r in rows)))
    files = set()
    for root in dirs:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if root == home and (rel.parts[0] == "cache" or str(rel) in _ALLOWED_IN_HOME):
                continue
            files.add(f"{root.name}/{rel}")
    return State(tuple(tables), frozenset(files))


@contextmanager
def scratch() -> Iterator[Path]:
    """A temporary directory, also the working directory (``render --out abc`` writes there)."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="voodu-fuzz-") as tmp:
        (Path(tmp) / "cwd").mkdir()
        os.chdir(Path(tmp) / "cwd")
        try:
            yield Path(tmp)
        finally:
            os.chdir(cwd)


def check(result: Outcome, before: State, after: State, *, files: Sequence[str] = ()) -> None:
    """The contract every command keeps, whatever it was given."""
    assert result.code in (0, 1, 2), f"exit code {result.code}"
    assert "Traceback" not in result.err and "Traceback" not in result.out
    assert "run with --traceback for details" not in result.err, f"unexpected exception: {result.err!r}"
    if result.code == 0:
        return
    assert result.err.endswith("\n"), f"a failure must say why on stderr: {result.err!r}"
    lines = result.err[:-1].split("\n")
    for line in lines:
        assert line.strip(), f"empty error line in {result.err!r}"
        assert not _UNPRINTABLE.search(line), f"unprintable character in error line {line!r}"
    if len(lines) > 1:
        # only a file report may take several lines, and each names its file
        assert files and result.code == 1, f"multi-line error: {result.err!r}"
        for line in lines:
            # (as given, with control characters escaped)
            named = any(line.startswith(f"{printable(f)}:") for f in files)
            assert named, f"line does not name its file: {line!r}"
    assert after == before, "a rejected input changed the state"


# ------------------------------------------------------------------------------------------
# strategies: values, HCL text


class Raw(str):
    """HCL source text used as is (an expression, an overflowing number)."""


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """``one_of`` with weights (hypothesis treats a repeated branch as one)."""
    table = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


junk = st.text(st.characters(codec="utf-8"), max_size=12)  # any character but a lone surrogate
#: what a real argv can hold: anything but NUL, and undecodable bytes as Python hands them over
#: (surrogate escapes, U+DC80..U+DCFF)
arg_junk = st.text(st.one_of(st.characters(codec="utf-8", exclude_characters="\x00"),
                             st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)), max_size=12)
printable_junk = st.text(alphabet=string.printable, max_size=12)
ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-5, 70000),
                   st.floats(allow_nan=False, allow_infinity=False), junk, printable_junk)
generic = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.one_of(ident, junk), inner, max_size=3), max_leaves=8)


def maybe(specific: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly values of the right shape, sometimes anything at all."""
    return weighted((4, specific), (1, generic))


durations = st.sampled_from(["10s", "10x", "", "1m30s", "500ms", "s", "-1s", "1h",
                             5, 0, -1, 2.5, True, None, [1]])
thresholds: st.SearchStrategy[Any] = st.sampled_from([1, 3, 0, -1, 2.5, 3.0, "x", "2", True, None, [], {}])
probe = st.fixed_dictionaries({}, optional={
    "exec": maybe(st.fixed_dictionaries({"command": maybe(st.lists(st.sampled_from(["pg_isready", "-q", 1]),
                                                                   max_size=3))})),
    "tcp_socket": maybe(st.fixed_dictionaries({}, optional={
        "port": st.sampled_from([5432, 0, "x", 1.5, None])})),
    "period": durations, "timeout": durations, "initial_delay": durations,
    "failure_threshold": thresholds, "success_threshold": thresholds,
})
probes = st.dictionaries(st.sampled_from(["liveness", "readiness", "startup", "liveliness"]),
                         maybe(st.one_of(probe, st.lists(probe, min_size=2, max_size=2))), max_size=3)
ulimit_value = st.sampled_from(["1024:2048", "1024", "abc", "1:", ":", "1:x",
                                1024, -1, 1.5, 1024.0, True, None, [1]])
quantities = st.sampled_from(["2", "1.5", "500m", "0", "0m", "abc", "4Gi", "512Mi", "4G", "12", "",
                              2, 0.5, -1, True])
env_key = st.one_of(st.sampled_from(["FOO", "A_B", "PG_PRIMARY_ORDINAL", "1BAD", "a-b", "VOODU_REPLICA_ID"]),
                    ident)
list_item = st.one_of(st.sampled_from(["a:b", "/data:/x:ro", "nocolon", "db.internal:10.0.0.5", "SYS_PTRACE",
                                       "${asset.s.db.entrypoint}", "${asset.x}", "${asset.}",
                                       "${asset.a.b.c.d}", "x:${asset.s.db.nope}", ":", ""]),
                      junk, st.integers(-3, 3), st.booleans())

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "image": st.sampled_from(["postgres:16", "", "  ", "a b", "x\ny", "postgres:latest", "img@sha256:abc"]),
    "replicas": st.one_of(st.integers(-3, 6), st.sampled_from([2**70, 1.0, 2.5, Raw("1e400"), "3"])),
    "port": st.one_of(st.integers(-3, 70000), st.sampled_from([5432.0, 1e10, "5432"])),
    "database": st.sampled_from(["postgres", "appdata", "a-b", "1x", "", "_x", "x" * 64]),
    "user": st.sampled_from(["postgres", "appuser", "replicator", "a b", "", "Ü"]),
    "replication_user": st.sampled_from(["replicator", "postgres", "r", "-"]),
    "password": st.one_of(junk, st.sampled_from(["p@ss/w:rd%", "a\nb", ""])),
    "pg_config": st.dictionaries(st.one_of(st.sampled_from(["max_connections", "work_mem", "Bad", "a.b.c",
                                                            "x y", "pg_stat_statements.max"]), junk),
                                 scalar, max_size=3),
    "extensions": st.lists(st.one_of(st.sampled_from(["pg_trgm", "postgis", "bad-name", ""]), junk),
                           max_size=3),
    "initdb_locale": st.sampled_from(["C.UTF-8", "en_US.UTF-8", "", "a b", "x;rm -rf /"]),
    "initdb_encoding": st.sampled_from(["UTF8", "LATIN1", "", "a b"]),
    "synchronous": st.booleans(),
    "env": st.dictionaries(env_key, scalar, max_size=3),
    "volumes": st.lists(list_item, max_size=3),
    "extra_hosts": st.lists(list_item, max_size=3),
    "cap_add": st.lists(list_item, max_size=2),
    "command": st.lists(list_item, max_size=3),
    "ports": st.lists(st.sampled_from(["5432", "1:2:3"]), max_size=2),
    "restart": st.sampled_from(["always", "no", "unless-stopped", "", 1]),
    "resources": st.fixed_dictionaries({}, optional={
        "limits": maybe(st.fixed_dictionaries({}, optional={"cpu": quantities, "memory": quantities,
                                                            "gpu": quantities})),
        "requests": generic}),
    "probes": probes,
    "ulimits": st.dictionaries(st.sampled_from(["nofile", "nproc", "core"]), ulimit_value, max_size=2),
    "logs": st.fixed_dictionaries({}, optional={"max_size": st.sampled_from(["5m", "", 5, None, True]),
                                               "max_files": thresholds}),
    "volume_claims": st.lists(maybe(st.fixed_dictionaries({
        "name": st.sampled_from(["data", "extra", ""]), "mount_path": st.sampled_from(["/x", "rel", ""])})),
        max_size=2),
    "health_check": generic,
    "network": generic,
    "plugin": generic,
}
TYPOS = ["replica", "imag", "pg_conf", "envs", "probe", "ulimit", "log", "Replicas", "volume", "extra_host"]
FIELDS = sorted(FIELD_VALUES)
field_key = weighted((8, st.sampled_from(FIELDS)), (1, st.sampled_from(TYPOS)), (1, ident))


@st.composite
def body(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in draw(st.lists(field_key, max_size=6)):
        out[key] = draw(maybe(FIELD_VALUES[key]) if key in FIELD_VALUES else generic)
    return out


def hcl_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def hcl_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key) else hcl_string(key)


def hcl_value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return hcl_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{hcl_key(str(k))} = {hcl_value(v)}" for k, v in value.items()) + " }"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def hcl_body(fields: dict[str, Any], indent: str, draw: st.DrawFn) -> str:
    """Attributes, or nested blocks for maps (``probes { readiness { … } }``), as Voodu files write them."""
    lines = []
    for key, value in fields.items():
        plain_keys = isinstance(value, dict) and all(_IDENT.fullmatch(str(k)) for k in value)
        as_block = plain_keys and draw(st.booleans())
        if as_block:
            lines.append(f"{indent}{hcl_key(key)} {{\n{hcl_body(value, indent + '  ', draw)}{indent}}}\n")
        elif value and isinstance(value, list) and all(isinstance(v, dict) for v in value) \
                and draw(st.booleans()):
            for item in value:  # the same block repeated: hcl2 makes it a list
                lines.append(f"{indent}{hcl_key(key)} {{\n{hcl_body(item, indent + '  ', draw)}{indent}}}\n")
        else:
            lines.append(f"{indent}{hcl_key(key)} = {hcl_value(value)}\n")
    return "".join(lines)


labels = st.one_of(st.sampled_from(["s", "db", "clowk-lp", "x1"]),
                   st.sampled_from(["", "S", "a_b", "-x", "a b", "a/b"]), junk)


@st.composite
def hcl_file(draw: st.DrawFn) -> str:
    blocks = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(weighted((6, st.just("postgres")), (1, st.sampled_from(["deployment", "job"])),
                             (1, ident)))
        names = draw(st.lists(labels, max_size=3)) if draw(st.integers(0, 4)) == 0 else \
            [draw(st.sampled_from(["s", "clowk-lp"])), draw(st.sampled_from(["db", "cache", "db"]))]
        head = " ".join([kind, *(hcl_string(n) for n in names)])
        blocks.append(f"{head} {{\n{hcl_body(draw(body()), '  ', draw)}}}\n")
        if draw(st.integers(0, 5)) == 0:
            blocks.append(f"# {draw(printable_junk)}\n")
    text = "".join(blocks)
    if text and draw(st.integers(0, 4)) == 0:  # a typo somewhere in an otherwise sensible file
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["", "{", "}", '"', "=", "\n", "${", "[", "x"])) + \
            text[at + draw(st.integers(0, 3)):]
    return text


hcl_text = st.one_of(
    hcl_file(), hcl_file(), hcl_file(),
    st.text(alphabet=string.printable, max_size=200),
    st.text(max_size=100),
    st.builds(lambda t: 'postgres "s" "db" {' + t, st.text(alphabet=string.printable, max_size=100)),
)


# ------------------------------------------------------------------------------------------
# (a) HCL files through validate and render


def _kind_of_failure(err: str) -> str:
    if "invalid HCL" in err:
        return "syntax"
    if "not UTF-8" in err:
        return "encoding"
    return "spec problems" if "postgres" in err else "other"


def _check_apply_would_build(path: Path) -> None:
    """What validate accepts, apply's container build accepts too (every pod of a small cluster)."""
    from voodu_postgres.commands.files import read_files
    from voodu_postgres.reconciler.desired import derive
    from voodu_postgres.render.expansion import expand

    for contents in read_files([str(path)]):
        for spec in contents.specs:
            if spec.replicas > 5:
                spec = spec.model_copy(update={"replicas": 2})
            seeded = {k: v for a in expand(spec, {}).actions for k, v in (a.kv or {}).items()}
            derive(spec, seeded, assets_dir=Path("/nonexistent"), network="voodu0")


@FUZZ
@given(text=hcl_text, as_bytes=weighted((9, st.none()), (1, st.binary(max_size=40))))
def test_fuzz_hcl_validate_and_render(text: str, as_bytes: bytes | None) -> None:
    CASES["hcl"] += 1
    note(text)
    with scratch() as tmp:
        home, path = tmp / "home", tmp / "voodu.hcl"
        data = text.encode("utf-8") if as_bytes is None else text.encode("utf-8")[:20] + as_bytes
        path.write_bytes(data)
        before = state(home, tmp / "out")
        validated = run(["validate", "-f", str(path)])
        check(validated, before, state(home, tmp / "out"), files=[str(path)])
        assert state(home, tmp / "out") == before, "validate wrote something"
        rendered = run(["--home", str(home), "render", "-f", str(path), "-o", "json"])
        check(rendered, before, state(home, tmp / "out"), files=[str(path)])
        assert state(home, tmp / "out") == before, "render wrote something"
        assert rendered.code == validated.code, "validate and render disagree about the file"
        event(f"validate: exit {validated.code}"
              + (f", {_kind_of_failure(validated.err)}" if validated.code else ""))
        if validated.code == 0:
            _check_apply_would_build(path)
            json.loads(rendered.out)
        # apply reads files through a parse cache: a cold and a warm cache agree with no cache at all
        assert _load(path, None) == _load(path, home / "cache") == _load(path, home / "cache")


def _load(path: Path, cache_dir: Path | None) -> object:
    from voodu_postgres.commands.files import read_files
    from voodu_postgres.domain.errors import CommandError

    try:
        return [(c.specs, c.others, c.bodies) for c in read_files([str(path)], cache_dir=cache_dir)]
    except CommandError as exc:
        return str(exc)


# ------------------------------------------------------------------------------------------
# (b) expand requests


def _strict_json(text: str) -> Any:
    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} in the envelope: not JSON Voodu's controller can read")
    return json.loads(text, parse_constant=no_constants)


json_spec = weighted((3, body()), (1, generic))
bucket_keys = st.one_of(st.sampled_from(["POSTGRES_PASSWORD", "POSTGRES_REPLICATION_PASSWORD", "BACKUP_KEEP",
                                         "PG_PRIMARY_ORDINAL", "PG_EXPOSE_PUBLIC",
                                         "POSTGRES_LINKED_CONSUMERS"]), junk)
#: what Voodu sends: a postgres block with a plausible body, and the bucket as strings
sane_request = st.fixed_dictionaries({
    "kind": st.just("postgres"), "scope": st.sampled_from(["s", "clowk-lp", ""]),
    "name": st.sampled_from(["db", "x"]), "spec": body(),
}, optional={"config": st.dictionaries(
    bucket_keys, st.one_of(st.sampled_from(["", "0", "1", "true", "²", "-1"]), junk), max_size=4)})
request = st.fixed_dictionaries({}, optional={
    "kind": st.one_of(st.just("postgres"), st.sampled_from(["deployment", "", None, 1]), junk),
    "scope": st.one_of(st.sampled_from(["s", "clowk-lp", "", None, 1, "S", "a/b"]), junk),
    "name": st.one_of(st.sampled_from(["db", "x", "", " db ", None, 2, "a b"]), junk),
    "spec": json_spec,
    "config": st.one_of(st.dictionaries(st.one_of(st.sampled_from(["POSTGRES_PASSWORD", "PG_PRIMARY_ORDINAL",
                                                                   "PG_EXPOSE_PUBLIC", "BACKUP_KEEP"]), junk),
                                        scalar, max_size=4), generic),
})
overflow = st.sampled_from([float("nan"), float("inf"), -float("inf")])


@st.composite
def expand_stdin(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.integers(0, 11))
    if kind <= 7:
        doc = draw(sane_request if kind <= 5 else request)
        if kind == 7 and isinstance(doc.get("spec"), dict):  # NaN / Infinity: Python's json writes them
            doc["spec"][draw(st.sampled_from(["replicas", "port", "env", "probes"]))] = draw(overflow)
        text = json.dumps(doc)
        if draw(st.integers(0, 6)) == 0:
            text = text[:draw(st.integers(0, len(text)))]
        return text
    if kind == 8:
        return draw(st.text(max_size=60))
    if kind == 9:
        return draw(st.binary(max_size=60))
    if kind == 10:
        depth = draw(st.sampled_from([100, 500, 990, 5_000, 100_000]))
        key = draw(st.sampled_from(["inits", "env", "probes", "pg_config", "extra_hosts"]))
        deep = f'{{"name":"db","spec":{{"{key}":{"[" * depth}1{"]" * depth}}}}}'
        return draw(st.sampled_from([deep, "[" * depth, '{"name":' * depth,
                                     "null", "[]", '"x"', "1", " ", "\ufeff{}"]))
    return json.dumps(draw(generic))


@FUZZ
@given(stdin=expand_stdin(), with_flags=st.booleans())
def test_fuzz_expand_always_one_envelope(stdin: str | bytes, with_flags: bool) -> None:
    CASES["expand"] += 1
    with scratch() as tmp:
        home = tmp / "home"
        argv = ["--home", str(home), "expand"] if with_flags else ["expand"]
        result = run(argv, stdin=stdin, environ=PLUGIN_ENV)
        assert result.code in (0, 1) and result.err == ""
        assert result.out.endswith("\n") and result.out.count("\n") == 1, f"not one line: {result.out!r}"
        envelope = _strict_json(result.out)
        assert isinstance(envelope, dict)
        if result.code == 0:
            assert list(envelope) == ["status", "data"] and envelope["status"] == "ok"
            kinds = [m["kind"] for m in envelope["data"]["manifests"]]
            assert kinds == ["asset", "statefulset"]
        else:
            assert list(envelope) == ["status", "error"] and envelope["status"] == "error"
            assert isinstance(envelope["error"], str) and envelope["error"].strip()
            assert "run with --traceback" not in envelope["error"], f"unexpected exception: {envelope}"
        assert not home.exists(), "expand wrote to the home directory"
        reason = "" if result.code == 0 else ", spec problems" if envelope["error"].startswith("postgres ") \
            else f", {envelope['error'].split(':')[0][:40]}"
        event(f"expand: exit {result.code}{reason}")


# ------------------------------------------------------------------------------------------
# (c) config get / set / unset


config_ref = weighted((7, st.sampled_from(["s/db", "s", "/db", "s/web", " s/db ", "x" * 63])),
                      (2, st.sampled_from(["", "/", "s/", "a/b/c", "S/db", "s /db", "-s/db", "s/db-",
                                           "x" * 64])),
                      (1, arg_junk))
valid_key = st.one_of(st.sampled_from(["POSTGRES_PASSWORD", "POSTGRES_REPLICATION_PASSWORD", "BACKUP_KEEP",
                                       "PG_PRIMARY_ORDINAL", "PG_EXPOSE_PUBLIC", "DATABASE_URL",
                                       "BACKUP_MAX_AGE"]),
                      ident)
config_key = weighted((8, valid_key), (1, st.sampled_from(["1BAD", "a-b", "", "A=B", "-"])), (1, arg_junk))
config_value = weighted((4, st.sampled_from(["", "0", "1", "true", "²", "7d", "a=b"])), (2, st.just("-")),
                        (2, arg_junk))
key_value = st.builds(lambda k, v: f"{k}={v}", config_key, config_value)
pair = weighted((9, key_value), (1, config_key))
GOOD_HCL = 'postgres "s" "db" {\n  replicas = 2\n}\n'


@FUZZ
@given(action=st.sampled_from(["get", "set", "unset"]), ref=config_ref,
       items=weighted((5, st.lists(pair, min_size=1, max_size=3)), (1, st.lists(pair, max_size=4))),
       output=weighted((9, st.sampled_from([[], ["-o", "json"], ["-o", "text"]])),
                       (1, st.just(["-o", "yaml"]))),
       stdin=weighted((3, st.text(max_size=20)), (1, st.binary(max_size=8))),
       seeded=st.booleans(), applied=st.booleans())
def test_fuzz_config(action: str, ref: str, items: list[str], output: list[str], stdin: str | bytes,
                     seeded: bool, applied: bool) -> None:
    CASES["config"] += 1
    with scratch() as tmp:
        home = tmp / "home"
        store = SqliteStore(home)
        if seeded:
            store.patch("s", "db", {"POSTGRES_PASSWORD": "pw", "BACKUP_KEEP": "30",
                                    "PG_PRIMARY_ORDINAL": "0"})
            store.patch("s", "", {"BACKUP_MAX_AGE": "7d"})
        if applied:
            store.record_resource("s", "db", {"replicas": 2}, "voodu0")
        if action != "set":
            items = [i.partition("=")[0] for i in items]
        before = state(home)
        result = run(["--home", str(home), "config", action, ref, *items, *output], stdin=stdin)
        after = state(home)
        check(result, before, after)
        event(f"config {action}: exit {result.code}")
        if action == "get" or result.code != 0:
            assert after == before
            return
        if action == "set":
            scope, _, name = ref.strip().partition("/")
            stdin_line = io.StringIO(stdin if isinstance(stdin, str) else stdin.decode("utf-8", "replace"))
            expected: dict[str, str] = {}
            for item in items:
                key, _, value = item.partition("=")
                expected[key] = stdin_line.readline().rstrip("\n") if value == "-" else value
            own = store.own(scope, name)
            for key, value in expected.items():
                assert own.get(key, "") == value, f"{key}: stored {own.get(key)!r}, set {value!r}"
        # whatever the bucket now holds, the commands that read it keep the contract
        hcl = tmp / "v.hcl"
        hcl.write_text(GOOD_HCL)
        rendered = run(["--home", str(home), "render", "-f", str(hcl)])
        assert rendered.code == 0, rendered.err


# ------------------------------------------------------------------------------------------
# (d) whole command lines (commands that never reach Docker with these refs)


COMMANDS = ["validate", "render", "config", "defaults", "help", "expand", "link", "unlink", "expose",
            "unexpose", "psql", "new-password", "info", "promote", "failover", "rejoin", "delete",
            "reconcile"]
FLAGS = ["-f", "--file", "-o", "--output", "json", "text", "yaml", "--ref", "--out", "--dry-run", "--watch",
         "--interval", "-r", "--replica", "--force", "--no-restart", "--yes", "-y", "--prune", "--reads",
         "--load-balance", "--replication", "-c", "--command", "--", "--help", "-h", "--version", "--max-lag",
         "--lock-timeout", "--no-wait", "--timeout", "--network", "get", "set", "unset", "-", "--f", "-fo"]
VALUES = ["s/db", "db", "s/web", "S/DB", "a/b/c", "", "/", "0", "1", "-1", "1e400", "nan", "inf", "abc",
          "99999999999999999999", "KEY=VALUE", "BACKUP_KEEP=3", "POSTGRES_PASSWORD=x", "=", "SELECT 1"]


#: plausible command lines per command; upper-case words are placeholders filled by the fuzz
TEMPLATES: dict[str, list[list[str]]] = {
    "validate": [["-f", "FILE"], ["-f", "FILE", "-f", "FILE"], ["--file", "FILE", "-o", "OUTPUT"]],
    "render": [["-f", "FILE"], ["-f", "FILE", "--ref", "REF"],
               ["-f", "FILE", "--out", "OUTDIR", "-o", "OUTPUT"]],
    "config": [["get", "REF"], ["get", "REF", "KEY", "-o", "OUTPUT"], ["set", "REF", "PAIR"],
               ["set", "REF", "PAIR", "PAIR"], ["unset", "REF", "KEY"]],
    "defaults": [[], ["-o", "OUTPUT"]],
    "help": [[]],
    "expand": [[]],
    "link": [["REF", "REF"], ["REF", "REF", "--reads", "--load-balance", "-o", "OUTPUT"]],
    "unlink": [["REF", "REF"]],
    "expose": [["REF"], ["REF", "--no-wait", "--lock-timeout", "NUMBER"]],
    "unexpose": [["REF", "-o", "OUTPUT"]],
    "psql": [["REF"], ["REF", "-r", "NUMBER", "-c", "SQL"], ["REF", "--", "-c", "SQL"]],
    "new-password": [["REF"], ["REF", "--replication", "--no-restart"]],
    "info": [["REF", "-o", "OUTPUT"]],
    "promote": [["REF", "--replica", "NUMBER"],
                ["REF", "-r", "NUMBER", "--force", "--yes", "--max-lag", "NUMBER"]],
    "failover": [["REF", "-r", "NUMBER", "--force"]],
    "rejoin": [["REF", "-r", "NUMBER"]],
    "delete": [["REF", "--yes"], ["REF", "--prune", "-y", "--no-wait"]],
    "reconcile": [[], ["REF"], ["--dry-run", "-o", "OUTPUT"], ["--watch", "--interval", "NUMBER"],
                  ["REF", "--watch", "--dry-run"]],
}
NUMBERS = ["0", "1", "2", "-1", "1e400", "nan", "inf", "-inf", "abc", "99999999999999999999", "0x10", "1_000"]
CLI_REFS = ["s/db", "db", "s/web", "clowk-lp/db", "S/DB", "a/b/c", "", "/", " s/db", "s/", "-x"]


@st.composite
def command_line(draw: st.DrawFn, files: dict[str, str]) -> list[str]:
    fill = {
        "FILE": st.sampled_from(sorted(files.values())),
        "OUTDIR": st.sampled_from([files["out"], "abc", "-", files["good"], "/proc/x"]),
        "OUTPUT": st.sampled_from(["json", "text", "yaml", ""]), "NUMBER": st.sampled_from(NUMBERS),
        "REF": st.one_of(st.sampled_from(CLI_REFS), arg_junk), "KEY": config_key, "PAIR": pair,
        "SQL": st.sampled_from(["SELECT 1", "", "\\q"]),
    }
    token = st.one_of(st.sampled_from(COMMANDS), st.sampled_from(FLAGS), st.sampled_from(VALUES),
                      st.sampled_from(sorted(files.values())), arg_junk)
    if draw(st.integers(0, 5)):
        command = draw(st.sampled_from(sorted(TEMPLATES)))
        template = draw(st.sampled_from(TEMPLATES[command]))
        tokens = [command, *(draw(fill[t]) if t in fill else t for t in template)]
        for _ in range(draw(st.integers(0, 2))):  # a typo: a token inserted, dropped or replaced
            at = draw(st.integers(0, len(tokens)))
            tokens[at:at + draw(st.integers(0, 1))] = draw(st.lists(token, max_size=1))
    else:
        tokens = draw(st.lists(token, max_size=8))
    # the global flags the fuzz controls itself: --home (the scratch home; argparse takes any prefix
    # such as --ho), --traceback (re-raises by design)
    return [t for t in tokens if t != "--traceback" and (t == "--help" or not t.startswith("--h"))]


FILES = {"good": GOOD_HCL, "bad": 'postgres "s" "db" { replicas = 0\n port = 0 }\n',
         "syntax": 'postgres "s" {',
         "probe": 'postgres "s" "db" {\n  probes {\n    readiness {\n      period = "10x"\n    }\n  }\n}\n'}


@FUZZ
@given(data=st.data())
def test_fuzz_command_lines(data: st.DataObject) -> None:
    CASES["argv"] += 1
    with scratch() as tmp:
        home, out_dir, cwd = tmp / "home", tmp / "out", tmp / "cwd"
        paths = {name: str(tmp / f"{name}.hcl") for name in FILES}
        for name, text in FILES.items():
            Path(paths[name]).write_text(text)
        (tmp / "latin1.hcl").write_bytes('postgres "s" "db" { image = "café" }'.encode("latin-1"))
        paths |= {"latin1": str(tmp / "latin1.hcl"), "missing": str(tmp / "missing.hcl"), "dir": str(tmp),
                  "out": str(out_dir)}
        tokens = data.draw(command_line(paths))
        # the home starts empty: no ref is applied, so no command gets as far as Docker
        before = state(home, out_dir, cwd)
        result = run(["--home", str(home), *tokens], stdin=data.draw(st.sampled_from(["", "x\n", "{}"])))
        after = state(home, out_dir, cwd)
        if "expand" in tokens and result.err == "" and result.out.startswith('{"status"'):
            assert result.code in (0, 1) and result.out.count("\n") == 1  # expand's envelope, even standalone
            _strict_json(result.out)
            return
        # several lines are allowed for a report on files, each line naming one given on the command line
        named = {t for t in tokens} | {t[2:] for t in tokens if t.startswith("-f")} | \
            {t.split("=", 1)[1] for t in tokens if "=" in t}
        check(result, before, after, files=sorted(named))
        event(f"argv: exit {result.code}")
        if result.code != 0:
            assert after == before


# ------------------------------------------------------------------------------------------
# (e) plugin mode: the commands that answer before any controller call


PLUGIN_SAFE = ["validate", "render", "config", "apply", "reconcile", "delete", "promote", "failover",
               "rejoin", "defaults", "help"]
#: commands that ask the controller: given a dispatch context that can't be one, they stop before asking
PLUGIN_DISPATCH = ["info", "link", "unlink", "new-password", "expose", "unexpose", "psql"]
bad_context = st.one_of(
    st.binary(min_size=1, max_size=20).map(lambda b: b"\xff" + b),
    st.text(max_size=20).map(lambda t: "x" + t),
    st.sampled_from(["[]", "1", '"s"', "null", '{"controller_url":', '{"controller_url": 1}',
                     '{"plugin": []}', '{"command": {}}', "NaN"]),
)


@FUZZ
@given(command=st.sampled_from(PLUGIN_SAFE + PLUGIN_DISPATCH), data=st.data(),
       rest=st.lists(st.one_of(st.sampled_from(FLAGS + VALUES + CLI_REFS), arg_junk), max_size=5))
def test_fuzz_plugin_mode_answers_with_one_envelope(command: str, data: st.DataObject,
                                                     rest: list[str]) -> None:
    CASES["plugin"] += 1
    # argparse prints help and version as text; --home is the fuzz's own
    rest = [t for t in rest if t not in ("-h", "--help", "--version") and not t.startswith("--h")]
    stdin = data.draw(bad_context) if command in PLUGIN_DISPATCH else ""
    with scratch() as tmp:
        home = tmp / "home"
        result = run(["--home", str(home), command, *rest], stdin=stdin, environ=PLUGIN_ENV)
        assert result.code in (0, 1) and result.err == ""
        if command == "help" and result.code == 0:
            return  # the overview is text, in both modes
        assert result.out.count("\n") == 1, f"not one envelope line: {result.out!r}"
        envelope = _strict_json(result.out)
        assert envelope["status"] == ("ok" if result.code == 0 else "error")
        assert "run with --traceback" not in result.out
        assert not home.exists(), "a refused command wrote to the home directory"


# ------------------------------------------------------------------------------------------
# what the fuzzing found: each bug as one fixed example (every one failed before its fix)


PROBE_HCL = """\
postgres "s" "db" {
  probes {
    readiness {
      tcp_socket { port = 5432 }
      period = "10x"
    }
  }
  ulimits = { nofile = "abc" }
  extra_hosts = ["nocolon"]
}
"""


def test_a_file_that_is_not_utf8_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "v.hcl"
    path.write_bytes('postgres "s" "db" { image = "café" }\n'.encode("latin-1"))
    result = run(["validate", "-f", str(path)])
    assert (result.code, result.out) == (1, "")
    assert result.err == f"{path}: not UTF-8 text (byte 0xe9 at offset 32)\n"


def test_validate_reports_what_the_container_build_would_reject_one_line_per_field(tmp_path: Path) -> None:
    path = tmp_path / "v.hcl"
    path.write_text(PROBE_HCL)
    result = run(["validate", "-f", str(path)])
    assert result.code == 1 and result.out == ""
    assert result.err.splitlines() == [
        f'{path}: postgres s/db: probes: invalid duration "10x"',
        f'{path}: postgres s/db: ulimits: invalid ulimit nofile = "abc" (expected soft:hard)',
        f'{path}: postgres s/db: extra_hosts: invalid extra_hosts entry "nocolon" (expected host:address)',
    ]
    # render and apply load files the same way: they refuse it too, before anything is written
    home = tmp_path / "home"
    assert run(["--home", str(home), "render", "-f", str(path)]).err == result.err
    from voodu_postgres.commands.files import read_files
    from voodu_postgres.domain.errors import CommandError

    with pytest.raises(CommandError):
        read_files([str(path)], cache_dir=home / "cache")


@pytest.mark.parametrize("body,message", [
    ('ulimits = "x"', 'ulimits: expected a map such as { nofile = "1024:2048" }, got string'),
    ("ulimits = { nofile = [1] }", 'ulimits: nofile: expected "soft:hard" or an integer, got list'),
    ('logs = "x"', 'logs: expected a logs { max_size = "10m", max_files = 3 } block, got string'),
    ('logs { max_files = "abc" }', "logs: max_files: expected a whole number >= 1, got 'abc'"),
    ('probes {\n readiness {\n exec { command = "pg_isready" }\n }\n}',
     'probes: readiness.exec: expected { command = ["…", …] }'),
    ('probes {\n liveness {\n tcp_socket { port = "x" }\n }\n}',
     "probes: liveness.tcp_socket: expected { port = <integer> }"),
    ('probes {\n readiness {\n failure_threshold = "x"\n }\n}',
     "probes: readiness.failure_threshold: expected a whole number >= 1, got 'x'"),
    ("probes {\n readiness { period = 1 }\n readiness { period = 2 }\n}",
     "probes: readiness: expected one { … } block, got list"),
    ("probes {\n readiness {\n period = 1e400\n }\n}",
     "probes: a number is out of range (numbers must be finite)"),
    ('env = { A = 1e400 }', "env: a number is out of range (numbers must be finite)"),
    ('image = "x\\ny"', 'image: "x\\ny" is not an image reference (no spaces or control characters)'),
    ('database = "a\\nb"', 'database: "a\\nb" is not a valid postgres identifier'),
    ('pg_config = { "a\\u001fb" = 1 }', 'pg_config: key "a\\x1fb" is not a valid postgres parameter name'),
], ids=["ulimits-string", "ulimit-list", "logs-string", "max_files-string", "exec-command-string",
        "tcp-port-string", "threshold-string", "probe-twice", "period-overflow", "env-overflow",
        "image-newline", "database-newline",
        "pg_config-key-joiner"])
def test_shapes_the_container_build_needs_are_one_line_problems(tmp_path: Path, body: str,
                                                                message: str) -> None:
    """Before: validate passed these, and apply then crashed building the container (AttributeError,
    ValueError), built a healthcheck from the letters of a string, or printed a line break."""
    path = tmp_path / "v.hcl"
    path.write_text(f'postgres "s" "db" {{\n{body}\n}}\n')
    result = run(["validate", "-f", str(path)])
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"{path}: postgres s/db: {message}"), result.err


def _expand(stdin: str | bytes, *argv: str) -> dict[str, Any]:
    result = run([*argv, "expand"], stdin=stdin, environ=PLUGIN_ENV)
    assert result.out.count("\n") == 1 and result.err == ""
    envelope: dict[str, Any] = _strict_json(result.out)
    assert result.code == (0 if envelope["status"] == "ok" else 1)
    return envelope


def test_expand_refuses_what_is_not_json_instead_of_echoing_it() -> None:
    # NaN / Infinity used to pass through into the manifests: an envelope Go cannot decode
    nan = _expand('{"name":"db","spec":{"probes":{"readiness":{"period":NaN}}}}')
    assert nan == {"status": "error", "error": "decode expand request: NaN is not a JSON number"}
    assert _expand(b"\xff{}") == {"status": "error",
                                  "error": "decode expand request: not UTF-8 (byte 0xff at offset 0)"}
    deep = _expand('{"name":"db","spec":{"inits":' + "[" * 990 + "1" + "]" * 990 + "}}")
    assert deep["status"] == "error" and "nested too deeply" in deep["error"]
    assert _expand("[" * 100_000)["error"] == "decode expand request: nested too deeply"


def test_expand_after_global_flags_is_still_expand(tmp_path: Path) -> None:
    envelope = _expand('{"name":"db"}', "--home", str(tmp_path / "home"))
    assert envelope["status"] == "ok" and not (tmp_path / "home").exists()
    standalone = run(["--home", str(tmp_path / "home"), "expand"], stdin='{"name":"db"}')
    assert standalone.code == 0 and json.loads(standalone.out)["status"] == "ok"


def test_global_flags_alone_print_the_overview_and_create_nothing(tmp_path: Path) -> None:
    result = run(["--home", str(tmp_path / "home")])
    assert result.code == 0 and result.out.startswith("usage: voodu-postgres") and result.err == ""
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("argv,stdin,code,err", [
    (["defaults", "\x1b[31mred"], "", 2, "voodu-postgres: unrecognized arguments: \\x1b[31mred\n"),
    (["info", "a\nb"], "", 2, 'invalid ref "a\\nb": name "a\\nb" must be a DNS label'),
    (["config", "get", "s/db", "A\nB"], "", 2, 'config get: "A\\nB" is not a valid key\n'),
    (["config", "set", "My App", "K=v"], "", 2,
     'config: invalid ref "My App": scope "My App" must be a DNS label'),
    (["config", "set", "S/db", "K=v"], "", 2, 'config: invalid ref "S/db": scope "S" must be a DNS label'),
    (["config", "set", "s/db", "K=-"], b"\xff\n", 1, "config set: the value of K is not UTF-8 text\n"),
    (["config", "set", "s/db", "K=\udcff"], "", 1, "config set: the value of K is not UTF-8 text\n"),
], ids=["argparse-escape", "ref-newline", "config-key-newline", "config-ref-space", "config-ref-upper",
        "config-stdin-not-utf8", "config-argv-not-utf8"])
def test_one_printable_line_and_nothing_written(tmp_path: Path, argv: list[str], stdin: str | bytes,
                                                code: int, err: str) -> None:
    home = tmp_path / "home"
    SqliteStore(home)
    before = state(home)
    result = run(["--home", str(home), *argv], stdin=stdin)
    assert result.code == code and result.err.startswith(err), result.err
    check(result, before, state(home))


def test_render_out_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    hcl = tmp_path / "v.hcl"
    hcl.write_text(GOOD_HCL)
    result = run(["--home", str(tmp_path / "home"), "render", "-f", str(hcl), "--out", str(hcl)])
    assert (result.code, result.err) == (1, f"render: cannot write {hcl}/s/db: Not a directory\n")


def test_plugin_dispatch_stdin_that_is_not_utf8_is_an_error_envelope() -> None:
    result = run(["info", "s/db"], stdin=b"\xff", environ=PLUGIN_ENV)
    assert result.code == 1 and result.err == ""
    assert json.loads(result.out) == {"status": "error",
                                      "error": "decode stdin: not UTF-8 text (byte 0xff at offset 0)"}
