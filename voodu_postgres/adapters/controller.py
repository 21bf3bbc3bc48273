"""Talking to Voodu's controller in plugin mode: the dispatch invocation context read from stdin
(:func:`read_invocation`) and the handful of controller HTTP calls a dispatch command makes
(:class:`ControllerClient`: describe, config get/patch, per-pod delete).

Every failure — HTTP status >= 400, connection refused, timeout, a body that is not the
``{"status":"ok","data":…}`` envelope — surfaces as one :class:`ControllerError` line, never a
traceback (behavior.md §1.4–1.5, voodu-platform.md §1.6, §2).

Standard library only (``urllib.request``, ``json``): no Docker, no subprocess.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from voodu_postgres.domain.errors import CommandError

CONTROLLER_URL_ENV = "VOODU_CONTROLLER_URL"
PLUGIN_DIR_ENV = "VOODU_PLUGIN_DIR"
NODE_ENV = "VOODU_NODE"
DEFAULT_CONTROLLER_URL = "http://127.0.0.1:8686"
DEFAULT_TIMEOUT = 10.0
_BODY_MAX = 300


class ControllerError(CommandError):
    """The controller could not be reached, refused a call, or answered something unreadable."""


def _one_line(text: str, limit: int = _BODY_MAX) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _ref(scope: str, name: str) -> str:
    """``scope/name`` for messages; just the one that is set when the other is empty."""
    return f"{scope}/{name}" if scope and name else (scope or name)


class ControllerClient:
    """A thin client for the controller endpoints voodu-postgres uses (voodu-platform.md §2.1)."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        base = base_url.strip().rstrip("/")
        if not base:
            raise ControllerError(
                f"no controller_url available (set {CONTROLLER_URL_ENV} or run via dispatch endpoint)"
            )
        self.base_url = base
        self.timeout = timeout

    # -- endpoints ---------------------------------------------------------------------------

    def describe(self, scope: str, name: str, kind: str = "statefulset") -> dict[str, Any]:
        """``data.manifest.spec`` of one resource (``{}`` when the manifest has no spec)."""
        what = f"describe {kind}/{scope}/{name}"
        data = self._call("GET", "/describe", {"kind": kind, "scope": scope, "name": name}, what)
        manifest = data.get("manifest") if isinstance(data, dict) else None
        if not isinstance(manifest, dict):
            raise ControllerError(f"{what}: controller response has no data.manifest")
        spec = manifest.get("spec")
        if spec is None:
            return {}
        if not isinstance(spec, dict):
            raise ControllerError(f"{what}: data.manifest.spec is {type(spec).__name__}, not an object")
        return spec

    def config(self, scope: str, name: str) -> dict[str, str]:
        """The merged bucket (scope-level values, app-level ones winning), as the controller serves it."""
        what = f"config get {_ref(scope, name)}"
        data = self._call("GET", "/config", {"scope": scope, "name": name}, what)
        variables = data.get("vars") if isinstance(data, dict) else None
        if variables is None:
            if not isinstance(data, dict):
                raise ControllerError(f"{what}: controller response has no data.vars")
            return {}
        if not isinstance(variables, dict):
            raise ControllerError(f"{what}: data.vars is {type(variables).__name__}, not an object")
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in variables.items()}

    def patch_config(self, scope: str, name: str, kv: Mapping[str, str], *, restart: bool = True) -> None:
        """Patch one bucket (an empty value unsets the key); ``restart=False`` skips the fan-out."""
        if not kv:
            return
        query = {"scope": scope, "name": name}
        if not restart:
            query["restart"] = "false"
        self._call("POST", "/config", query, f"config patch {_ref(scope, name)}", body=dict(kv))

    def delete_pod(self, scope: str, name: str, ordinal: int, *, prune: bool = True) -> None:
        """Rebuild one ordinal: the controller removes its container (and volumes when pruning)."""
        query = {"scope": scope, "name": name, "ordinal": str(ordinal)}
        if prune:
            query["prune"] = "true"
        self._call("DELETE", "/resource", query, f"delete pod {_ref(scope, name)}.{ordinal}")

    # -- transport ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, query: Mapping[str, str], what: str, *, body: Any = None) -> Any:
        """One request; returns the envelope's ``data`` (``None`` when absent)."""
        url = f"{self.base_url}{path}?{urlencode(query)}"
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        request = Request(url, data=payload, method=method, headers=headers)
        try:
            with urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except HTTPError as exc:
            detail = _read_quietly(exc)
            raise ControllerError(f"{what}: HTTP {exc.code}: {_one_line(detail)}") from exc
        except URLError as exc:
            raise ControllerError(f"controller {self.base_url}: {_one_line(str(exc.reason))}") from exc
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad status lines
            reason = str(exc) or type(exc).__name__
            raise ControllerError(f"controller {self.base_url}: {_one_line(reason)}") from exc
        return _envelope_data(raw, what)


def _read_quietly(exc: HTTPError) -> str:
    try:
        return exc.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        exc.close()


def _envelope_data(raw: bytes, what: str) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("status") != "ok":
        if isinstance(doc, dict) and doc.get("status") == "error" and doc.get("error"):
            raise ControllerError(f"{what}: {_one_line(str(doc['error']))}")
        shown = _one_line(text) or "(empty body)"
        raise ControllerError(f"{what}: unexpected controller response (not an ok envelope): {shown}")
    return doc.get("data")


# -- dispatch context ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """What Voodu's dispatch endpoint tells a plugin on stdin (voodu-platform.md §1.6)."""

    plugin: str
    command: str
    controller_url: str | None
    plugin_dir: str | None
    node_name: str | None


def read_invocation(stdin_text: str, environ: Mapping[str, str]) -> Invocation:
    """Parse the dispatch context; empty stdin is allowed. The caller reads stdin once and caches it.

    Fallbacks: ``controller_url`` ← ``$VOODU_CONTROLLER_URL`` ← ``http://127.0.0.1:8686`` (trailing
    ``/`` stripped); ``plugin_dir`` ← ``$VOODU_PLUGIN_DIR``; ``node_name`` ← ``$VOODU_NODE``.
    """
    doc: Any = {}
    if stdin_text.strip():
        try:
            doc = json.loads(stdin_text)
        except ValueError as exc:
            raise ControllerError(f"decode stdin: {exc}") from exc
        if not isinstance(doc, dict):
            raise ControllerError(f"decode stdin: expected a JSON object, got {type(doc).__name__}")

    def field(key: str) -> str:
        value = doc.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ControllerError(f"decode stdin: {key} must be a string, got {type(value).__name__}")
        return value

    candidates = (field("controller_url"), environ.get(CONTROLLER_URL_ENV, ""), DEFAULT_CONTROLLER_URL)
    url = next(c for c in (c.strip().rstrip("/") for c in candidates) if c)
    return Invocation(
        plugin=field("plugin"),
        command=field("command"),
        controller_url=url,
        plugin_dir=field("plugin_dir") or environ.get(PLUGIN_DIR_ENV) or None,
        node_name=field("node_name") or environ.get(NODE_ENV) or None,
    )
