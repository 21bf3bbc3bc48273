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
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from voodu_postgres.cli import main
from voodu_postgres.commands.base import Env
from voodu_postgres.reconciler.store import SqliteStore

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
    note(f"argv={list(argv)!r} → exit {code}\nstdout={out.getvalue()[:2000]!r}\nstderr={err.getvalue()!r}")
    return Outcome(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class State:
    tables: tuple[tuple[str, ...], ...]  # bucket, resource, lease rows (empty when there is no store)
    files: frozenset[str]


def state(*dirs: Path) -> State:
    """The store's rows, and every file under ``dirs`` that is not the store or the parse cache."""
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
            if path.is_file():
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
            assert any(line.startswith(f"{f}:") for f in files), f"line does not name its file: {line!r}"
    assert after == before, "a rejected input changed the state"


# ------------------------------------------------------------------------------------------
# strategies: values, HCL text


class Raw(str):
    """HCL source text used as is (an expression, an overflowing number)."""


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """``one_of`` with weights (hypothesis treats a repeated branch as one)."""
    table = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


junk = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
#: what a real argv can hold: anything but NUL
arg_junk = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
printable_junk = st.text(alphabet=string.printable, max_size=12)
ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-5, 70000),
                   st.floats(allow_nan=False, allow_infinity=False), junk, printable_junk)
generic = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.one_of(ident, junk), inner, max_size=3), max_leaves=8)


