"""Reading ``voodu.hcl`` files: HCL text → blocks in Voodu's JSON shape → validated specs.

python-hcl2 8.x is pinned because its output shape changed between majors (stack.md §4.5). We
ask it for stripped string quotes and *explicit* block markers: the ``__is_block__`` marker is
the only reliable way to tell where a block's labels end and its body begins
(``postgres "db" { pg_config = {…} }`` would otherwise look like two labels).

The body is then converted to the shape Voodu's CLI sends to ``expand``: a nested block that
appears once becomes an object, several become a list of objects; attribute maps stay maps.
So the same validator serves both the standalone CLI and the plugin protocol.

Pure apart from parsing a string: callers read the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

from voodu_postgres.domain.errors import VooduError
from voodu_postgres.domain.spec import PostgresSpec

_BLOCK = "__is_block__"
_OPTIONS = SerializationOptions(
    strip_string_quotes=True,
    explicit_blocks=True,
    with_comments=False,
    preserve_scientific_notation=False,
)


class HCLSyntaxError(VooduError, ValueError):
    """The file is not valid HCL; the message is one line with file:line:column."""


@dataclass(frozen=True)
class Block:
    """One top-level block: its type, labels resolved to scope/name, and body."""

    kind: str
    scope: str
    name: str
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.scope}/{self.name}" if self.scope else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class FileContents:
    """What a file holds: validated postgres specs, and other blocks kept aside (not ours)."""

    specs: list[PostgresSpec]
    others: list[Block]
    bodies: list[dict[str, Any]] = field(default_factory=list)  # raw body of each spec, same order


def parse_blocks(text: str, *, source: str = "<string>") -> list[Block]:
    """Parse HCL text into top-level blocks (in file order, grouped by type as hcl2 returns them)."""
    try:
        tree = hcl2.loads(text, serialization_options=_OPTIONS)
    except Exception as exc:  # lark raises several unrelated exception types for bad input
        line = getattr(exc, "line", None)
        column = getattr(exc, "column", None)
        where = f"{source}:{line}:{column}" if line is not None else source
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HCLSyntaxError(f"{where}: invalid HCL: {detail}") from exc
    blocks: list[Block] = []
    for kind, entries in tree.items():
        if not isinstance(entries, list):
            raise HCLSyntaxError(f"{source}: top-level attribute {kind!r} is not allowed; only blocks")
        for entry in entries:
            labels, body = _split_labels(entry)
            if len(labels) > 2:
                raise HCLSyntaxError(
                    f'{source}: {kind} block has {len(labels)} labels; expected {kind} "scope" "name"'
                )
            if len(labels) == 2:
                scope, name = labels
            elif len(labels) == 1:
                scope, name = "", labels[0]
            else:
                scope, name = "", kind
            blocks.append(Block(kind, scope, name, _to_wire(body)))
    return blocks


def _split_labels(entry: Any) -> tuple[list[str], dict[str, Any]]:
    labels: list[str] = []
    node = entry
    while isinstance(node, dict) and not node.get(_BLOCK):
        if len(node) != 1:
            break
        (label, node), = node.items()
        labels.append(str(label))
    if not isinstance(node, dict):
        node = {}
    return labels, node


def _to_wire(value: Any) -> Any:
    """Drop hcl2's block markers; a nested block seen once becomes an object (Voodu's shape)."""
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items() if k != _BLOCK}
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and v.get(_BLOCK) for v in value):
            converted = [_to_wire(v) for v in value]
            return converted[0] if len(converted) == 1 else converted
        return [_to_wire(v) for v in value]
    return value


def blocks_to_json(blocks: list[Block]) -> list[dict[str, Any]]:
    """Serialisable form of parsed blocks (for the caller's parse cache)."""
    return [{"kind": b.kind, "scope": b.scope, "name": b.name, "body": b.body} for b in blocks]


def blocks_from_json(data: list[dict[str, Any]]) -> list[Block]:
    return [Block(str(d["kind"]), str(d["scope"]), str(d["name"]), dict(d["body"])) for d in data]








