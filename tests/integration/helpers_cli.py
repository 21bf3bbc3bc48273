"""Driving the real CLI in-process against Docker: HCL files, runs, pod snapshots, SQL.

Shared by the integration tests that exercise ``apply`` / ``reconcile`` / ``info`` / ``delete``
end to end. Everything the product creates carries the session label (through
``$VOODU_POSTGRES_LABELS``), so the session fixture in ``conftest.py`` removes it afterwards.
"""

from __future__ import annotations

import calendar
import io
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from tests.integration.conftest import IMAGE, SESSION, TEST_LABEL
from voodu_postgres.adapters.docker import DockerRuntime
from voodu_postgres.adapters.store import SqliteStore
from voodu_postgres.cli import main
from voodu_postgres.commands.base import Env
from voodu_postgres.domain.naming import Ref

T = TypeVar("T")

LABELS_ENV = "VOODU_POSTGRES_LABELS"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def ok(self) -> Run:
        assert self.code == 0, f"exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"
        return self


def run_cli(*argv: str, home: Path, environ: Mapping[str, str] | None = None, stdin: str = "") -> Run:
    env = Env(stdin=io.StringIO(stdin), stdout=io.StringIO(), stderr=io.StringIO(),
              environ={LABELS_ENV: f"{TEST_LABEL}={SESSION}", **(environ or {})})
    code = main(["--home", str(home), *argv], env)
    assert isinstance(env.stdout, io.StringIO) and isinstance(env.stderr, io.StringIO)
    return Run(int(code), env.stdout.getvalue(), env.stderr.getvalue())


