"""An in-memory :class:`~voodu_postgres.adapters.docker.Runtime` with a simulated Postgres per pod.

Good enough to run the real observe → plan → execute loop (``loop.reconcile``) to convergence in
unit tests, without Docker and without ever really sleeping:

* **Docker objects**: networks, labelled volumes and containers (running / exited / restarting /
  created / absent) with the labels and env of their :class:`PodSpec` — ``voodu.manifest_hash``,
  ``voodu.replica_ordinal``, identity env (``PG_PORT``, ``POSTGRES_USER``, ``POSTGRES_DB``) — their
  DNS aliases, published ports and a log.
* **Postgres per pod**, a small model of the entrypoint plus the server: the role comes from
  ``VOODU_REPLICA_ORDINAL`` against the primary ordinal of ``<state_dir>/primary_ordinal`` when
  the pod binds the state dir, else ``PG_PRIMARY_ORDINAL`` from its env (else 0). The primary runs
  initdb on an empty data volume; a standby clones from ``<PG_NAME>-<P><PG_SCOPE_SUFFIX>`` (found
  by DNS alias) once that pod serves writes, then streams from it; a standby whose data was last a
  primary's (no ``standby.signal``) trips the split-brain guard and crash-loops. Data (initialised,
  ``standby.signal``, timeline, LSN, ``postgresql.auto.conf``) lives on the *volume*, so it survives
  a recreated container. Settings come from the bind-mounted overrides file on the host: a reload
  applies the reloadable ones, restart-only ones become ``pending_restart``, and a parameter marked
  with :meth:`FakeRuntime.reject_param` shows up in ``pg_file_settings.error`` (and makes a boot fail).
* **The Postgres port** (:meth:`postgres`: the typed calls of ``adapters.postgres.Postgres``) is
  answered from the simulated server's state — no SQL text is parsed: ``status`` in the server's
  JSON shape (read by the real adapter's parser), WAL positions, ``promote``, ``reload``,
  ``checkpoint``, ``alter_system``, ``config_errors``, role verifiers, version and size. A call
  reaches the pod that publishes the endpoint's port, is refused (transiently) when nothing serves
  there, and meets the faults injected on that pod's exec when they name the statement the real
  adapter would send; a statement the server refuses fails permanently, as it does for psycopg.
  ``tests/integration/test_postgres_contract.py`` runs the same assertions against a real server.
* **SQL through** :meth:`exec` (what an operator's ``psql`` runs inside a pod: reload, ALTER SYSTEM,
  ``pg_promote``, the recovery flag and WAL position, ``SELECT 1``) is answered by matching the
  ``-c`` statement; ``bash <entrypoint> --repoint`` and a ``pg_rewind`` one-shot too.
  Anything else answers like a SQL error, so an unexpected statement is visible in a test.
* **Time** is a :class:`FakeClock` that advances only when slept on: boot and clone delays
  (``boot_s``, ``clone_s``, :meth:`FakeRuntime.delay`) are measured on it, and
  ``Context(sleep=clock.sleep, clock=clock)`` makes the loop's waits instant.

Fault hooks: :meth:`~FakeRuntime.fail_call` (a RuntimeFailure on the nth call of a method),
:meth:`~FakeRuntime.fail_start` (Docker cannot start a pod), :meth:`~FakeRuntime.crash_loop`,
:meth:`~FakeRuntime.stall` (never gets ready), :meth:`~FakeRuntime.fail_exec` (exec / psql failing
for a pod, optionally only for statements containing a text, optionally only n times),
:meth:`~FakeRuntime.reject_param` (``pg_file_settings`` reports an error), :meth:`~FakeRuntime.lag`
(a standby's WAL receiver stays behind), :meth:`~FakeRuntime.disconnect` (a standby's WAL receiver
is not connected), :meth:`~FakeRuntime.kill` (a container dies without a clean shutdown),
``missing_images``, ``stop_exit_codes`` and ``rewind_output``.

The fake is thread-safe (``observe`` queries pods in parallel): every API call holds one lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from voodu_postgres.adapters.docker import ContainerInfo, ExecResult, RuntimeFailure
from voodu_postgres.adapters.postgres import (
    CONFIG_ERRORS_SQL,
    STATUS_SQL,
    Endpoint,
    alter_system_sql,
    parse_status,
    role_verifier_sql,
    set_role_verifier_sql,
)
from voodu_postgres.adapters.store import SqliteStore
from voodu_postgres.domain.model import Desired, Observed, PgStatus
from voodu_postgres.domain.naming import DATA_MOUNT, Ref
from voodu_postgres.domain.podspec import STATE_MOUNT, PodSpec
from voodu_postgres.domain.spec import PostgresSpec, load_spec
from voodu_postgres.reconciler.desired import assets_dir_for, derive, state_dir_for
from voodu_postgres.reconciler.loop import Context, Progress, Report, apply_actions, reconcile, seed_actions
from voodu_postgres.reconciler.observe import snapshot
from voodu_postgres.render.statefulset import ASSET_MOUNTS, WRAPPER_PATH

OVERRIDES_MOUNT = ASSET_MOUNTS["pg_overrides_conf"]
GUARD_LINE = "refusing to start replica"

#: parameters that only change on a restart (a reload leaves them pending_restart)
RESTART_ONLY = frozenset({
    "shared_buffers", "max_connections", "max_wal_senders", "max_worker_processes", "max_prepared_transactions",
    "max_locks_per_transaction", "max_replication_slots", "wal_level", "wal_buffers", "shared_preload_libraries",
    "huge_pages", "listen_addresses", "port", "hot_standby", "wal_log_hints", "track_commit_timestamp",
})
#: running values when no file sets them
DEFAULTS = {
    "shared_buffers": "128MB", "max_connections": "100", "max_wal_senders": "10", "max_worker_processes": "8",
    "max_prepared_transactions": "0", "max_locks_per_transaction": "64", "work_mem": "4MB",
    "maintenance_work_mem": "64MB", "synchronous_standby_names": "",
}
FIRST_LSN = 0x3000060


def fmt_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_conf(text: str) -> dict[str, str]:
    """``name = value`` lines of a postgresql.conf-style file (quotes and comments handled)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=?\s*(.*)$", raw)
        if not match or raw.lstrip().startswith("#"):
            continue
        name, rest = match.group(1), match.group(2)
        if rest.startswith("'"):
            value, i = [], 1
            while i < len(rest):
                ch = rest[i]
                if ch == "\\" and i + 1 < len(rest):
                    value.append(rest[i + 1])
                    i += 2
                elif ch == "'" and rest[i + 1:i + 2] == "'":
                    value.append("'")
                    i += 2
                elif ch == "'":
                    break
                else:
                    value.append(ch)
                    i += 1
            out[name] = "".join(value)
        else:
            out[name] = rest.split("#", 1)[0].strip()
    return out


