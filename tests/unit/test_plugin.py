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


def cli_commands() -> set[str]:
    import argparse

    from voodu_postgres.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices) | {"expand", "help"}


def test_plugin_yml_declares_exactly_the_cli_commands() -> None:
    from voodu_postgres.cli import COMMANDS

    declared = re.findall(r"^  - name: (\S+)$", plugin_yml(), re.M)
    assert len(declared) == len(set(declared)), "a command is declared twice"
    assert set(declared) == cli_commands(), "plugin.yml and the CLI disagree on the command list"
    assert set(COMMANDS) == cli_commands()


def test_every_declared_command_answers_help_through_the_entry_point() -> None:
    for command in re.findall(r"^  - name: (\S+)$", plugin_yml(), re.M):
        if command == "expand":
            continue
        proc = run_entry(command, "--help")
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        assert proc.stdout.strip(), command


def test_standalone_only_commands_refuse_under_voodu_with_one_line() -> None:
    proc = run_entry("apply", "-f", "x.hcl")
    assert proc.returncode == 1
    envelope = json.loads(proc.stdout)
    assert envelope["status"] == "error" and "vd apply" in envelope["error"]


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


def test_plugin_yml_command_list_is_generated_from_the_registry() -> None:
    from voodu_postgres.cli.registry import plugin_yml_commands

    text = plugin_yml()
    assert text[text.index("commands:\n"):] == plugin_yml_commands(), "run scripts/gen-plugin-yml.py"


def test_registry_rows_say_how_each_command_behaves_under_voodu() -> None:
    from voodu_postgres.cli.registry import BY_NAME, PLUGIN_COMMANDS

    for name, row in BY_NAME.items():
        standalone = row.standalone_only is not None
        assert (name in PLUGIN_COMMANDS) is not standalone
        if standalone:  # plugin.yml tells Voodu users the same
            assert "standalone only" in (row.plugin_help or "") or name != row.name
