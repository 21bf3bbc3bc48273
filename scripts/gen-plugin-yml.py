#!/usr/bin/env python3
"""Rewrite plugin.yml's command list from the CLI registry (voodu_postgres/cli/registry.py).
A unit test fails when the file and the registry disagree; run this after adding a command."""

from __future__ import annotations

from pathlib import Path

from voodu_postgres.cli.registry import plugin_yml_commands

path = Path(__file__).resolve().parent.parent / "plugin.yml"
text = path.read_text(encoding="utf-8")
head = text[: text.index("commands:\n")]
path.write_text(head + plugin_yml_commands(), encoding="utf-8")
print(f"wrote {path}")
