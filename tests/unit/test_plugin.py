"""The Voodu plugin surface: plugin.yml, the bin/ entry point, and the expand round trip."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def plugin_yml() -> str:
    return (ROOT / "plugin.yml").read_text()


def test_manifest_names_the_block_type_alias_and_entrypoint() -> None:
    text = plugin_yml()
    assert re.search(r"^name: postgres$", text, re.M)
    assert re.search(r"^aliases: \[pg\]$", text, re.M)
    assert re.search(r"^entrypoint: bin/voodu-postgres$", text, re.M)
    version = re.search(r"^version: (\S+)$", text, re.M)
    from voodu_postgres import __version__
    assert version and version.group(1) == __version__


def test_declared_commands_are_handled() -> None:
    declared = re.findall(r"^  - name: (\S+)$", plugin_yml(), re.M)
    assert "expand" in declared and "help" in declared
    for command in declared:
        if command == "expand":
            continue
        proc = run_entry(command)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)


def run_entry(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VOODU_PLUGIN_DIR": str(ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([str(ROOT / "bin" / "voodu-postgres"), *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=ROOT, check=False)


def test_bin_entry_point_expands_like_voodu_calls_it() -> None:
    request = {"kind": "postgres", "scope": "x", "name": "y", "spec": {"replicas": 3}}
    proc = run_entry("expand", stdin=json.dumps(request))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, "exactly one JSON document on stdout"
    data = json.loads(lines[0])["data"]
    assert [m["kind"] for m in data["manifests"]] == ["asset", "statefulset"]
    assert [next(iter(a["kv"])) for a in data["actions"]] == [
        "POSTGRES_PASSWORD", "POSTGRES_REPLICATION_PASSWORD", "PG_PRIMARY_ORDINAL", "BACKUP_KEEP"]


def test_bin_entry_point_error_is_an_envelope_on_stdout() -> None:
    proc = run_entry("expand", stdin=json.dumps({"name": "y", "spec": {"replicas": "three"}}))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["status"] == "error"


def test_hooks_are_executable() -> None:
    for name in ("install", "uninstall", "bin/voodu-postgres"):
        assert os.access(ROOT / name, os.X_OK), name
