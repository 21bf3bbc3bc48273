"""The controller HTTP client and dispatch-context parsing, against the in-process fake controller."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from tests.fake_controller import FakeController
from voodu_postgres.adapters.controller import (
    DEFAULT_CONTROLLER_URL,
    ControllerClient,
    ControllerError,
    Invocation,
    read_invocation,
)
from voodu_postgres.domain.errors import CommandError, VooduError


@pytest.fixture
def ctl() -> Iterator[FakeController]:
    with FakeController() as fake:
        yield fake


@pytest.fixture
def client(ctl: FakeController) -> ControllerClient:
    return ControllerClient(ctl.url + "/", timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- client --------------------------------------------------------------------------------------


def test_error_hierarchy_and_trailing_slash(client: ControllerClient, ctl: FakeController) -> None:
    assert issubclass(ControllerError, CommandError) and issubclass(ControllerError, VooduError)
    assert client.base_url == ctl.url


def test_describe_returns_spec(client: ControllerClient, ctl: FakeController) -> None:
    ctl.put_manifest("statefulset", "data", "main", {"replicas": 2, "image": "postgres:16"})
    assert client.describe("data", "main") == {"replicas": 2, "image": "postgres:16"}
    assert ctl.requests == [("GET", "/describe?kind=statefulset&scope=data&name=main")]


def test_describe_missing_is_one_line_404(client: ControllerClient) -> None:
    with pytest.raises(ControllerError) as err:
        client.describe("data", "nope")
    msg = str(err.value)
    assert msg.startswith("describe statefulset/data/nope: HTTP 404: ")
    assert "not found" in msg and "\n" not in msg


def test_http_error_body_is_flattened_and_capped(client: ControllerClient, ctl: FakeController) -> None:
    ctl.fail_next("/describe", 500, "boom\n  line two\n" + "x" * 1000)
    with pytest.raises(ControllerError) as err:
        client.describe("data", "main")
    msg = str(err.value)
    assert msg.startswith("describe statefulset/data/main: HTTP 500: boom line two xxx")
    assert "\n" not in msg
    assert len(msg) <= len("describe statefulset/data/main: HTTP 500: ") + 300


def test_query_values_are_url_encoded(client: ControllerClient, ctl: FakeController) -> None:
    ctl.put_manifest("statefulset", "a b", "x&y", {"k": "v"})
    assert client.describe("a b", "x&y") == {"k": "v"}
    assert ctl.requests[-1] == ("GET", "/describe?kind=statefulset&scope=a+b&name=x%26y")


def test_config_is_merged_scope_then_app(client: ControllerClient, ctl: FakeController) -> None:
    ctl.set_config("data", "", {"SHARED": "scope", "BOTH": "scope"})
    ctl.set_config("data", "main", {"BOTH": "app", "OWN": "app"})
    assert client.config("data", "main") == {"SHARED": "scope", "BOTH": "app", "OWN": "app"}
    assert client.config("data", "empty") == {"SHARED": "scope", "BOTH": "scope"}
    assert client.config("other", "none") == {}


def test_config_null_vars_and_error_prefix(client: ControllerClient, ctl: FakeController) -> None:
    ctl.fail_next("/config", 200, {"status": "ok", "data": {"vars": None}})
    assert client.config("data", "main") == {}
    ctl.fail_next("/config", 503, {"status": "error", "error": "etcd down"})
    with pytest.raises(ControllerError, match=r'^config get data/main: HTTP 503: \{"status"'):
        client.config("data", "main")


def test_patch_without_restart_records_no_restart(client: ControllerClient, ctl: FakeController) -> None:
    client.patch_config("data", "main", {"PG_PRIMARY_ORDINAL": "1"}, restart=False)
    assert ctl.own("data", "main") == {"PG_PRIMARY_ORDINAL": "1"}
    assert ctl.restarts == []
    method, path = ctl.requests[-1]
    assert method == "POST" and path == "/config?scope=data&name=main&restart=false"


def test_patch_with_restart_records_fanout_and_empty_unsets(
    client: ControllerClient, ctl: FakeController
) -> None:
    ctl.set_config("data", "main", {"OLD": "x", "KEEP": "y"})
    client.patch_config("data", "main", {"OLD": "", "NEW": "z"})
    assert ctl.own("data", "main") == {"KEEP": "y", "NEW": "z"}
    assert ctl.restarts == [("data", "main")]
    assert ctl.requests[-1] == ("POST", "/config?scope=data&name=main")


def test_patch_with_empty_kv_sends_nothing(client: ControllerClient, ctl: FakeController) -> None:
    client.patch_config("data", "main", {})
    assert ctl.requests == []


def test_patch_error_prefix(client: ControllerClient, ctl: FakeController) -> None:
    ctl.fail_next("/config", 400, "bad body")
    with pytest.raises(ControllerError, match=r"^config patch data/main: HTTP 400: bad body$"):
        client.patch_config("data", "main", {"K": "V"})


def test_delete_pod(client: ControllerClient, ctl: FakeController) -> None:
    client.delete_pod("data", "main", 2)
    client.delete_pod("data", "main", 0, prune=False)
    assert ctl.deleted_pods == [("data", "main", 2, True), ("data", "main", 0, False)]
    assert ctl.requests[0] == ("DELETE", "/resource?scope=data&name=main&ordinal=2&prune=true")
    ctl.fail_next("/resource", 500, "docker said no")
    with pytest.raises(ControllerError, match=r"^delete pod data/main\.1: HTTP 500: docker said no$"):
        client.delete_pod("data", "main", 1)


def test_connection_refused_is_one_line() -> None:
    base = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(ControllerError) as err:
        ControllerClient(base, timeout=2).describe("data", "main")
    msg = str(err.value)
    assert msg.startswith(f"controller {base}: ") and "\n" not in msg
    assert err.value.__cause__ is not None  # chained, so --traceback shows the socket error


def test_timeout_is_one_line() -> None:
    with socket.socket() as srv:  # accepts the connection, never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        base = f"http://127.0.0.1:{srv.getsockname()[1]}"
        with pytest.raises(ControllerError) as err:
            ControllerClient(base, timeout=0.3).config("data", "main")
    assert str(err.value) == f"controller {base}: timed out"


@pytest.mark.parametrize(
    "body",
    [
        "<html>proxy error</html>",
        "",
        '["status", "ok"]',
        '{"status": "weird", "data": {}}',
        '{"data": {"manifest": {"spec": {}}}}',
    ],
)
def test_non_envelope_body_raises(client: ControllerClient, ctl: FakeController, body: str) -> None:
    ctl.fail_next("/describe", 200, body)
    with pytest.raises(ControllerError, match=r"^describe statefulset/data/main: unexpected controller"):
        client.describe("data", "main")


def test_ok_envelope_with_wrong_shape_raises(client: ControllerClient, ctl: FakeController) -> None:
    ctl.fail_next("/describe", 200, {"status": "ok", "data": {"pods": []}})
    with pytest.raises(ControllerError, match="no data.manifest"):
        client.describe("data", "main")
    ctl.fail_next("/config", 200, {"status": "ok", "data": {"vars": ["A"]}})
    with pytest.raises(ControllerError, match="data.vars is list"):
        client.config("data", "main")


def test_error_envelope_with_200_uses_its_error(client: ControllerClient, ctl: FakeController) -> None:
    ctl.fail_next("/config", 200, {"status": "error", "error": "nope"})
    with pytest.raises(ControllerError, match=r"^config get data/main: nope$"):
        client.config("data", "main")


def test_empty_base_url_is_refused() -> None:
    with pytest.raises(ControllerError, match="no controller_url available"):
        ControllerClient(" / ")


# -- read_invocation -----------------------------------------------------------------------------


@pytest.mark.parametrize("stdin", ["", "  \n"])
def test_invocation_empty_stdin(stdin: str) -> None:
    assert read_invocation(stdin, {}) == Invocation("", "", DEFAULT_CONTROLLER_URL, None, None)


def test_invocation_full_json_wins_over_env() -> None:
    doc = {
        "plugin": "pg",
        "command": "info",
        "controller_url": "http://10.0.0.1:8686/",
        "plugin_dir": "/opt/voodu/plugins/postgres",
        "node_name": "voodu-0",
    }
    env = {"VOODU_CONTROLLER_URL": "http://env:1", "VOODU_PLUGIN_DIR": "/env", "VOODU_NODE": "env-node"}
    inv = read_invocation(json.dumps(doc), env)
    assert inv == Invocation("pg", "info", "http://10.0.0.1:8686", "/opt/voodu/plugins/postgres", "voodu-0")


def test_invocation_env_fallbacks() -> None:
    env = {"VOODU_CONTROLLER_URL": "http://env:1/", "VOODU_PLUGIN_DIR": "/env/dir", "VOODU_NODE": "n1"}
    inv = read_invocation('{"plugin": "postgres", "command": "promote", "controller_url": ""}', env)
    assert inv == Invocation("postgres", "promote", "http://env:1", "/env/dir", "n1")


@pytest.mark.parametrize(
    ("stdin", "detail"),
    [("{not json", "decode stdin: "), ("[1, 2]", "decode stdin: expected a JSON object, got list")],
)
def test_invocation_bad_stdin(stdin: str, detail: str) -> None:
    with pytest.raises(ControllerError) as err:
        read_invocation(stdin, {})
    assert str(err.value).startswith(detail) and "\n" not in str(err.value)


def test_invocation_is_frozen() -> None:
    inv = read_invocation("", {})
    with pytest.raises(AttributeError):
        inv.plugin = "x"  # type: ignore[misc]


# -- fake controller: dispatch actions and raw endpoints -----------------------------------------


def test_apply_actions_round_trip(ctl: FakeController) -> None:
    actions: list[dict[str, Any]] = [
        {"type": "config_set", "scope": "data", "name": "main", "kv": {"B": "2", "A": "1"}},
        {"type": "config_set", "scope": "data", "name": "main", "kv": {"C": "3"}, "skip_restart": True},
        {"type": "config_unset", "scope": "data", "name": "main", "keys": ["B"]},
        {
            "type": "apply_manifest",
            "scope": "data",
            "name": "main",
            "manifest": {"kind": "job", "scope": "data", "name": "main.bk", "spec": {"image": "pg"}},
            "summary": "job manifest applied: data/main.bk",
        },
        {"type": "run_job", "scope": "data", "name": "main.bk"},
        {"type": "delete_manifest", "kind": "job", "scope": "data", "name": "main.bk"},
        {"type": "delete_manifest", "kind": "job", "scope": "data", "name": "main.bk"},
        {"type": "exec_local", "scope": "data", "name": "main", "command": ["docker", "exec", "-it", "c"]},
        {"type": "fetch_file", "scope": "data", "name": "main", "remote_path": "/r", "dest_path": "d"},
    ]
    applied = ctl.apply_actions(actions)
    assert applied == [
        "config_set data/main: A,B",
        "config_set data/main: C",
        "config_unset data/main: B",
        "job manifest applied: data/main.bk",
        "run_job data/main.bk queued",
        "delete_manifest job/data/main.bk",
        "delete_manifest job/data/main.bk (no-op)",
        "exec_local [docker exec -it c] (deferred to CLI)",
        "fetch_file /r → d (deferred to CLI)",
    ]
    assert ctl.own("data", "main") == {"A": "1", "C": "3"}
    assert ctl.restarts == [("data", "main"), ("data", "main")]  # the skip_restart write is absent
    assert ctl.jobs_run == [("data", "main.bk")]
    assert ctl.manifest("job", "data", "main.bk") is None
    assert ctl.exec_local == [{"command": ["docker", "exec", "-it", "c"]}]
    assert ctl.fetch_file == [{"remote_path": "/r", "dest_path": "d"}]


def test_apply_manifest_is_visible_to_describe(ctl: FakeController, client: ControllerClient) -> None:
    manifest = {"kind": "statefulset", "scope": "data", "name": "main", "spec": {"replicas": 3}}
    ctl.apply_actions([{"type": "apply_manifest", "scope": "data", "name": "main", "manifest": manifest}])
    assert ctl.manifest("statefulset", "data", "main") == manifest
    assert client.describe("data", "main") == {"replicas": 3}
    assert client.describe("", "main") == {"replicas": 3}  # a unique scope is auto-resolved


@pytest.mark.parametrize(
    "action",
    [
        {"type": "config_set", "scope": "data", "name": "main", "values": {"A": "1"}},
        {"type": "config_set", "scope": "data", "name": "main", "kv": {}},
        {"type": "config_set", "scope": "data", "name": "main", "kv": {"A": 1}},
        {"type": "config_set", "scope": "data", "kv": {"A": "1"}},
        {"type": "config_unset", "scope": "data", "name": "main", "keys": "A"},
        {"type": "apply_manifest", "scope": "data", "name": "main", "manifest": {"kind": "job"}},
        {"type": "delete_manifest", "scope": "data", "name": "main"},
        {"type": "exec_local", "scope": "data", "name": "main", "command": "psql"},
        {"type": "fetch_file", "scope": "data", "name": "main", "remote_path": "/r"},
        {"type": "run_job", "scope": "data", "name": ""},  # (an unscoped resource's scope is "", §1.2)
        {"scope": "data", "name": "main"},
    ],
)
def test_malformed_action_raises_assertion(ctl: FakeController, action: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        ctl.apply_actions([action])


def test_unknown_action_type_raises_value_error(ctl: FakeController) -> None:
    with pytest.raises(ValueError, match="unknown action type"):
        ctl.apply_actions([{"type": "config_put", "scope": "data", "name": "main"}])


def _raw(ctl: FakeController, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    req = Request(ctl.url + path, data=body, method=method)
    try:
        with urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_fake_config_endpoints(ctl: FakeController) -> None:
    ctl.set_config("data", "", {"S": "1", "X": "scope"})
    ctl.set_config("data", "main", {"X": "app"})
    assert _raw(ctl, "GET", "/config?scope=data&name=main&merge=false") == (
        200,
        {"status": "ok", "data": {"vars": {"X": "app"}}},
    )
    assert _raw(ctl, "GET", "/config?scope=data&name=main&key=S")[1]["data"] == {"S": "1"}
    assert _raw(ctl, "GET", "/config?scope=data&name=main&key=NOPE")[0] == 404
    assert _raw(ctl, "POST", "/config?scope=data&name=main", b"[]")[0] == 400
    assert _raw(ctl, "POST", "/config?scope=data&name=main", b"{}")[0] == 400
    assert _raw(ctl, "DELETE", "/config?scope=data&name=main&key=X&restart=false")[0] == 200
    assert ctl.resolve("data", "main") == {"S": "1", "X": "scope"}
    assert ctl.restarts == []
    status, doc = _raw(ctl, "GET", "/nowhere")
    assert status == 404 and doc["status"] == "error"


def test_fake_shuts_down_cleanly() -> None:
    before = threading.active_count()
    with FakeController() as fake:
        url = fake.url
        assert _raw(fake, "GET", "/describe?kind=statefulset&scope=a&name=b")[0] == 404
    assert threading.active_count() == before
    with pytest.raises(ControllerError, match=f"^controller {url}: "):
        ControllerClient(url, timeout=2).describe("a", "b")
