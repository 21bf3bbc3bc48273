"""The CLI in-process: exit codes, one-line errors, envelopes, secrets kept out of output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from voodu_postgres.cli import main
from voodu_postgres.commands.base import Env


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def run(*argv: str, stdin: str = "", environ: dict[str, str] | None = None, home: Path | None = None) -> Run:
    env = Env(stdin=io.StringIO(stdin), stdout=io.StringIO(), stderr=io.StringIO(),
              environ=environ if environ is not None else {})
    args = list(argv)
    if home is not None:
        args = ["--home", str(home), *args]
    code = main(args, env)
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    return Run(code, env.stdout.getvalue(), env.stderr.getvalue())


def expand_request(**fields: Any) -> str:
    return json.dumps(fields)


def test_expand_first_apply_then_no_actions() -> None:
    first = run("expand", stdin=expand_request(kind="postgres", scope="x", name="y", spec={"replicas": 3}))
    assert first.code == 0 and first.err == ""
    envelope = json.loads(first.out)
    assert envelope["status"] == "ok" and list(envelope) == ["status", "data"]
    data = envelope["data"]
    assert [m["kind"] for m in data["manifests"]] == ["asset", "statefulset"]
    assert data["manifests"][1]["spec"]["replicas"] == 3
    assert len(data["actions"]) == 4
    config = {k: v for a in data["actions"] for k, v in a["kv"].items()}
    again = json.loads(run("expand", stdin=expand_request(kind="postgres", scope="x", name="y",
                                                          spec={"replicas": 3}, config=config)).out)
    assert "actions" not in again["data"]


@pytest.mark.parametrize("stdin,needle", [
    ("{not json", "decode expand request"),
    (json.dumps({"kind": "postgres", "scope": "x"}), "expand request missing required field 'name'"),
    (json.dumps({"name": "y", "spec": [1]}), "decode block spec"),
    (json.dumps({"name": "y", "spec": {"replicas": 0, "port": 0}}), "postgres y: replicas"),
])
def test_expand_errors_are_envelopes_with_exit_1(stdin: str, needle: str) -> None:
    result = run("expand", stdin=stdin)
    assert result.code == 1
    envelope = json.loads(result.out)
    assert envelope["status"] == "error" and needle in envelope["error"] and "\n" not in envelope["error"]


def test_validate_reports_every_problem_one_line_each(tmp_path: Path) -> None:
    bad = tmp_path / "voodu.hcl"
    bad.write_text('postgres "s" "db" {\n replicas = 0\n port = 0\n user = "a-b"\n database = "1x"\n'
                   ' pg_config = { "Bad" = 1 }\n}\n')
    result = run("validate", "-f", str(bad))
    assert result.code == 1 and result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 5 and "Traceback" not in result.err


def test_validate_ok_and_other_blocks_listed(tmp_path: Path) -> None:
    good = tmp_path / "voodu.hcl"
    good.write_text('postgres "s" "db" { replicas = 3 }\ndeployment "s" "web" { image = "x" }\n')
    result = run("validate", "-f", str(good))
    assert result.code == 0 and "postgres s/db: 1 primary + 2 standby(s)" in result.out
    assert "deployment s/web: not a postgres block" in result.out


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    result = run("validate", "-f", str(tmp_path / "nope.hcl"))
    assert result.code == 1 and result.err.count("\n") == 1 and "cannot read" in result.err


def test_unknown_flag_is_a_usage_error() -> None:
    result = run("validate", "--frobnicate")
    assert result.code == 2 and result.err.count("\n") == 1


def test_config_set_get_unset_and_secret_redaction(tmp_path: Path) -> None:
    assert run("config", "set", "s/db", "POSTGRES_PASSWORD=topsecret", "BACKUP_KEEP=7", home=tmp_path).code == 0
    assert run("config", "set", "s", "BACKUP_MAX_AGE=7d", home=tmp_path).code == 0
    listing = run("config", "get", "s/db", home=tmp_path)
    assert "topsecret" not in listing.out and "POSTGRES_PASSWORD=<redacted>" in listing.out
    assert "BACKUP_MAX_AGE=7d" in listing.out and "BACKUP_KEEP=7" in listing.out
    assert run("config", "get", "s/db", "POSTGRES_PASSWORD", home=tmp_path).out == "topsecret\n"
    as_json = json.loads(run("config", "get", "s/db", "POSTGRES_PASSWORD", "-o", "json", home=tmp_path).out)
    assert as_json == {"POSTGRES_PASSWORD": "topsecret"}
    assert run("config", "unset", "s/db", "BACKUP_KEEP", home=tmp_path).code == 0
    missing = run("config", "get", "s/db", "BACKUP_KEEP", home=tmp_path)
    assert missing.code == 1 and "not set: BACKUP_KEEP" in missing.err


def test_config_set_never_echoes_values_and_reads_dash_from_stdin(tmp_path: Path) -> None:
    result = run("config", "set", "s/db", "POSTGRES_PASSWORD=-", stdin="from-stdin\n", home=tmp_path)
    assert result.code == 0 and "from-stdin" not in result.out
    assert run("config", "get", "s/db", "POSTGRES_PASSWORD", home=tmp_path).out == "from-stdin\n"


def test_config_bad_pair_is_usage_error(tmp_path: Path) -> None:
    assert run("config", "set", "s/db", "NOEQUALS", home=tmp_path).code == 2
    assert run("config", "get", "s/", home=tmp_path).code == 2


def test_render_redacts_and_shows_pending_seed(tmp_path: Path) -> None:
    hcl = tmp_path / "v.hcl"
    hcl.write_text('postgres "s" "db" { replicas = 2 }\n')
    result = run("render", "-f", str(hcl), "-o", "json", "--out", str(tmp_path / "out"), home=tmp_path / "h")
    assert result.code == 0
    item = json.loads(result.out)[0]
    assert item["statefulset"]["spec"]["env"]["POSTGRES_PASSWORD"] == "<redacted>"
    assert any("POSTGRES_PASSWORD" in line for line in item["actions"])
    assert (tmp_path / "out" / "s" / "db" / "entrypoint").read_text().startswith("#!/bin/bash")


def test_defaults_text_and_plugin_envelope() -> None:
    assert 'postgres "scope" "name" {' in run("defaults").out
    envelope = json.loads(run("defaults", environ={"VOODU_PLUGIN_DIR": "/opt/voodu/plugins/postgres"}).out)
    assert envelope["status"] == "ok" and envelope["data"]["replicas"] == 1


def test_plugin_mode_errors_are_envelopes_on_stdout(tmp_path: Path) -> None:
    result = run("validate", "-f", str(tmp_path / "nope.hcl"), environ={"VOODU_PLUGIN_DIR": "/x"})
    assert result.code == 1 and json.loads(result.out)["status"] == "error"


def test_console_script_runs_as_a_real_process() -> None:
    proc = subprocess.run([sys.executable, "-m", "voodu_postgres", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip()


def test_sigterm_unwinds_like_ctrl_c_then_ends_the_process_by_sigterm(tmp_path: Path) -> None:
    """A stop from systemd must release what the command holds (finally blocks run) and still be
    seen as death by SIGTERM (which systemd counts as a clean stop)."""
    import signal
    import time

    marker = tmp_path / "unwound"
    program = (
        "import time, voodu_postgres.cli as cli\n"
        "def main():\n"
        "    try:\n"
        "        print('ready', flush=True); time.sleep(30); return 0\n"
        "    except KeyboardInterrupt:\n"
        f"        open({str(marker)!r}, 'w').write('yes'); return 130\n"
        "cli.main = main\n"
        "cli.entry()\n")
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    begun = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == -signal.SIGTERM and time.monotonic() - begun < 5
    assert marker.read_text() == "yes"