def hcl_value(value: Any) -> str:
    """A Python value as HCL: strings quoted, bools lowercase, lists and maps recursively."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {hcl_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no HCL form for {value!r}")


def hcl_block(scope: str, name: str, fields: Mapping[str, Any]) -> str:
    body = "".join(f"  {key} = {hcl_value(value)}\n" for key, value in fields.items())
    return f'postgres "{scope}" "{name}" {{\n{body}}}\n'


def started_ns(iso: str) -> int:
    """Docker's RFC3339Nano ``StartedAt`` (trailing zeros trimmed) → integer nanoseconds.

    The strings must not be compared as text: ``…36.9792Z`` sorts after ``…36.97925574Z``.
    """
    text = iso.rstrip("Z")
    base, _, frac = text.partition(".")
    seconds = calendar.timegm(datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").timetuple())
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


@dataclass(frozen=True)
class PodState:
    """The identity of one container as Docker reports it (changes on recreate or restart)."""

    id: str
    started: int
    restart_count: int
    status: str


def eventually(check: Callable[[], T], timeout: float = 60) -> T:
    for attempt in Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.2), reraise=True):
        with attempt:
            return check()
    raise AssertionError("unreachable")


@dataclass
class Cluster:
    """One postgres block managed through the CLI, with a private home, network and work dir."""

    runtime: DockerRuntime
    scope: str
    name: str
    home: Path
    workdir: Path
    network: str
    base: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.scope}/{self.name}"

    @property
    def hcl(self) -> Path:
        return self.workdir / "voodu.hcl"

    def write(self, **fields: Any) -> Path:
        body = {"image": IMAGE, "volumes": [f"{self.workdir / 'backups'}:/backups:rw"], **self.base, **fields}
        self.hcl.write_text(hcl_block(self.scope, self.name, body), encoding="utf-8")
        return self.hcl

    def cli(self, *argv: str) -> Run:
        return run_cli(*argv, home=self.home)

    def apply(self, *extra: str, timeout: int = 150, **fields: Any) -> Run:
        self.write(**fields)
        return self.cli("apply", "-f", str(self.hcl), "--network", self.network, "--timeout", str(timeout),
                        *extra)

    # -- docker ----------------------------------------------------------------------------

    def container(self, ordinal: int) -> str:
        return Ref(self.scope, self.name).container(ordinal)

    def volume(self, ordinal: int) -> str:
        return Ref(self.scope, self.name).volume(ordinal)

    def app(self, ordinal: int) -> str:
        return f"{self.name}-{ordinal}"

    def pods(self) -> dict[str, PodState]:
        """Every container of this resource (by Voodu's labels), running or not."""
        found = self.runtime.client.containers.list(
            all=True, filters={"label": [f"voodu.scope={self.scope}", f"voodu.name={self.name}"]})
        return {c.name: PodState(c.id, started_ns(c.attrs["State"]["StartedAt"]), int(c.attrs["RestartCount"]),
                                 c.attrs["State"]["Status"]) for c in found}

    def volumes(self) -> dict[str, str]:
        """Data volumes of this resource: name → CreatedAt (changes when a volume is re-created)."""
        found = self.runtime.client.volumes.list(
            filters={"label": [f"voodu.scope={self.scope}", f"voodu.name={self.name}"]})
        return {v.name: str(v.attrs.get("CreatedAt")) for v in found}

    # -- state store -----------------------------------------------------------------------

    @property
    def store(self) -> SqliteStore:
        return SqliteStore(self.home)

    @property
    def password(self) -> str:
        return self.store.resolve(self.scope, self.name)["POSTGRES_PASSWORD"]

    # -- postgres --------------------------------------------------------------------------

    @contextmanager
    def connect(self, ordinal: int, *, timeout: float = 60, port: int | None = None, user: str = "postgres",
                dbname: str = "postgres") -> Iterator[psycopg.Connection[Any]]:
        """Connect from the host through the pod's published loopback port, retrying until it serves."""
        password = self.password
        conn: psycopg.Connection[Any] | None = None
        for attempt in Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.2), reraise=True,
                                retry=retry_if_exception_type(psycopg.OperationalError)):
            with attempt:
                host_port = self.runtime.host_port(self.container(ordinal), port or int(self.base.get("port", 5432)))
                conn = psycopg.connect(host="127.0.0.1", port=host_port, user=user, password=password,
                                       dbname=dbname, autocommit=True, connect_timeout=3)
        assert conn is not None
        with conn:
            yield conn

    def statements(self, *sql: str, ordinal: int = 0, **kwargs: Any) -> list[tuple[Any, ...]]:
        """Run statements in order on one connection; the rows of the last (none: [])."""
        rows: list[tuple[Any, ...]] = []
        with self.connect(ordinal, **kwargs) as conn:
            for statement in sql:
                cur = conn.execute(statement)
                rows = cur.fetchall() if cur.description else []
        return rows

    def query(self, ordinal: int, sql: str, **kwargs: Any) -> list[tuple[Any, ...]]:
        with self.connect(ordinal, **kwargs) as conn:
            return conn.execute(sql).fetchall()

    def show(self, ordinal: int, setting: str, **kwargs: Any) -> str:
        return str(self.query(ordinal, f"SHOW {setting}", **kwargs)[0][0])

    def replication(self, primary: int = 0, **kwargs: Any) -> list[tuple[Any, ...]]:
        return self.query(primary, "SELECT application_name, state FROM pg_stat_replication ORDER BY 1", **kwargs)

    def wait_streaming(self, standbys: list[int], primary: int = 0, timeout: float = 90, **kwargs: Any) -> None:
        want = sorted((self.app(o), "streaming") for o in standbys)

        def check() -> None:
            rows = self.replication(primary, **kwargs)
            assert rows == want, rows

        eventually(check, timeout)


def standing_cluster(runtime: DockerRuntime, work: Path, scope: str, network: str, base: dict[str, Any],
                     standbys: list[int], **connect: Any) -> Cluster:
    """A test module's shared cluster: on its own network (labelled for the session's clean-up),
    applied, and every standby in ``standbys`` streaming."""
    cluster = Cluster(runtime=runtime, scope=scope, name="db", home=work / "home", workdir=work, network=network,
                      base=base)
    runtime.ensure_network(cluster.network, labels={TEST_LABEL: SESSION})
    cluster.apply().ok()
    cluster.wait_streaming(standbys, **connect)
    return cluster