# ---------------------------------------------------------------------------------------------
# time


class FakeClock:
    """Monotonic time that only moves when slept on (or advanced): pass ``clock`` as ``Context.clock``
    and ``clock.sleep`` as ``Context.sleep``. ``on_sleep`` callbacks run after each sleep — the
    place to change the world "while apply waits"."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self.on_sleep: list[Callable[[FakeClock], None]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        for hook in list(self.on_sleep):
            hook(self)

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------------------------------
# state


@dataclass
class FakeVolume:
    """A data volume: what survives the container (PGDATA's files)."""

    name: str
    labels: dict[str, str]
    initialized: bool = False  # PG_VERSION exists (initdb or a finished clone)
    standby_signal: bool = False
    clone_incomplete: bool = False  # the entrypoint's sentinel next to PGDATA
    timeline: int = 1
    lsn: int = FIRST_LSN
    auto_conf: dict[str, str] = field(default_factory=dict)  # postgresql.auto.conf
    roles: dict[str, str] = field(default_factory=dict)  # role → stored verifier
    conninfo_primary: int | None = None  # the primary ordinal voodu-runtime.conf's primary_conninfo names


@dataclass
class FakePostgres:
    """The server process of a running container."""

    phase: str  # "initdb" | "cloning" | "starting" | "serving"
    since: float
    ready_at: float = 0.0
    clone_from: int | None = None  # the ordinal a clone reads from (fixed at boot, like the entrypoint)
    clone_started: bool = False
    upstream: int | None = None  # the primary ordinal the WAL receiver follows (loaded primary_conninfo)
    running: dict[str, str] = field(default_factory=dict)  # settings in effect
    loaded: dict[str, str] = field(default_factory=dict)  # file settings at the last boot or reload

    @property
    def serving(self) -> bool:
        return self.phase == "serving"


@dataclass
class FakeContainer:
    id: str
    pod: PodSpec
    state: str = "created"
    restart_count: int = 0
    exit_code: int = 0
    logs: list[str] = field(default_factory=list)
    pg: FakePostgres | None = None
    crash: str | None = None  # why it is restarting: "guard", "config", "hook", "clone"
    host_ports: dict[int, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.pod.container

    @property
    def ordinal(self) -> int:
        return self.pod.ordinal

    @property
    def env(self) -> dict[str, str]:
        return self.pod.env

    @property
    def data_volume(self) -> str | None:
        return next((v for v, path in self.pod.volumes.items() if path == DATA_MOUNT), None)

    def log(self, *lines: str) -> None:
        self.logs.extend(lines)


@dataclass
class _CallFault:
    method: str
    skip: int
    times: int
    failure: RuntimeFailure


@dataclass
class _ExecFault:
    container: str
    contains: str | None
    times: int | None
    result: ExecResult | None
    failure: RuntimeFailure | None


P = ParamSpec("P")
R = TypeVar("R")


def _api(fn: Callable[Concatenate[FakeRuntime, P], R]) -> Callable[Concatenate[FakeRuntime, P], R]:
    """One runtime call: count it, inject a scheduled failure, bring the simulation up to now."""

    name = fn.__name__

    def call(self: FakeRuntime, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            self.calls[name] += 1
            self._inject(name)
            self._settle()
            return fn(self, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = fn.__doc__
    return call


# ---------------------------------------------------------------------------------------------
# the runtime


class FakeRuntime:
    """In-memory Docker + Postgres. See the module docstring for what is simulated."""

    def __init__(self, clock: FakeClock | None = None, *, boot_s: float = 0.0, clone_s: float = 0.0,
                 primary_wait_timeout_s: float = 30.0) -> None:
        self.clock = clock or FakeClock()
        self.boot_s = boot_s
        self.clone_s = clone_s
        self.primary_wait_timeout_s = primary_wait_timeout_s
        self.networks: dict[str, dict[str, str]] = {}
        self.volumes: dict[str, FakeVolume] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.images: set[str] = set()
        # what happened, for assertions
        self.calls: Counter[str] = Counter()
        self.events: list[tuple[str, str]] = []  # mutating calls: (method, object name)
        self.statements: list[tuple[str, str]] = []  # (container, SQL or argv) of every exec
        # fault hooks
        self.missing_images: set[str] = set()
        self.stop_exit_codes: dict[str, int] = {}
        self.rewind_output: str | None = None  # pg_rewind fails with this output
        self.rejected: dict[str, str] = {}  # parameter → pg_file_settings.error
        self._call_faults: list[_CallFault] = []
        self._exec_faults: list[_ExecFault] = []
        self._start_faults: dict[str, RuntimeFailure] = {}
        self._crash_loops: dict[str, list[str]] = {}
        self._stalled: set[str] = set()
        self._lags: dict[str, int] = {}
        self._disconnected: set[str] = set()
        self._cut: set[str] = set()  # containers detached from the cluster network
        self._delays: dict[str, tuple[float | None, float | None]] = {}
        self._lock = threading.RLock()
        self._ids = 0
        self._next_host_port = 49153

    # -- fault hooks --------------------------------------------------------------------------

    def fail_call(self, method: str, *, nth: int = 1, times: int = 1, transient: bool = True,
                  message: str | None = None) -> None:
        """Raise RuntimeFailure on the ``nth`` call of ``method`` from now on (and the ``times - 1``
        calls after it)."""
        failure = RuntimeFailure(message or f"{method}: 503 Service Unavailable (injected)", transient=transient)
        self._call_faults.append(_CallFault(method, nth - 1, times, failure))

    def fail_start(self, container: str, message: str = "OCI runtime create failed (injected)", *,
                   transient: bool = False) -> None:
        """Docker cannot start this container: ``run_pod`` leaves it ``created`` and raises, like
        ``start_container``."""
        self._start_faults[container] = RuntimeFailure(f"start {container}: {message}", transient=transient)

    def crash_loop(self, container: str, *lines: str) -> None:
        """Every boot of this container fails: it is ``restarting``, and its log ends with ``lines``."""
        self._crash_loops[container] = list(lines) or ["FATAL:  could not start (injected)"]

    def stall(self, container: str) -> None:
        """Postgres in this container never gets past its current phase (boot or clone)."""
        self._stalled.add(container)

    def heal(self, container: str) -> None:
        """Remove the start, crash-loop and stall hooks of a container."""
        self._start_faults.pop(container, None)
        self._crash_loops.pop(container, None)
        self._stalled.discard(container)
        self._lags.pop(container, None)
        self._disconnected.discard(container)
        self._cut.discard(container)

    def fail_exec(self, container: str, *, contains: str | None = None, times: int | None = None,
                  exit_code: int = 2, output: str | None = None, failure: RuntimeFailure | None = None) -> None:
        """Exec in ``container`` fails — only for argv containing ``contains`` (e.g. ``pg_reload_conf``),
        only the next ``times`` matching calls (None: always). By default psql's exit code 2 with a
        connection error; ``failure`` raises a RuntimeFailure instead (a Docker error)."""
        result = None if failure is not None else ExecResult(exit_code, output or (
            'psql: error: connection to server at "127.0.0.1" failed: server closed the connection '
            "unexpectedly (injected)"))
        self._exec_faults.append(_ExecFault(container, contains, times, result, failure))

    def reject_param(self, name: str, error: str = "unrecognized configuration parameter") -> None:
        """Postgres rejects this parameter: ``pg_file_settings`` reports ``error`` for it while it is in
        the overrides file, a reload keeps its old value, and a boot with it fails (FATAL)."""
        self.rejected[name] = error

    def lag(self, container: str, nbytes: int) -> None:
        """This standby's WAL receiver stays ``nbytes`` behind its primary (it keeps what it has and
        catches up to ``primary LSN - nbytes``). A clean shutdown of the primary still flushes it all."""
        self._lags[container] = nbytes

    def disconnect(self, container: str) -> None:
        """This standby's WAL receiver is not connected (a partition): it serves, in recovery, with its
        ``primary_conninfo`` intact, but streams nothing and is not in the primary's pg_stat_replication."""
        self._disconnected.add(container)

    def pause(self, container: str) -> None:
        """``docker pause``: every process frozen. Exec fails; the container still exists and holds
        its state, and an unpause resumes it as it was (a hung primary)."""
        with self._lock:
            self._settle()
            self.containers[container].state = "paused"

    def unpause(self, container: str) -> None:
        with self._lock:
            self.containers[container].state = "running"

    def cut(self, container: str) -> None:
        """``docker network disconnect``: the container runs and answers over loopback, but nothing
        on the cluster network reaches it (its standbys stop streaming from it)."""
        with self._lock:
            self._settle()
            self._cut.add(container)

    def kill(self, container: str, exit_code: int = 137) -> None:
        """The container dies at once (SIGKILL, OOM, host crash): ``exited`` with ``exit_code``, no clean
        shutdown, so each standby keeps only the WAL it had already received."""
        with self._lock:
            self._settle()
            c = self.containers[container]
            c.log("LOG:  terminated by signal 9: Killed (injected)")
            c.state, c.exit_code, c.pg, c.crash = "exited", exit_code, None, None

    def delay(self, container: str, *, boot: float | None = None, clone: float | None = None) -> None:
        """Per-container boot / clone durations (seconds of the fake clock)."""
        self._delays[container] = (boot, clone)

    # -- test helpers (no fault injection, no call counting) ----------------------------------

    def container(self, name: str) -> FakeContainer:
        with self._lock:
            self._settle()
            return self.containers[name]

    def volume(self, name: str) -> FakeVolume:
        return self.volumes[name]

    def setting(self, container: str, name: str) -> str:
        """The value Postgres in ``container`` runs with."""
        with self._lock:
            pg = self.containers[container].pg
            assert pg is not None, f"{container} runs no postgres"
            return pg.running.get(name, DEFAULTS.get(name, ""))

    def serving(self, container: str) -> bool:
        with self._lock:
            self._settle()
            c = self.containers.get(container)
            return c is not None and c.state == "running" and c.pg is not None and c.pg.serving

    def write(self, container: str, nbytes: int = 4096) -> None:
        """Commit ``nbytes`` of WAL on a writable pod."""
        with self._lock:
            vol = self._vol(self.containers[container])
            assert not vol.standby_signal, f"{container} is in recovery"
            vol.lsn += nbytes

    def mutations(self, *methods: str) -> list[tuple[str, str]]:
        """Recorded mutating calls, optionally only of the given methods."""
        return [e for e in self.events if not methods or e[0] in methods]

    # -- Runtime: networks, volumes, images ----------------------------------------------------

    @_api
    def ensure_network(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self.events.append(("ensure_network", name))
        self.networks.setdefault(name, dict(labels or {}))

    @_api
    def network_exists(self, name: str) -> bool:
        return name in self.networks

    @_api
    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        self._ensure_volume(name, labels)

    @_api
    def ensure_image(self, image: str) -> None:
        self._ensure_image(image)

    @_api
    def remove_volume(self, name: str) -> None:
        self.events.append(("remove_volume", name))
        users = [c.name for c in self.containers.values() if name in c.pod.volumes]
        if users:
            raise RuntimeFailure(f"remove volume {name}: volume is in use - [{', '.join(users)}]")
        self.volumes.pop(name, None)

    @_api
    def list_volumes(self, labels: Mapping[str, str]) -> list[str]:
        return [v.name for v in self.volumes.values() if _matches(v.labels, labels)]

    # -- Runtime: containers -------------------------------------------------------------------

    @_api
    def run_pod(self, pod: PodSpec) -> str:
        self.events.append(("run_pod", pod.container))
        for volume, labels in pod.volume_labels.items():
            self._ensure_volume(volume, labels)
        for volume in pod.volumes:
            self._ensure_volume(volume, {})
        self._ensure_image(pod.image)
        if pod.container in self.containers:
            raise RuntimeFailure(f"start {pod.container}: Conflict. The container name \"/{pod.container}\" is "
                                 "already in use")
        self._ids += 1
        container = FakeContainer(id=f"{self._ids:012x}", pod=pod)
        for port in pod.ports:
            if port.host_port is not None:
                container.host_ports[port.container_port] = port.host_port
            else:
                container.host_ports[port.container_port] = self._next_host_port
                self._next_host_port += 1
        self.containers[pod.container] = container
        self._start(container)
        return container.id

    @_api
    def start_container(self, name: str) -> None:
        self.events.append(("start_container", name))
        container = self._get(name, f"start {name}")
        if container.state == "running":
            return
        self._start(container)

    @_api
    def restart_container(self, name: str, *, timeout: int = 30) -> None:
        self.events.append(("restart_container", name))
        container = self._get(name, f"restart {name}")
        self._stop(container)
        self._start(container)

    @_api
    def stop_container(self, name: str, *, timeout: int = 30) -> int:
        self.events.append(("stop_container", name))
        container = self.containers.get(name)
        if container is None:
            raise RuntimeFailure(f"container {name} not found")
        self._stop(container)
        container.exit_code = self.stop_exit_codes.get(name, 0)
        return container.exit_code

    @_api
    def remove_container(self, name: str, *, timeout: int = 30) -> None:
        self.events.append(("remove_container", name))
        container = self.containers.get(name)
        if container is None:
            return
        self._stop(container)
        del self.containers[name]
        self._cut.discard(name)  # a new container of that name is created on the network again

    @_api
    def container_state(self, name: str) -> str | None:
        container = self.containers.get(name)
        return None if container is None else container.state

    @_api
    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        out = []
        for c in self.containers.values():
            if not _matches(c.pod.labels, labels):
                continue
            health = None
            if c.pod.healthcheck is not None and c.state == "running":
                health = "healthy" if c.pg is not None and c.pg.serving else "starting"
            out.append(ContainerInfo(
                name=c.name, state=c.state, health=health, labels=dict(c.pod.labels),
                restart_count=c.restart_count, exit_code=c.exit_code,
                identity={k: c.env[k] for k in ("PG_PORT", "POSTGRES_USER", "POSTGRES_DB") if k in c.env},
                published=self._published(c),
                networks=() if c.name in self._cut else (c.pod.network,),
            ))
        return out

    @_api
    def host_port(self, name: str, container_port: int) -> int:
        container = self._get(name, name)
        if container.state != "running" or container_port not in container.host_ports:
            raise RuntimeFailure(f"{name}: port {container_port} is not published")
        return container.host_ports[container_port]

    @_api
    def image_of(self, name: str) -> str:
        container = self.containers.get(name)
        if container is None:
            raise RuntimeFailure(f"container {name} not found")
        return "sha256:" + hashlib.sha256(container.pod.image.encode()).hexdigest()

    @_api
    def logs_tail(self, name: str, lines: int = 20) -> str:
        container = self.containers.get(name)
        if container is None:
            return ""
        return "".join(f"{line}\n" for line in container.logs[-lines:])

    # -- Runtime: exec and one-shots -----------------------------------------------------------

    @_api
    def exec(self, name: str, argv: list[str], *, user: str = "postgres",
             env: Mapping[str, str] | None = None) -> ExecResult:
        sql = argv[argv.index("-c") + 1] if argv[:1] == ["psql"] and "-c" in argv else None
        self.statements.append((name, sql if sql is not None else " ".join(argv)))
        container = self.containers.get(name)
        if container is None:
            raise RuntimeFailure(f"container {name} not found")
        fault = self._exec_fault(name, " ".join(argv))
        if fault is not None:
            if fault.failure is not None:
                raise fault.failure
            assert fault.result is not None
            return fault.result
        if container.state != "running":
            raise RuntimeFailure(f"exec in {name}: Container {container.id} is not running")
        if argv[:3] == ["bash", WRAPPER_PATH, "--repoint"]:
            return self._repoint(container)
        if sql is None:
            return ExecResult(127, f"fake runtime: cannot run {argv[0]!r} in {name}")
        port = argv[argv.index("-p") + 1] if "-p" in argv else "5432"
        pg = container.pg
        if pg is None or not pg.serving or port != container.env.get("PG_PORT", "5432"):
            return ExecResult(2, f'psql: error: connection to server at "127.0.0.1", port {port} failed: '
                                 "Connection refused")
        for flag, key in (("-U", "POSTGRES_USER"), ("-d", "POSTGRES_DB")):
            if flag in argv and argv[argv.index(flag) + 1] != container.env.get(key, "postgres"):
                return ExecResult(2, f'psql: error: FATAL:  {key.lower()} "{argv[argv.index(flag) + 1]}" '
                                     "does not exist")
        return self._answer(container, pg, sql)

    @_api
    def run_oneshot(self, image: str, argv: list[str], *, volumes_from: str, network: str,
                    env: Mapping[str, str] | None = None, user: str = "postgres",
                    labels: Mapping[str, str] | None = None, timeout: float = 300) -> ExecResult:
        self.events.append(("run_oneshot", volumes_from))
        container = self.containers.get(volumes_from)
        if container is None:
            raise RuntimeFailure(f"one-shot {argv[0]}: No such container: {volumes_from}")
        script = " ".join(argv)
        if "pg_rewind" not in script:
            return ExecResult(0, "")
        if container.state == "running":
            return ExecResult(1, "pg_rewind: error: target server must be shut down cleanly")
        if self.rewind_output is not None:
            return ExecResult(1, self.rewind_output)
        host = re.search(r"host=(\S+)", (env or {}).get("SOURCE", ""))
        source = self._by_alias(host.group(1), container.pod.network) if host else None
        if source is None or not self._writable(source):
            return ExecResult(1, "pg_rewind: error: could not connect to server: Connection refused")
        vol, src = self._vol(container), self._vol(source)
        vol.standby_signal, vol.timeline, vol.lsn = True, src.timeline, src.lsn
        return ExecResult(0, "pg_rewind: servers diverged at WAL location 0/3000060 on timeline 1\n"
                             "pg_rewind: Done!")

    # -- the Postgres port ----------------------------------------------------------------------

    def postgres(self) -> FakeRuntime:
        return self

    def status(self, endpoint: Endpoint) -> PgStatus:
        """The typed status of the pod behind ``endpoint``, built from the simulation in the
        server's JSON shape and parsed by the real adapter's parser."""
        container, pg = self._session(endpoint, STATUS_SQL)
        return parse_status(json.loads(json.dumps(self._status(container, pg))))

    # The rest of the typed port answers from the simulated server's state directly (no SQL text
    # is parsed): each call opens a "session" as the real adapter's connection would — refused
    # when nothing serves on the endpoint's port, and subject to the faults injected on the pod's
    # exec when they name the statement the real adapter sends — then reads or changes the volume
    # and server state the rest of the simulation uses.

    def in_recovery(self, endpoint: Endpoint) -> bool:
        container, _pg = self._session(endpoint, "SELECT pg_is_in_recovery()")
        return self._vol(container).standby_signal

    def current_lsn(self, endpoint: Endpoint) -> int:
        container, _pg = self._session(endpoint, "SELECT pg_current_wal_lsn()")
        vol = self._vol(container)
        if vol.standby_signal:
            raise self._refused(endpoint, "recovery is in progress")
        return vol.lsn

    def received_lsn(self, endpoint: Endpoint) -> int | None:
        container, _pg = self._session(endpoint, "SELECT pg_last_wal_receive_lsn()")
        vol = self._vol(container)
        return vol.lsn if vol.standby_signal else None

    def promote(self, endpoint: Endpoint, *, wait_s: int = 60) -> bool:
        try:
            container, pg = self._session(endpoint, f"SELECT pg_promote(true, {wait_s})")
        except _Answered as answer:  # an injected answer: pg_promote() returned it
            return answer.value == "t"
        if not self._promoted(container, pg):
            raise self._refused(endpoint, "recovery is not in progress")
        return True

    def _promoted(self, c: FakeContainer, pg: FakePostgres) -> bool:
        """``pg_promote()`` on the simulated server (the port's call and an operator's psql): False
        when it is not in recovery."""
        vol = self._vol(c)
        if not vol.standby_signal:
            return False
        vol.standby_signal = False
        vol.timeline += 1
        pg.upstream = None
        c.log("LOG:  received promote request", f"LOG:  selected new timeline ID: {vol.timeline}",
              "LOG:  database system is ready to accept connections")
        return True

    def reload(self, endpoint: Endpoint) -> None:
        container, pg = self._session(endpoint, "SELECT pg_reload_conf()")
        self._reload(container, pg)

    def checkpoint(self, endpoint: Endpoint) -> None:
        self._session(endpoint, "CHECKPOINT")

    def alter_system(self, endpoint: Endpoint, setting: str, value: str | None) -> None:
        container, _pg = self._session(endpoint, alter_system_sql(setting, value))
        if value is None:
            self._vol(container).auto_conf.pop(setting, None)
        else:
            self._vol(container).auto_conf[setting] = value

    def config_errors(self, endpoint: Endpoint) -> list[str]:
        container, _pg = self._session(endpoint, CONFIG_ERRORS_SQL)
        return [f"{k}: {self.rejected[k]}" for k in self._file(container) if k in self.rejected]

    def role_verifier(self, endpoint: Endpoint, role: str) -> str:
        container, _pg = self._session(endpoint, role_verifier_sql(role))
        return self._vol(container).roles.get(role, "")

    def set_role_verifier(self, endpoint: Endpoint, role: str, verifier: str) -> None:
        container, _pg = self._session(endpoint, set_role_verifier_sql(role, verifier))
        vol = self._vol(container)
        if vol.standby_signal:
            raise self._refused(endpoint, "cannot execute ALTER ROLE in a read-only transaction")
        vol.roles[role] = verifier
        vol.lsn += 0x100

    def server_version_num(self, endpoint: Endpoint) -> int:
        container, _pg = self._session(endpoint, "SHOW server_version_num")
        major = container.pod.image.rpartition(":")[2]
        return (int(major) if major.isdigit() else 15) * 10000 + 5

    def database_size(self, endpoint: Endpoint) -> int:
        container, _pg = self._session(endpoint, "SELECT pg_database_size(current_database())")
        return 7 * 1024 * 1024 + self._vol(container).lsn  # an empty database's ~7 MiB, growing with its WAL

    def _session(self, endpoint: Endpoint, statement: str) -> tuple[FakeContainer, FakePostgres]:
        """A connection to the pod publishing ``endpoint.port`` and one statement on it, as the
        real adapter would meet them: connection refused (transient) unless it serves there; a
        fault injected on the pod's exec for this statement fails it the same way it fails psql."""
        with self._lock:
            self.calls["postgres"] += 1
            self._settle()
            container = next((c for c in self.containers.values() if endpoint.port in c.host_ports.values()), None)
            self.statements.append((container.name if container else endpoint.name, statement))
            refused = RuntimeFailure(f"{endpoint.name}: connection to server at \"{endpoint.host}\", port "
                                     f"{endpoint.port} failed: Connection refused", transient=True)
            if container is None:
                raise refused
            fault = self._exec_fault(container.name, statement)
            if fault is not None:
                if fault.failure is not None:
                    raise RuntimeFailure(f"{endpoint.name}: {fault.failure}",
                                         transient=fault.failure.transient) from fault.failure
                assert fault.result is not None
                lines = fault.result.output.strip().splitlines() or [f"exit {fault.result.exit_code}"]
                if fault.result.exit_code == 0:  # an injected answer: the statement "returned" it
                    raise _Answered(lines[-1])
                raise RuntimeFailure(f"{endpoint.name}: {lines[-1]}", transient=not lines[-1].startswith("ERROR:"))
            pg = container.pg
            if container.state != "running" or pg is None or not pg.serving:
                raise refused
            return container, pg

    @staticmethod
    def _refused(endpoint: Endpoint, message: str) -> RuntimeFailure:
        """The server refused the statement: permanent, as for the real adapter."""
        return RuntimeFailure(f"{endpoint.name}: {message}")

    # -- simulation ----------------------------------------------------------------------------

    def _inject(self, method: str) -> None:
        for fault in self._call_faults:
            if fault.method != method or fault.times <= 0:
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            fault.times -= 1
            raise fault.failure

    def _exec_fault(self, name: str, text: str) -> _ExecFault | None:
        for fault in self._exec_faults:
            if fault.container != name or (fault.contains is not None and fault.contains not in text):
                continue
            if fault.times is not None:
                if fault.times <= 0:
                    continue
                fault.times -= 1
            return fault
        return None

    def _get(self, name: str, prefix: str) -> FakeContainer:
        container = self.containers.get(name)
        if container is None:
            raise RuntimeFailure(f"{prefix}: No such container: {name}")
        return container

    def _ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        if name not in self.volumes:
            self.events.append(("create_volume", name))
            self.volumes[name] = FakeVolume(name, dict(labels))

    def _ensure_image(self, image: str) -> None:
        if image in self.missing_images:
            raise RuntimeFailure(f"image {image} is not on this host and could not be pulled: "
                                 f"manifest for {image} not found: manifest unknown")
        self.images.add(image)

    def _published(self, c: FakeContainer) -> dict[int, str]:
        out = {}
        for port in c.pod.ports:
            if c.state == "running":
                out[port.container_port] = f"{port.host_ip}:{c.host_ports[port.container_port]}"
            else:
                out[port.container_port] = f"{port.host_ip}:{port.host_port or '(random)'}"
        return out

    def _vol(self, c: FakeContainer) -> FakeVolume:
        name = c.data_volume or f"anonymous-{c.id}"
        return self.volumes.setdefault(name, FakeVolume(name, {}))

    def _delay(self, c: FakeContainer, kind: str) -> float:
        boot, clone = self._delays.get(c.name, (None, None))
        if kind == "boot":
            return self.boot_s if boot is None else boot
        return self.clone_s if clone is None else clone

    def _primary_ordinal(self, c: FakeContainer) -> int:
        """What the entrypoint does: the state file (standalone) wins over the creation-time env."""
        raw = c.env.get("PG_PRIMARY_ORDINAL", "0").strip()
        primary = int(raw) if raw.isdigit() else 0
        for bind in c.pod.binds:
            if bind.target == STATE_MOUNT:
                path = Path(bind.source) / "primary_ordinal"
                text = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
                if text.isdigit():
                    primary = int(text)
        return primary

    def _file(self, c: FakeContainer) -> dict[str, str]:
        """The overrides file as it is on the host right now (bind mounts follow the inode)."""
        for bind in c.pod.binds:
            if bind.target == OVERRIDES_MOUNT:
                path = Path(bind.source)
                return parse_conf(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return {}

    def _valid(self, settings: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in settings.items() if k not in self.rejected}

    def _host(self, c: FakeContainer, ordinal: int) -> str:
        return f"{c.env.get('PG_NAME', '')}-{ordinal}{c.env.get('PG_SCOPE_SUFFIX', '.voodu')}"

    def _by_alias(self, host: str, network: str) -> FakeContainer | None:
        return next((c for c in self.containers.values()
                     if c.state == "running" and c.pod.network == network and host in c.pod.aliases), None)

    def _writable(self, c: FakeContainer) -> bool:
        return c.state == "running" and c.pg is not None and c.pg.serving and not self._vol(c).standby_signal

    def _primary_at(self, c: FakeContainer, ordinal: int | None) -> FakeContainer | None:
        """The pod ``c`` reaches as ``<name>-<ordinal><suffix>`` when it serves writes on c's port."""
        if ordinal is None:
            return None
        target = self._by_alias(self._host(c, ordinal), c.pod.network)
        if target is None or not self._writable(target):
            return None
        if target.env.get("PG_PORT", "5432") != c.env.get("PG_PORT", "5432"):
            return None
        return target

    def _streams_from(self, c: FakeContainer) -> FakeContainer | None:
        pg = c.pg
        if c.state != "running" or pg is None or not pg.serving or not self._vol(c).standby_signal \
                or c.name in self._disconnected:
            return None
        source = self._primary_at(c, pg.upstream)
        if source is None or self._vol(source).timeline < self._vol(c).timeline or {c.name, source.name} & self._cut:
            return None
        return source

    def _start(self, c: FakeContainer) -> None:
        failure = self._start_faults.get(c.name)
        if failure is not None:
            c.state = "created" if c.state == "created" else "exited"
            raise failure
        self._boot(c)

    def _stop(self, c: FakeContainer) -> None:
        if c.state == "running" and c.pg is not None and c.pg.serving and self._writable(c):
            # a clean shutdown waits until every connected standby has flushed all WAL
            for other in self.containers.values():
                if self._streams_from(other) is c:
                    self._vol(other).lsn = self._vol(c).lsn
        if c.state in ("running", "restarting"):
            c.log("LOG:  received fast shutdown request", "LOG:  database system is shut down")
        c.state = "exited"
        c.pg = None
        c.crash = None

    def _crash(self, c: FakeContainer, reason: str, *lines: str) -> None:
        c.log(*lines)
        c.state = "restarting"
        c.restart_count += 1
        c.pg = None
        c.crash = reason

    def _boot(self, c: FakeContainer) -> None:
        """The entrypoint, then the server: role from the ordinal against the primary ordinal."""
        now = self.clock()
        c.state, c.exit_code, c.crash, c.pg = "running", 0, None, None
        if c.name in self._crash_loops:
            self._crash(c, "hook", *self._crash_loops[c.name])
            return
        ordinal, primary = c.ordinal, self._primary_ordinal(c)
        vol = self._vol(c)
        host = self._host(c, primary)
        if ordinal != primary:
            c.log(f"voodu-postgres: role=STANDBY (ordinal={ordinal}, primary={primary})")
            if vol.clone_incomplete:
                c.log("voodu-postgres: a previous pg_basebackup did not finish — wiping the contents of "
                      "PGDATA and cloning again")
                vol.initialized = vol.standby_signal = vol.clone_incomplete = False
            if not vol.initialized:
                c.log(f"voodu-postgres: no cluster in PGDATA yet — cloning from primary {host}")
                c.pg = FakePostgres(phase="cloning", since=now, clone_from=primary)
                return
            if not vol.standby_signal:
                self._crash(c, "guard", f"voodu-postgres: ERROR: {GUARD_LINE} {ordinal} as a STANDBY.",
                            "voodu-postgres:   Its data directory has no standby.signal: it was last used by "
                            "a PRIMARY.")
                return
            c.log("voodu-postgres: PGDATA already holds a cluster and standby.signal is present — resuming "
                  "as a standby")
            vol.conninfo_primary = primary
            c.pg = FakePostgres(phase="starting", since=now, ready_at=now + self._delay(c, "boot"),
                                upstream=primary)
        else:
            c.log(f"voodu-postgres: role=PRIMARY (ordinal={ordinal})")
            if vol.initialized:
                vol.conninfo_primary = None
                c.pg = FakePostgres(phase="starting", since=now, ready_at=now + self._delay(c, "boot"))
            else:
                c.log("The files belonging to this database system will be owned by user \"postgres\".")
                c.pg = FakePostgres(phase="initdb", since=now, ready_at=now + self._delay(c, "boot"))
        self._load_settings(c)

    def _load_settings(self, c: FakeContainer) -> None:
        """Server start: read the config files; an invalid one stops the start (FATAL)."""
        file = self._file(c)
        bad = sorted(k for k in file if k in self.rejected)
        if bad:
            self._crash(c, "config", *(f'LOG:  {self.rejected[k]} "{k}"' for k in bad),
                        f'FATAL:  configuration file "{OVERRIDES_MOUNT}" contains errors')
            return
        assert c.pg is not None
        c.pg.running = dict(file)
        c.pg.loaded = dict(file)

    def _settle(self) -> None:
        """Bring every container up to the clock: boots finish, clones complete, WAL streams."""
        for _ in range(6):
            changed = False
            for c in list(self.containers.values()):
                if c.state == "restarting":
                    changed |= self._retry_crashed(c)
                elif c.state == "running" and c.pg is not None and c.name not in self._stalled:
                    changed |= self._advance(c)
            if not changed:
                break
        for c in self.containers.values():
            source = self._streams_from(c)
            if source is not None:
                vol, src = self._vol(c), self._vol(source)
                lsn = max(vol.lsn, src.lsn - self._lags[c.name]) if c.name in self._lags else src.lsn
                vol.lsn, vol.timeline, vol.roles = lsn, src.timeline, dict(src.roles)

    def _retry_crashed(self, c: FakeContainer) -> bool:
        """Docker keeps restarting a crashed container: it comes up once the cause is gone."""
        vol = self._vol(c)
        gone = (c.crash == "hook" and c.name not in self._crash_loops) \
            or (c.crash == "config" and not any(k in self.rejected for k in self._file(c))) \
            or (c.crash == "guard" and vol.standby_signal) \
            or c.crash == "clone"
        if gone:
            self._boot(c)
        return gone

    def _advance(self, c: FakeContainer) -> bool:
        pg, now, vol = c.pg, self.clock(), self._vol(c)
        assert pg is not None
        if pg.phase == "cloning":
            source = self._primary_at(c, pg.clone_from)
            if source is None:
                if pg.clone_started:
                    vol.clone_incomplete = True
                    self._crash(c, "clone", "pg_basebackup: error: could not receive data from WAL stream: "
                                            "server closed the connection unexpectedly",
                                "voodu-postgres: ERROR: pg_basebackup failed — the sentinel is kept, so the "
                                "next boot wipes PGDATA and retries")
                    return True
                if now - pg.since >= self.primary_wait_timeout_s:
                    self._crash(c, "clone", f"voodu-postgres: ERROR: primary {self._host(c, pg.clone_from or 0)} "
                                            "did not become ready in time — giving up")
                    return True
                return False
            if not pg.clone_started:
                pg.clone_started = True
                pg.ready_at = now + self._delay(c, "clone")
                vol.clone_incomplete = True
                c.log(f"pg_basebackup: initiating base backup from {self._host(c, pg.clone_from or 0)}")
                return True
            if now < pg.ready_at:
                return False
            src = self._vol(source)
            vol.initialized, vol.standby_signal, vol.clone_incomplete = True, True, False
            vol.timeline, vol.lsn = src.timeline, src.lsn
            vol.auto_conf, vol.roles = dict(src.auto_conf), dict(src.roles)
            vol.conninfo_primary = pg.clone_from
            c.log(f"voodu-postgres: clone complete — starting as a standby of {self._host(c, pg.clone_from or 0)}")
            c.pg = FakePostgres(phase="starting", since=now, ready_at=now + self._delay(c, "boot"),
                                upstream=pg.clone_from)
            self._load_settings(c)
            return True
        if pg.phase in ("initdb", "starting") and now >= pg.ready_at:
            if pg.phase == "initdb":
                vol.initialized, vol.standby_signal, vol.timeline, vol.lsn = True, False, 1, FIRST_LSN
                vol.roles = {c.env.get("POSTGRES_USER", "postgres"): "SCRAM-SHA-256$4096:initdb"}
            pg.phase = "serving"
            c.log("LOG:  database system is ready to accept connections")
            return True
        return False

    def _repoint(self, c: FakeContainer) -> ExecResult:
        primary = self._primary_ordinal(c)
        vol = self._vol(c)
        vol.conninfo_primary = None if primary == c.ordinal else primary
        return ExecResult(0, f"voodu-postgres: voodu-runtime.conf rewritten for primary ordinal {primary}\n")

    def _reload(self, c: FakeContainer, pg: FakePostgres) -> None:
        file = self._valid(self._file(c))
        for name in set(pg.loaded) | set(file):
            if name in RESTART_ONLY:
                continue
            if name in file:
                pg.running[name] = file[name]
            else:
                pg.running.pop(name, None)
        pg.loaded = file
        if self._vol(c).standby_signal:
            pg.upstream = self._vol(c).conninfo_primary

    def _pending(self, c: FakeContainer, pg: FakePostgres) -> list[dict[str, Any]]:
        now = self._file(c)
        out = []
        for name in sorted((set(pg.running) | set(pg.loaded)) & RESTART_ONLY):
            current = pg.running.get(name, DEFAULTS.get(name, ""))
            if pg.loaded.get(name, DEFAULTS.get(name, "")) != current:
                out.append({"name": name, "current": current, "next": now.get(name)})
        return out

    def _status(self, c: FakeContainer, pg: FakePostgres) -> dict[str, Any]:
        vol = self._vol(c)
        recovery = vol.standby_signal
        source = self._streams_from(c)
        replicas = [] if recovery else [
            {"application_name": f"{o.env.get('PG_NAME', '')}-{o.ordinal}", "state": "streaming",
             "lag_bytes": vol.lsn - self._vol(o).lsn}
            for o in sorted(self.containers.values(), key=lambda x: x.ordinal) if self._streams_from(o) is c
        ]
        return {
            "in_recovery": recovery,
            "timeline": (vol.timeline if source is not None else None) if recovery else vol.timeline,
            "lsn": fmt_lsn(vol.lsn),
            "pending": self._pending(c, pg),
            "sync_auto": vol.auto_conf.get("synchronous_standby_names"),
            "boot_overrides": [],
            "receiver_status": "streaming" if source is not None else None,
            "received_lsn": fmt_lsn(vol.lsn) if recovery else None,
            "receiver_host": self._host(c, source.ordinal) if source is not None else None,
            "conninfo_host": self._host(c, pg.upstream) if recovery and pg.upstream is not None else None,
            "replicas": replicas,
        }

    def _answer(self, c: FakeContainer, pg: FakePostgres, sql: str) -> ExecResult:
        vol = self._vol(c)
        text = " ".join(sql.split())
        recovery = vol.standby_signal

        def ok(output: str = "") -> ExecResult:
            return ExecResult(0, f"{output}\n" if output else "")

        def error(message: str) -> ExecResult:
            return ExecResult(1, f"ERROR:  {message}\n")

        if text == "SELECT pg_reload_conf()":
            self._reload(c, pg)
            return ok("t")
        if match := re.fullmatch(r"ALTER SYSTEM SET (\w+)\s*(?:=|TO)\s*'((?:[^']|'')*)'", sql.strip(), re.S):
            vol.auto_conf[match.group(1)] = match.group(2).replace("''", "'")
            return ok()
        if match := re.fullmatch(r"ALTER SYSTEM RESET (\w+)", text):
            vol.auto_conf.pop(match.group(1), None)
            return ok()
        if re.fullmatch(r"SELECT pg_promote\(.*\)", text):
            return ok("t") if self._promoted(c, pg) else error("recovery is not in progress")
        if text == "SELECT pg_is_in_recovery()":
            return ok("t" if recovery else "f")
        if text == "SELECT pg_current_wal_lsn()":
            return error("recovery is in progress") if recovery else ok(fmt_lsn(vol.lsn))
        if text == "SELECT 1":
            return ok("1")
        return error(f"fake postgres cannot answer: {text[:120]}")


class _Answered(RuntimeFailure):
    """An answer injected with ``fail_exec(exit_code=0, output=…)``: what the statement returned."""

    def __init__(self, value: str) -> None:
        super().__init__(f"unexpected answer {value!r}")
        self.value = value


def _matches(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


# ---------------------------------------------------------------------------------------------
# a cluster under test: the store, the fake and a Context wired to the fake clock


class Harness:
    """Everything ``loop.reconcile`` needs, in a temporary home, on a :class:`FakeRuntime`."""

    def __init__(self, home: Path, *, scope: str = "shop", name: str = "db", network: str = "voodu-test",
                 boot_s: float = 0.0, clone_s: float = 0.0) -> None:
        self.home = home
        self.scope, self.name, self.network = scope, name, network
        self.clock = FakeClock()
        self.fake = FakeRuntime(self.clock, boot_s=boot_s, clone_s=clone_s)
        self.store = SqliteStore(home / "store")
        self.lines: list[str] = []
        self.ref = Ref(scope, name)

    @property
    def ctx(self) -> Context:
        return Context(runtime=self.fake, store=self.store, home=self.home, network=self.network,
                       sleep=self.clock.sleep, clock=self.clock)

    def spec(self, **body: Any) -> PostgresSpec:
        return load_spec(self.scope, self.name, body)

    def apply(self, *, dry_run: bool = False, wait: bool = True, timeout: float = 300.0,
              progress: Progress | None = None, **body: Any) -> Report:
        return reconcile(self.spec(**body), self.ctx, body=body, dry_run=dry_run, wait=wait, timeout=timeout,
                         progress=progress or self.lines.append)

    def seed(self, **body: Any) -> None:
        """Write the bucket keys a first apply writes (passwords, primary ordinal), nothing else."""
        apply_actions(self.store, seed_actions(self.spec(**body), self.store.resolve(self.scope, self.name)))

    def container(self, ordinal: int) -> str:
        return self.ref.container(ordinal)

    def volume(self, ordinal: int) -> str:
        return self.ref.volume(ordinal)

    def assets_dir(self) -> Path:
        return assets_dir_for(self.home, self.spec())

    def state_dir(self) -> Path:
        return state_dir_for(self.home, self.spec())

    def desired(self, **body: Any) -> Desired:
        """Desired state from the bucket as it is now (seeded first when it is not yet)."""
        self.seed(**body)
        spec = self.spec(**body)
        return derive(spec, self.store.resolve(self.scope, self.name), assets_dir=assets_dir_for(self.home, spec),
                      network=self.network, state_dir=state_dir_for(self.home, spec))

    def observe(self, **body: Any) -> Observed:
        return snapshot(self.fake, self.desired(**body), self.assets_dir())

    def psql(self, ordinal: int, sql: str) -> ExecResult:
        return self.fake.exec(self.container(ordinal), ["psql", "-p", "5432", "-c", sql])

    def names(self, events: Iterable[tuple[str, str]]) -> list[str]:
        return [name for _, name in events]
