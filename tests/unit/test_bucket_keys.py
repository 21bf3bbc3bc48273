"""The bucket's key names live in one module (``domain/keys.py``): a key spelled anywhere else
would silently stop matching the day it is renamed there."""

from __future__ import annotations

import ast
from pathlib import Path

import voodu_postgres
from voodu_postgres.domain import keys

PACKAGE = Path(voodu_postgres.__file__).parent
KEY_NAMES = {value for name, value in vars(keys).items() if name.endswith("_KEY") and isinstance(value, str)}


def test_the_key_module_names_every_bucket_key_once() -> None:
    names = [value for name, value in vars(keys).items() if name.endswith("_KEY")]
    assert len(names) == len(set(names)) >= 12


def test_no_other_module_spells_a_bucket_key() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "domain" / "keys.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in KEY_NAMES:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value}")
    assert offenders == [], "use the constant from voodu_postgres.domain.keys"
