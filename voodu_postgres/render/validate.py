"""Validation of a file's postgres blocks: each spec parsed, and each checked by building its
pod 0 exactly as ``apply`` would (so ``validate`` rejects what ``apply`` would). Pure."""

from __future__ import annotations

from typing import Any

from voodu_postgres.domain.hcl import Block, FileContents, parse_blocks
from voodu_postgres.domain.podspec import PodSpecError, build_pod
from voodu_postgres.domain.spec import PostgresSpec, Problem, SpecError, load_spec
from voodu_postgres.render.expansion import expand


def load_text(text: str, *, source: str = "<string>", blocks: list[Block] | None = None) -> FileContents:
    """Parse and validate every postgres block in ``text`` (or in already-parsed ``blocks``).

    Raises :class:`HCLSyntaxError` for unparsable text, or :class:`SpecError` listing every
    problem in every postgres block (including duplicate block names, and whatever ``apply`` would
    reject when it builds the containers: a bad probe duration, ulimit, extra_hosts entry, …).
    """
    specs: list[PostgresSpec] = []
    bodies: list[dict[str, Any]] = []
    others: list[Block] = []
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for block in blocks if blocks is not None else parse_blocks(text, source=source):
        if block.kind != "postgres":
            others.append(block)
            continue
        ref_key = (block.scope, block.name)
        if ref_key in seen:
            problems.append(Problem(_ref_text(block), "", "declared more than once", source))
            continue
        seen.add(ref_key)
        try:
            spec = load_spec(block.scope, block.name, block.body, source=source)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        pod_problems = _pod_problems(spec, source)
        if pod_problems:
            problems.extend(pod_problems)
            continue
        specs.append(spec)
        bodies.append(block.body)
    if problems:
        raise SpecError(problems)
    return FileContents(specs, others, bodies)


def _pod_problems(spec: PostgresSpec, source: str) -> list[Problem]:
    """What ``apply`` would reject when it turns this spec into containers (a bad probe duration,
    ulimit or extra_hosts entry, …): one problem per offending field."""
    if _pod_error(spec) is None:
        return []
    block = str(spec.ref)
    problems = []
    for key, value in spec.passthrough.items():
        error = _pod_error(spec.model_copy(update={"passthrough": {key: value}}))
        if error is not None:
            problems.append(Problem(block, key, error, source))
    # a failure no single field explains on its own: report it without a field
    return problems or [Problem(block, "", str(_pod_error(spec)), source)]


def _pod_error(spec: PostgresSpec) -> str | None:
    """Build pod 0 exactly as apply does, against a stand-in bucket holding the secrets a first
    apply would generate; the container-level error, or None."""
    expansion = expand(spec, {}, generate=lambda: "0" * 64)
    bucket = {k: v for action in expansion.actions for k, v in (action.kv or {}).items()}
    paths = {f.name: f"/assets/{f.name}" for f in expansion.files}
    try:
        build_pod(expansion.manifests[1], 0, asset_paths=paths, asset_digests={}, bucket=bucket,
                  network="validate")
    except PodSpecError as exc:
        return str(exc)
    return None


def _ref_text(block: Block) -> str:
    return f"{block.scope}/{block.name}" if block.scope else block.name
