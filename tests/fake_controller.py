"""An in-process stand-in for Voodu's controller, for plugin-mode tests.

:class:`FakeController` serves the endpoints voodu-postgres calls (``/describe``, ``/config``,
``/resource``; voodu-platform.md §2.1) from a threaded HTTP server on 127.0.0.1, keeps config
buckets with the controller's patch/merge rules (§2.2), and applies dispatch actions the way
``handlers_plugin_dispatch.go`` does (§1.6) — validating their exact wire shape so a test fails
loudly on a typo'd field. It records every request, restart fan-out, pod delete and job run.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

Reply = tuple[int, Any]  # (HTTP status, JSON document or raw str body)

_COMMON = {"type", "scope", "name", "summary"}
_FIELDS: dict[str, set[str]] = {  # allowed fields per action type, beyond _COMMON
    "config_set": {"kv", "skip_restart"},
    "config_unset": {"keys", "skip_restart"},
    "apply_manifest": {"manifest"},
    "delete_manifest": {"kind"},
    "run_job": set(),
    "exec_local": {"command"},
    "fetch_file": {"remote_path", "dest_path", "size_bytes"},
}


def _ok(data: Any) -> Reply:
    return 200, {"status": "ok", "data": data}


def _err(status: int, message: str) -> Reply:
    return status, {"status": "error", "error": message}


class FakeController:
    """``with FakeController() as ctl:`` — a live fake at ``ctl.url`` for the block's duration."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.buckets: dict[tuple[str, str], dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.restarts: list[tuple[str, str]] = []
        self.deleted_pods: list[tuple[str, str, int, bool]] = []  # (scope, name, ordinal, prune)
        self.jobs_run: list[tuple[str, str]] = []
        self.exec_local: list[dict[str, Any]] = []  # as data.exec_local: {"command": argv}
        self.fetch_file: list[dict[str, Any]] = []  # as data.fetch_file: {remote_path, dest_path, …}
        self._failures: list[tuple[str, int, Any]] = []
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> FakeController:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a stalled client cannot keep __exit__ waiting

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, doc = fake._route(self.command, self.path, body)
                raw = (doc if isinstance(doc, str) else json.dumps(doc)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = False  # so server_close() joins every handler thread
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    # -- state -----------------------------------------------------------------------------------

    def put_manifest(self, kind: str, scope: str, name: str, spec: dict[str, Any]) -> None:
        with self._lock:
            self.manifests[(kind, scope, name)] = {"kind": kind, "scope": scope, "name": name, "spec": spec}

    def manifest(self, kind: str, scope: str, name: str) -> dict[str, Any] | None:
        """The stored manifest ``{kind, scope, name, spec}``, or None."""
        with self._lock:
            found = self.manifests.get((kind, scope, name))
            return json.loads(json.dumps(found)) if found is not None else None

    def set_config(self, scope: str, name: str, kv: dict[str, str]) -> None:
        """PatchConfig: merge, an empty value deletes; ``name=""`` is the scope-level bucket."""
        with self._lock:
            bucket = self.buckets.setdefault((scope, name), {})
            for key, value in kv.items():
                if value == "":
                    bucket.pop(key, None)
                else:
                    bucket[key] = value

    def own(self, scope: str, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self.buckets.get((scope, name), {}))

    def resolve(self, scope: str, name: str) -> dict[str, str]:
        """ResolveConfig: the scope-level bucket overlaid by the app bucket (the app wins)."""
        return {**self.own(scope, ""), **(self.own(scope, name) if name else {})}

    def fail_next(self, path_prefix: str, status: int, body: Any = "") -> None:
        """Answer the next request whose path-with-query starts with ``path_prefix`` with this reply."""
        with self._lock:
            self._failures.append((path_prefix, status, body))

    # -- dispatch actions ------------------------------------------------------------------------

    def apply_actions(self, actions: list[dict[str, Any]]) -> list[str]:
        """Apply actions in order like the controller; returns the ``applied`` summaries."""
        return [self._apply(action) for action in actions]

    def _apply(self, a: dict[str, Any]) -> str:
        assert isinstance(a, dict), f"action is not an object: {a!r}"
        kind = a.get("type")
        assert isinstance(kind, str), f"action without a string type: {a!r}"
        if kind not in _FIELDS:
            raise ValueError(f"unknown action type {kind!r}")
        extra = set(a) - _COMMON - _FIELDS[kind]
        assert not extra, f"{kind}: unexpected fields {sorted(extra)}"
        scope, name = a.get("scope"), a.get("name")
        assert isinstance(scope, str) and isinstance(name, str), f"{kind}: scope and name must be strings"
        assert isinstance(a.get("summary", ""), str), f"{kind}: summary must be a string"
        assert a.get("skip_restart", False) in (True, False), f"{kind}: skip_restart must be a bool"
        if kind not in ("exec_local", "fetch_file"):
            # an unscoped resource's actions carry scope "" (behavior.md §1.2); a name, always
            assert name, f"name is required for action {kind!r}"
        with self._lock:
            summary = self._apply_checked(kind, scope, name, a)
        return str(a.get("summary") or summary)

    def _apply_checked(self, kind: str, scope: str, name: str, a: dict[str, Any]) -> str:
        if kind in ("config_set", "config_unset"):
            if kind == "config_set":
                kv = a.get("kv")
                assert isinstance(kv, dict) and kv, "config_set requires non-empty kv"
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in kv.items()), "kv: str→str"
            else:
                keys = a.get("keys")
                assert isinstance(keys, list) and keys, "config_unset requires non-empty keys"
                assert all(isinstance(k, str) for k in keys), "keys must be strings"
                kv = dict.fromkeys(keys, "")
            self.set_config(scope, name, kv)
            if not a.get("skip_restart"):
                self.restarts.append((scope, name))
            return f"{kind} {scope}/{name}: {','.join(sorted(kv))}"
        if kind == "apply_manifest":
            m = a.get("manifest")
            assert isinstance(m, dict), "apply_manifest requires a manifest object"
            assert not set(m) - {"kind", "scope", "name", "spec"}, f"manifest: unexpected fields {sorted(m)}"
            mk, ms, mn = m.get("kind"), m.get("scope", ""), m.get("name")
            assert isinstance(mk, str) and mk and isinstance(mn, str) and mn, "manifest: kind and name"
            assert isinstance(ms, str) and isinstance(m.get("spec"), dict), "manifest: scope str, spec object"
            self.put_manifest(mk, ms, mn, m["spec"])
            return f"apply_manifest {mk}/{ms}/{mn}" if ms else f"apply_manifest {mk}/{mn}"
        if kind == "delete_manifest":
            mk = a.get("kind")
            assert isinstance(mk, str) and mk, "delete_manifest requires kind"
            gone = self.manifests.pop((mk, scope, name), None) is not None
            return f"delete_manifest {mk}/{scope}/{name}" + ("" if gone else " (no-op)")
        if kind == "run_job":
            self.jobs_run.append((scope, name))
            return f"run_job {scope}/{name} queued"
        if kind == "exec_local":
            argv = a.get("command")
            assert isinstance(argv, list) and argv and all(isinstance(x, str) for x in argv), "command: argv"
            self.exec_local.append({"command": list(argv)})
            return f"exec_local [{' '.join(argv)}] (deferred to CLI)"
        remote, dest, size = a.get("remote_path"), a.get("dest_path"), a.get("size_bytes")
        assert isinstance(remote, str) and remote and isinstance(dest, str) and dest, "fetch_file: paths"
        assert size is None or (isinstance(size, int) and not isinstance(size, bool)), "size_bytes: int"
        entry: dict[str, Any] = {"remote_path": remote, "dest_path": dest}
        if size:
            entry["size_bytes"] = size
        self.fetch_file.append(entry)
        return f"fetch_file {remote} → {dest} (deferred to CLI)"

    # -- HTTP ------------------------------------------------------------------------------------

    def _route(self, method: str, target: str, body: bytes) -> Reply:
        with self._lock:
            self.requests.append((method, target))
            for i, (prefix, status, doc) in enumerate(self._failures):
                if target.startswith(prefix):
                    del self._failures[i]
                    return status, doc
            parts = urlsplit(target)
            q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            scope, name = q.get("scope", ""), q.get("name", "")
            route = (method, parts.path)
            if route == ("GET", "/describe"):
                return self._describe(q.get("kind", ""), scope, name)
            if parts.path == "/config" and method in ("GET", "POST", "DELETE"):
                if not scope and not name:  # an unscoped app's bucket is (scope "", name)
                    return _err(400, "scope or name is required")
                if method == "GET":
                    bucket = self.resolve(scope, name) if q.get("merge") != "false" else self.own(scope, name)
                    if "key" not in q:
                        return _ok({"vars": bucket})
                    key = q["key"]
                    return _ok({key: bucket[key]}) if key in bucket else _err(404, f"key {key} not set")
                if method == "POST":
                    try:
                        kv = json.loads(body or b"null")
                    except ValueError as exc:
                        return _err(400, f"decode body: {exc}")
                    if not isinstance(kv, dict) or not kv or not all(isinstance(v, str) for v in kv.values()):
                        return _err(400, "body must be a non-empty JSON object of strings")
                elif not q.get("key"):
                    return _err(400, "key is required")
                else:
                    kv = {q["key"]: ""}
                self.set_config(scope, name, kv)
                if q.get("restart") != "false":
                    self.restarts.append((scope, name))
                return _ok({"vars": self.own(scope, name)})
            if route == ("DELETE", "/resource"):
                if not q.get("ordinal", "").isdigit():
                    return _err(400, "ordinal must be a non-negative integer")
                self.deleted_pods.append((scope, name, int(q["ordinal"]), q.get("prune") == "true"))
                return _ok({"deleted": f"{scope}/{name}.{q['ordinal']}"})
            return _err(404, f"no route for {method} {parts.path}")

    def _describe(self, kind: str, scope: str, name: str) -> Reply:
        key = (kind, scope, name)
        if not scope:  # the controller auto-resolves a scope that is unique
            hits = [k for k in self.manifests if k[0] == kind and k[2] == name]
            key = hits[0] if len(hits) == 1 else key
        m = self.manifests.get(key)
        if m is None:
            return _err(404, f"{kind} {scope}/{name} not found")
        return _ok({"manifest": {**m, "metadata": {}}, "status": {}, "pods": []})


def dispatch(ctl: FakeController, command: str, *args: str,
             plugin_dir: str = "/opt/voodu/plugins/postgres") -> tuple[int, dict[str, Any]]:
    """Run one plugin-mode command in-process as Voodu would (the invocation context on stdin,
    ``$VOODU_PLUGIN_DIR`` set) and return (exit code, the one envelope it printed)."""
    import io

    from voodu_postgres.cli import main
    from voodu_postgres.commands.base import Env

    invocation = {"plugin": "pg", "command": command, "controller_url": ctl.url, "plugin_dir": plugin_dir}
    env = Env(stdin=io.StringIO(json.dumps(invocation)), stdout=io.StringIO(), stderr=io.StringIO(),
              environ={"VOODU_PLUGIN_DIR": plugin_dir})
    code = main([command, *args], env)
    assert isinstance(env.stdout, io.StringIO)
    out = env.stdout.getvalue()
    assert out.count("\n") == 1, f"exactly one envelope line expected, got {out!r}"
    return code, json.loads(out)