def maybe(specific: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly values of the right shape, sometimes anything at all."""
    return weighted((4, specific), (1, generic))


durations = st.sampled_from(["10s", "10x", "", "1m30s", "500ms", "s", "-1s", "1h", 5, 0, -1, 2.5, True, None, [1]])
thresholds = st.sampled_from([1, 3, 0, -1, 2.5, 3.0, "x", "2", True, None, [], {}])
probe = st.fixed_dictionaries({}, optional={
    "exec": maybe(st.fixed_dictionaries({"command": maybe(st.lists(st.sampled_from(["pg_isready", "-q", 1]),
                                                                   max_size=3))})),
    "tcp_socket": maybe(st.fixed_dictionaries({}, optional={"port": st.sampled_from([5432, 0, "x", 1.5, None])})),
    "period": durations, "timeout": durations, "initial_delay": durations,
    "failure_threshold": thresholds, "success_threshold": thresholds,
})
probes = st.dictionaries(st.sampled_from(["liveness", "readiness", "startup", "liveliness"]),
                         maybe(st.one_of(probe, st.lists(probe, min_size=2, max_size=2))), max_size=3)
ulimit_value = st.sampled_from(["1024:2048", "1024", "abc", "1:", ":", "1:x", 1024, -1, 1.5, 1024.0, True, None, [1]])
quantities = st.sampled_from(["2", "1.5", "500m", "0", "0m", "abc", "4Gi", "512Mi", "4G", "12", "", 2, 0.5, -1, True])
env_key = st.one_of(st.sampled_from(["FOO", "A_B", "PG_PRIMARY_ORDINAL", "1BAD", "a-b", "VOODU_REPLICA_ID"]), ident)
list_item = st.one_of(st.sampled_from(["a:b", "/data:/x:ro", "nocolon", "db.internal:10.0.0.5", "SYS_PTRACE",
                                       "${asset.s.db.entrypoint}", "${asset.x}", "${asset.}", "${asset.a.b.c.d}",
                                       "x:${asset.s.db.nope}", ":", ""]),
                      junk, st.integers(-3, 3), st.booleans())

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "image": st.sampled_from(["postgres:16", "", "  ", "a b", "x\ny", "postgres:latest", "img@sha256:abc"]),
    "replicas": st.one_of(st.integers(-3, 6), st.sampled_from([2**70, 1.0, 2.5, Raw("1e400"), "3"])),
    "port": st.one_of(st.integers(-3, 70000), st.sampled_from([5432.0, 1e10, "5432"])),
    "database": st.sampled_from(["postgres", "appdata", "a-b", "1x", "", "_x", "x" * 64]),
    "user": st.sampled_from(["postgres", "appuser", "replicator", "a b", "", "Ü"]),
    "replication_user": st.sampled_from(["replicator", "postgres", "r", "-"]),
    "password": st.one_of(junk, st.sampled_from(["p@ss/w:rd%", "a\nb", ""])),
    "pg_config": st.dictionaries(st.one_of(st.sampled_from(["max_connections", "work_mem", "pg_stat_statements.max",
                                                            "Bad", "a.b.c", "x y"]), junk),
                                 scalar, max_size=3),
    "extensions": st.lists(st.one_of(st.sampled_from(["pg_trgm", "postgis", "bad-name", ""]), junk), max_size=3),
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
    "volume_claims": st.lists(maybe(st.fixed_dictionaries({"name": st.sampled_from(["data", "extra", ""]),
                                                           "mount_path": st.sampled_from(["/x", "rel", ""])})),
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


def hcl_body(fields: dict[str, Any], indent: str, draw: st.DrawFn) -> str:
    """Attributes, or nested blocks for maps (``probes { readiness { … } }``), as Voodu files write them."""
    lines = []
    for key, value in fields.items():
        as_block = (isinstance(value, dict) and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)) for k in value)
                    and draw(st.booleans()))
        if as_block:
            lines.append(f"{indent}{hcl_key(key)} {{\n{hcl_body(value, indent + '  ', draw)}{indent}}}\n")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value) and draw(st.booleans()):
            for item in value:  # the same block repeated: hcl2 makes it a list
                lines.append(f"{indent}{hcl_key(key)} {{\n{hcl_body(item, indent + '  ', draw)}{indent}}}\n")
        else:
            lines.append(f"{indent}{hcl_key(key)} = {hcl_value(value)}\n")
    return "".join(lines)


labels = st.one_of(st.sampled_from(["s", "db", "clowk-lp", "x1"]), st.sampled_from(["", "S", "a_b", "-x", "a b", "a/b"]),
                   junk)


@st.composite
def hcl_file(draw: st.DrawFn) -> str:
    blocks = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(weighted((6, st.just("postgres")), (1, st.sampled_from(["deployment", "job"])), (1, ident)))
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
    from voodu_postgres.reconciler.expand import expand

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
        event(f"validate: exit {validated.code}" + (f", {_kind_of_failure(validated.err)}" if validated.code else ""))
        if validated.code == 0:
            _check_apply_would_build(path)
            json.loads(rendered.out)


# ------------------------------------------------------------------------------------------
# (b) expand requests


def _strict_json(text: str) -> Any:
    def no_constants(name: str) -> Any:
        raise AssertionError(f"{name} in the envelope: not JSON Voodu's controller can read")
    return json.loads(text, parse_constant=no_constants)


json_spec = weighted((3, body()), (1, generic))
bucket_keys = st.one_of(st.sampled_from(["POSTGRES_PASSWORD", "POSTGRES_REPLICATION_PASSWORD", "PG_PRIMARY_ORDINAL",
                                        "PG_EXPOSE_PUBLIC", "BACKUP_KEEP", "POSTGRES_LINKED_CONSUMERS"]), junk)
#: what Voodu sends: a postgres block with a plausible body, and the bucket as strings
sane_request = st.fixed_dictionaries({
    "kind": st.just("postgres"), "scope": st.sampled_from(["s", "clowk-lp", ""]), "name": st.sampled_from(["db", "x"]),
    "spec": body(),
}, optional={"config": st.dictionaries(bucket_keys, st.one_of(st.sampled_from(["", "0", "1", "true", "²", "-1"]),
                                                              junk), max_size=4)})
request = st.fixed_dictionaries({}, optional={
    "kind": st.one_of(st.just("postgres"), st.just("postgres"), st.sampled_from(["deployment", "", None, 1]), junk),
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
        return draw(st.sampled_from(["[" * 100_000, '{"name":' * 50_000, "null", "[]", '"x"', "1", " ", "\ufeff{}"]))
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
            assert "run with --traceback" not in envelope["error"], f"unexpected exception: {envelope['error']}"
        assert not home.exists(), "expand wrote to the home directory"
        reason = "" if result.code == 0 else ", spec problems" if envelope["error"].startswith("postgres ") \
            else f", {envelope['error'].split(':')[0][:40]}"
        event(f"expand: exit {result.code}{reason}")


# ------------------------------------------------------------------------------------------
# (c) config get / set / unset


config_ref = weighted((7, st.sampled_from(["s/db", "s", "/db", "s/web", " s/db ", "x" * 63])),
                      (2, st.sampled_from(["", "/", "s/", "a/b/c", "S/db", "s /db", "-s/db", "s/db-", "x" * 64])),
                      (1, arg_junk))
valid_key = st.one_of(st.sampled_from(["POSTGRES_PASSWORD", "POSTGRES_REPLICATION_PASSWORD", "BACKUP_KEEP",
                                       "PG_PRIMARY_ORDINAL", "PG_EXPOSE_PUBLIC", "DATABASE_URL", "BACKUP_MAX_AGE"]),
                      ident)
config_key = weighted((8, valid_key), (1, st.sampled_from(["1BAD", "a-b", "", "A=B", "-"])), (1, arg_junk))
config_value = st.one_of(st.sampled_from(["", "-", "0", "1", "true", "²", "7d", "a=b"]), arg_junk)
key_value = st.builds(lambda k, v: f"{k}={v}", config_key, config_value)
pair = weighted((9, key_value), (1, config_key))
GOOD_HCL = 'postgres "s" "db" {\n  replicas = 2\n}\n'


@FUZZ
@given(action=st.sampled_from(["get", "set", "unset"]), ref=config_ref,
       items=weighted((5, st.lists(pair, min_size=1, max_size=3)), (1, st.lists(pair, max_size=4))),
       output=weighted((9, st.sampled_from([[], ["-o", "json"], ["-o", "text"]])), (1, st.just(["-o", "yaml"]))),
       stdin=st.text(max_size=20),
       seeded=st.booleans(), applied=st.booleans())
def test_fuzz_config(action: str, ref: str, items: list[str], output: list[str], stdin: str, seeded: bool,
                     applied: bool) -> None:
    CASES["config"] += 1
    with scratch() as tmp:
        home = tmp / "home"
        store = SqliteStore(home)
        if seeded:
            store.patch("s", "db", {"POSTGRES_PASSWORD": "pw", "BACKUP_KEEP": "30", "PG_PRIMARY_ORDINAL": "0"})
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
        elif action == "set":
            scope, _, name = ref.strip().partition("/")
            stdin_line = io.StringIO(stdin)
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


COMMANDS = ["validate", "render", "config", "defaults", "help", "expand", "link", "unlink", "expose", "unexpose",
            "psql", "new-password", "info", "promote", "failover", "rejoin", "delete", "reconcile"]
FLAGS = ["-f", "--file", "-o", "--output", "json", "text", "yaml", "--ref", "--out", "--dry-run", "--watch",
         "--interval", "-r", "--replica", "--force", "--no-restart", "--yes", "-y", "--prune", "--reads",
         "--load-balance", "--replication", "-c", "--command", "--", "--help", "-h", "--version", "--max-lag",
         "--lock-timeout", "--no-wait", "--timeout", "--network", "get", "set", "unset", "-", "--f", "-fo"]
VALUES = ["s/db", "db", "s/web", "S/DB", "a/b/c", "", "/", "0", "1", "-1", "1e400", "nan", "inf", "abc",
          "99999999999999999999", "KEY=VALUE", "BACKUP_KEEP=3", "POSTGRES_PASSWORD=x", "=", "SELECT 1"]


#: plausible command lines per command; upper-case words are placeholders filled by the fuzz
TEMPLATES: dict[str, list[list[str]]] = {
    "validate": [["-f", "FILE"], ["-f", "FILE", "-f", "FILE"], ["--file", "FILE", "-o", "OUTPUT"]],
    "render": [["-f", "FILE"], ["-f", "FILE", "--ref", "REF"], ["-f", "FILE", "--out", "OUTDIR", "-o", "OUTPUT"]],
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
    "promote": [["REF", "--replica", "NUMBER"], ["REF", "-r", "NUMBER", "--force", "--yes", "--max-lag", "NUMBER"]],
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
        "FILE": st.sampled_from(sorted(files.values())), "OUTDIR": st.sampled_from([files["out"], "abc", "-", files["good"], "/proc/x"]),
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


FILES = {"good": GOOD_HCL, "bad": 'postgres "s" "db" { replicas = 0\n port = 0 }\n', "syntax": 'postgres "s" {',
         "probe": 'postgres "s" "db" {\n  probes {\n    readiness {\n      period = "10x"\n    }\n  }\n}\n'}


@FUZZ
@given(data=st.data())
def test_fuzz_command_lines(data: st.DataObject) -> None:
    CASES["argv"] += 1
    with scratch() as tmp:
        home, out_dir = tmp / "home", tmp / "out"
        paths = {name: str(tmp / f"{name}.hcl") for name in FILES}
        for name, text in FILES.items():
            Path(paths[name]).write_text(text)
        (tmp / "latin1.hcl").write_bytes('postgres "s" "db" { image = "café" }'.encode("latin-1"))
        paths |= {"latin1": str(tmp / "latin1.hcl"), "missing": str(tmp / "missing.hcl"), "dir": str(tmp),
                  "out": str(out_dir)}
        tokens = data.draw(command_line(paths))
        SqliteStore(home)  # an empty store: no ref is applied, so no command gets as far as Docker
        before = state(home, out_dir)
        result = run(["--home", str(home), *tokens], stdin=data.draw(st.sampled_from(["", "x\n", "{}"])))
        after = state(home, out_dir)
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


PLUGIN_SAFE = ["validate", "render", "config", "apply", "reconcile", "delete", "promote", "failover", "rejoin",
               "defaults", "help"]


@FUZZ
@given(command=st.sampled_from(PLUGIN_SAFE), rest=st.lists(st.one_of(st.sampled_from(FLAGS + VALUES), arg_junk),
                                                         max_size=5))
def test_fuzz_plugin_mode_answers_with_one_envelope(command: str, rest: list[str]) -> None:
    CASES["plugin"] += 1
    # argparse prints help and version as text; --home is the fuzz's own
    rest = [t for t in rest if t not in ("-h", "--help", "--version") and not t.startswith("--h")]
    with scratch() as tmp:
        home = tmp / "home"
        result = run(["--home", str(home), command, *rest], environ=PLUGIN_ENV)
        assert result.code in (0, 1) and result.err == ""
        if command == "help" and result.code == 0:
            return  # the overview is text, in both modes
        assert result.out.count("\n") == 1, f"not one envelope line: {result.out!r}"
        envelope = _strict_json(result.out)
        assert envelope["status"] == ("ok" if result.code == 0 else "error")
        assert "run with --traceback" not in result.out
        assert not home.exists(), "a refused command wrote to the home directory"
