"""Quoting values into SQL text: the one place string literals and identifiers are escaped
(standard_conforming_strings on, as every supported server has it). Pure."""

from __future__ import annotations


def literal(text: str) -> str:
    """``text`` as an SQL string literal, inner single quotes doubled."""
    return "'" + text.replace("'", "''") + "'"


def ident(text: str) -> str:
    """``text`` as a quoted SQL identifier, inner double quotes doubled."""
    return '"' + text.replace('"', '""') + '"'
