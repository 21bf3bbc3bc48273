"""Fixtures for tests against a real Docker engine and the local postgres image.

Every object a test creates carries the label ``org.voodu-postgres.test=<session id>``; objects
left by an earlier, interrupted session are removed at start, and this session's at the end
(testcontainers' Ryuk reaper cannot be pulled here, so cleanup is ours). Each session gets its
own bridge network, so tests never collide with a real ``voodu0`` cluster on the same host.

These tests fail — they do not skip — when Docker or the image is missing: run
``bash .ci/setup`` first (the README's test command does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from voodu_postgres.adapters.docker import DockerRuntime
from voodu_postgres.adapters.files import write_assets
from voodu_postgres.adapters.store import SqliteStore
from voodu_postgres.domain.podspec import PodSpec, build_pod
from voodu_postgres.domain.spec import PostgresSpec, load_spec
from voodu_postgres.render.expansion import expand

TEST_LABEL = "org.voodu-postgres.test"
IMAGE = os.environ.get("VOODU_POSTGRES_TEST_IMAGE", "voodu-postgres-local:15")
SESSION = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def runtime() -> Iterator[DockerRuntime]:
    rt = DockerRuntime()
    try:
        rt.client.images.get(IMAGE)
    except Exception:
        pytest.fail(f"image {IMAGE} is missing: run `bash .ci/setup` first", pytrace=False)
    rt.remove_stale(TEST_LABEL, older_than_s=3600)  # leftovers of interrupted sessions, not live ones
    yield rt
    rt.remove_labelled(f"{TEST_LABEL}={SESSION}")


@pytest.fixture(scope="session")
def network(runtime: DockerRuntime) -> str:
    name = f"vpg-test-{SESSION}"
    runtime.ensure_network(name, labels={TEST_LABEL: SESSION})
    return name


@dataclass
class Cluster:
    """A postgres block expanded and materialised for tests: assets written, bucket seeded."""

    spec: PostgresSpec
    manifest: dict[str, Any]
    asset_paths: dict[str, str]
    asset_digests: dict[str, str]
    store: SqliteStore
    network: str
    runtime: DockerRuntime

    def pod(self, ordinal: int) -> PodSpec:
        return build_pod(
            self.manifest, ordinal, asset_paths=self.asset_paths, asset_digests=self.asset_digests,
            bucket=self.store.resolve(self.spec.scope, self.spec.name), network=self.network,
            extra_labels={TEST_LABEL: SESSION},
        )

    def start(self, ordinal: int) -> str:
        return self.runtime.run_pod(self.pod(ordinal))

    @property
    def password(self) -> str:
        return self.store.resolve(self.spec.scope, self.spec.name)["POSTGRES_PASSWORD"]

    def connect(self, ordinal: int, *, timeout: float = 60, **overrides: Any) -> psycopg.Connection[Any]:
        """Connect from the host through the pod's published loopback port, retrying until ready."""
        port = self.runtime.host_port(self.spec.ref.container(ordinal), self.spec.port)
        params: dict[str, Any] = {"host": "127.0.0.1", "port": port, "user": self.spec.user,
                                  "password": self.password, "dbname": self.spec.database,
                                  "autocommit": True, "connect_timeout": 3, **overrides}
        for attempt in Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.25), reraise=True,
                                retry=retry_if_exception_type(psycopg.OperationalError)):
            with attempt:
                return psycopg.connect(**params)
        raise AssertionError("unreachable")


@pytest.fixture
def make_cluster(runtime: DockerRuntime, network: str, tmp_path: Path) -> Any:
    def make(name: str, body: dict[str, Any]) -> Cluster:
        scope = f"t{SESSION}"
        body = {"image": IMAGE, "volumes": [f"{tmp_path / 'backups'}:/backups:rw"], **body}
        spec = load_spec(scope, name, body)
        store = SqliteStore(tmp_path / "home")
        first = expand(spec, store.resolve(scope, name))
        for action in first.actions:  # what the controller (or standalone apply) does with them
            assert action.type == "config_set" and action.kv is not None
            store.patch(action.scope, action.name, action.kv)
        expansion = expand(spec, store.resolve(scope, name))
        assert not expansion.actions, "re-expanding with the seeded bucket must be a no-op"
        paths = write_assets(tmp_path / "assets" / scope / name, expansion.files)
        return Cluster(spec, expansion.manifests[1], paths, {f.name: f.sha256 for f in expansion.files},
                       store, network, runtime)

    return make
