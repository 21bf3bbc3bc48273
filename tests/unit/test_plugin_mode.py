"""Plugin mode against a fake Voodu controller: the dispatch envelope of every command that needs
no Docker (link, unlink, expose, unexpose, refusals), in Voodu's exact action shapes.

The controller's side is real HTTP (``tests/fake_controller.py``); the actions the plugin prints
are then applied by the fake exactly as the controller would, and the result is read back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_controller import FakeController, dispatch
from voodu_postgres.domain.spec import load_spec
from voodu_postgres.render.expansion import expand


@pytest.fixture
def ctl() -> Iterator[FakeController]:
    with FakeController() as controller:
        # what `vd apply` of a 3-pod block leaves in the controller: the expanded statefulset and
        # the bucket after the seeding actions
        spec = load_spec("shop", "db", {"replicas": 3, "user": "app", "database": "data", "port": 5433})
        first = expand(spec, {})
        for action in first.actions:
            controller.set_config(action.scope, action.name, action.kv or {})
        controller.put_manifest("statefulset", "shop", "db", expand(spec, controller.resolve("shop", "db"))
                                .manifests[1]["spec"])
        yield controller


def test_link_envelope_and_controller_application(ctl: FakeController) -> None:
    ctl.set_config("shop", "db", {"PG_PRIMARY_ORDINAL": "2"})
    code, env = dispatch(ctl, "link", "shop/db", "shop/web", "--reads")
    assert code == 0 and env["status"] == "ok" and list(env["data"]) == ["message", "actions"]
    actions = env["data"]["actions"]
    assert [(a["type"], a["name"], a.get("skip_restart", False)) for a in actions] == [
        ("config_set", "web", False), ("config_set", "db", True)]
    ctl.apply_actions(actions)
    web = ctl.own("shop", "web")
    pw = ctl.resolve("shop", "db")["POSTGRES_PASSWORD"]
    assert web["DATABASE_URL"] == f"postgres://app:{pw}@db-2.shop.voodu:5433/data"
    assert web["DATABASE_READ_URL"].startswith(f"postgres://app:{pw}@db-0.shop.voodu:5433,db-1.shop.voodu:5433/")
    assert ctl.own("shop", "db")["POSTGRES_LINKED_CONSUMERS"] == "shop/web"
    assert ctl.restarts == [("shop", "web")]  # the app restarts for its new env; the database does not
    assert ("GET", "/describe?kind=statefulset&scope=shop&name=db") in ctl.requests


def test_unlink_envelope(ctl: FakeController) -> None:
    ctl.apply_actions(dispatch(ctl, "link", "shop/db", "shop/web")[1]["data"]["actions"])
    code, env = dispatch(ctl, "unlink", "shop/db", "shop/web")
    assert code == 0
    ctl.apply_actions(env["data"]["actions"])
    assert "DATABASE_URL" not in ctl.own("shop", "web")
    assert "POSTGRES_LINKED_CONSUMERS" not in ctl.own("shop", "db")
    again = dispatch(ctl, "unlink", "shop/db", "shop/web")[1]
    assert again["data"]["actions"] == [] and "not linked" in again["data"]["message"]


def test_expose_is_refused_for_several_pods_and_unexpose_emits_the_manifest(ctl: FakeController) -> None:
    code, env = dispatch(ctl, "expose", "shop/db")
    assert code == 1 and env["status"] == "error" and "db-0.shop.voodu:5433" in env["error"]
    ctl.set_config("shop", "db", {"PG_EXPOSE_PUBLIC": "true"})
    code, env = dispatch(ctl, "unexpose", "shop/db")
    assert code == 0
    ctl.apply_actions(env["data"]["actions"])
    stored = ctl.manifest("statefulset", "shop", "db")
    assert stored is not None and stored["spec"]["ports"] == ["5433"]
    assert "PG_EXPOSE_PUBLIC" not in ctl.own("shop", "db") and ctl.restarts == []


def test_expose_single_pod_publishes_three_part_port(ctl: FakeController) -> None:
    spec = ctl.manifest("statefulset", "shop", "db")
    assert spec is not None
    ctl.put_manifest("statefulset", "shop", "db", {**spec["spec"], "replicas": 1})
    code, env = dispatch(ctl, "expose", "shop/db")
    assert code == 0, env
    ctl.apply_actions(env["data"]["actions"])
    assert ctl.manifest("statefulset", "shop", "db")["spec"]["ports"] == ["0.0.0.0:5433:5433"]  # type: ignore[index]
    assert ctl.own("shop", "db")["PG_EXPOSE_PUBLIC"] == "true"


def test_errors_are_one_envelope_on_stdout(ctl: FakeController) -> None:
    code, env = dispatch(ctl, "link", "shop/nope", "shop/web")
    assert code == 1 and env["status"] == "error" and "HTTP 404" in env["error"]
    code, env = dispatch(ctl, "link", "shop/db")
    assert code == 1 and env["status"] == "error" and "consumer" in env["error"].lower()
    code, env = dispatch(ctl, "promote", "shop/db", "--replica", "1")
    assert code == 1 and "standalone" in env["error"]
