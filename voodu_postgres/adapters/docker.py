"""The one door to the outside world: Docker (via the docker SDK) and the asset files on disk.

Everything that touches Docker goes through :class:`DockerRuntime`; docker-py exceptions are
translated here into :class:`RuntimeFailure` (one human line) so nothing above this module sees
raw client payloads. Secrets reach containers through the Engine API's environment field, never
through a process argv (no ``docker run -e PASSWORD=…`` child process is ever spawned).

The docker SDK negotiates the API version; it must never be pinned above 1.41, the maximum
of Debian's docker.io 20.10 daemon (stack.md §4.2).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import Healthcheck, LogConfig, Ulimit
from requests import RequestException

from voodu_postgres.adapters.failures import RuntimeFailure as RuntimeFailure  # re-exported with the engine
from voodu_postgres.domain.podspec import PodSpec

if TYPE_CHECKING:
    from voodu_postgres.adapters.postgres import Postgres


#: what a Docker call can raise, for callers that wrap a whole command and must not import docker
ENGINE_ERRORS: tuple[type[Exception], ...] = (RuntimeFailure, DockerException, RequestException)


def _failure(prefix: str, exc: Exception) -> RuntimeFailure:
    # Docker answers 500 for permanent trouble too ("OCI runtime create failed"): only gateway
    # errors and failures to talk to the engine at all are worth retrying
    status = getattr(exc, "status_code", None)
    transient = status is None or status in (502, 503, 504)
    return RuntimeFailure(f"{prefix}: {_one_line(exc)}", transient=transient)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class ContainerInfo:
    """The parts of ``docker inspect`` the reconciler uses (raw SDK payloads stay in here)."""

    name: str
    state: str
    health: str | None
    labels: dict[str, str]
    restart_count: int
    exit_code: int
    identity: dict[str, str] = field(default_factory=dict)  # PG_PORT / POSTGRES_USER / POSTGRES_DB it runs with
    published: dict[int, str] = field(default_factory=dict)  # container port → "host_ip:host_port"
    networks: tuple[str, ...] | None = None  # the networks it is attached to (None: not known)
    started_at: float | None = None  # epoch seconds of State.StartedAt (None: never started / unknown)

    @property
    def port(self) -> int | None:
        raw = self.identity.get("PG_PORT", "")
        return int(raw) if (raw.isascii() and raw.isdigit()) else None


@runtime_checkable
class Runtime(Protocol):
    """Every container-engine operation the reconciler (observe, execute, loop, failover) and the
    commands use. :class:`DockerRuntime` is the real one; unit tests use an in-memory fake.

    Failures are :class:`RuntimeFailure` (``transient`` when worth retrying), never raw client
    exceptions.
    """

    def ensure_network(self, name: str, labels: Mapping[str, str] | None = None) -> None: ...

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None: ...

    def ensure_image(self, image: str) -> None: ...

    def remove_volume(self, name: str) -> None: ...

    def run_pod(self, pod: PodSpec) -> str: ...

    def remove_container(self, name: str, *, timeout: int = 30) -> None: ...

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]: ...

    def list_volumes(self, labels: Mapping[str, str]) -> list[str]: ...

    def network_exists(self, name: str) -> bool: ...

    def start_container(self, name: str) -> None: ...

    def restart_container(self, name: str, *, timeout: int = 30) -> None: ...

    def container_state(self, name: str) -> str | None: ...

    def host_port(self, name: str, container_port: int) -> int: ...

    def exec(self, name: str, argv: list[str], *, user: str = "postgres",
             env: Mapping[str, str] | None = None) -> ExecResult: ...

    def stop_container(self, name: str, *, timeout: int = 30) -> int: ...

    def image_of(self, name: str) -> str: ...

    def run_oneshot(self, image: str, argv: list[str], *, volumes_from: str, network: str,
                    env: Mapping[str, str] | None = None, user: str = "postgres",
                    labels: Mapping[str, str] | None = None, timeout: float = 300) -> ExecResult: ...

    def logs_tail(self, name: str, lines: int = 20) -> str: ...

    def postgres(self) -> Postgres:
        """How this engine's pods' Postgres is reached from here (their published addresses)."""
        ...


def _epoch(rfc3339: str) -> float | None:
    """Docker's ``2026-12-01T23:53:24.123456789Z`` as epoch seconds; None for the zero time."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return None
    head, _, frac = rfc3339.rstrip("Z").partition(".")
    try:
        whole = datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    digits = "".join(c for c in frac if c.isdigit())
    return float(whole) + (float(f"0.{digits}") if digits else 0.0)


def _one_line(exc: Exception) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    return " ".join(str(text).split())


_IDENTITY_KEYS = ("PG_PORT", "POSTGRES_USER", "POSTGRES_DB")


def _identity(env: list[str]) -> dict[str, str]:
    """Only the non-secret connection identity of a container's env (never its passwords)."""
    out = {}
    for item in env:
        key, _, value = item.partition("=")
        if key in _IDENTITY_KEYS:
            out[key] = value
    return out


def _published(attrs: Mapping[str, Any]) -> dict[int, str]:
    """Published ports of a container: the live bindings when it runs, else the configured ones."""
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    if not any(ports.values()):
        ports = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    out: dict[int, str] = {}
    for key, bindings in ports.items():
        number, _, proto = str(key).partition("/")
        if proto != "tcp" or not (number.isascii() and number.isdigit()) or not bindings:
            continue
        first = bindings[0]
        out[int(number)] = f"{first.get('HostIp') or '0.0.0.0'}:{first.get('HostPort') or '(random)'}"
    return out










def run_attached(argv: list[str]) -> int:
    """Run a command on this terminal (stdin, stdout and stderr inherited); its exit code.

    Used for ``exec_local`` in standalone mode, e.g. ``docker exec -it … psql``.
    """
    try:
        return subprocess.call(argv)
    except FileNotFoundError as exc:
        raise RuntimeFailure(f"{argv[0]} is not installed on this host") from exc


class DockerRuntime:
    """Docker operations used by the reconciler and the tests."""

    def __init__(self, client: Any | None = None) -> None:
        self._postgres: Postgres | None = None
        try:
            self.client = client or docker.from_env(timeout=120)
            self.client.ping()
        except DockerException as exc:
            raise _failure("cannot reach the Docker engine", exc) from exc

    # -- networks and volumes ---------------------------------------------------------------

    def postgres(self) -> Postgres:
        if self._postgres is None:
            from voodu_postgres.adapters.postgres import PsycopgPostgres  # psycopg loads on first query

            self._postgres = PsycopgPostgres()
        return self._postgres

    def ensure_network(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        try:
            if not self.network_exists(name):
                self.client.networks.create(name, driver="bridge", labels=dict(labels or {}))
        except APIError as exc:
            raise _failure(f"network {name}", exc) from exc

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        try:
            self.client.volumes.get(name)
        except NotFound:
            try:
                self.client.volumes.create(name=name, labels=dict(labels))
            except APIError as exc:
                raise _failure(f"volume {name}", exc) from exc

    def ensure_image(self, image: str) -> None:
        """Pull ``image`` when it is not on this host yet."""
        try:
            self.client.images.get(image)
            return
        except ImageNotFound:
            pass
        except APIError as exc:
            raise _failure(f"image {image}", exc) from exc
        try:
            self.client.images.pull(image)
        except (APIError, DockerException) as exc:
            raise RuntimeFailure(f"image {image} is not on this host and could not be pulled: "
                                 f"{_one_line(exc)}") from exc

    def remove_volume(self, name: str) -> None:
        try:
            self.client.volumes.get(name).remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            raise _failure(f"remove volume {name}", exc) from exc

    # -- containers ---------------------------------------------------------------------------

    def run_pod(self, pod: PodSpec) -> str:
        """Create and start the pod's container (volumes first). Returns the container id."""
        for volume, labels in pod.volume_labels.items():
            self.ensure_volume(volume, labels)
        health = None
        if pod.healthcheck is not None:
            hc = pod.healthcheck
            health = Healthcheck(
                test=hc.test,
                interval=int(hc.interval_s * 1e9),
                timeout=int(hc.timeout_s * 1e9),
                retries=hc.retries,
                start_period=int(hc.start_period_s * 1e9),
            )
        self.ensure_image(pod.image)
        mounts = {b.source: {"bind": b.target, "mode": b.mode} for b in pod.binds}
        mounts.update({name: {"bind": path, "mode": "rw"} for name, path in pod.volumes.items()})
        ports = {f"{p.container_port}/tcp": (p.host_ip, p.host_port) for p in pod.ports}
        try:
            container = self.client.containers.create(
                pod.image,
                command=pod.command or None,
                name=pod.container,
                hostname=pod.container.replace(".", "-"),
                environment=pod.env,
                labels=pod.labels,
                volumes=mounts,
                ports=ports,
                network=pod.network,
                networking_config={
                    pod.network: self.client.api.create_endpoint_config(aliases=pod.aliases)
                },
                restart_policy={"Name": pod.restart} if pod.restart != "no" else None,
                nano_cpus=pod.nano_cpus,
                mem_limit=pod.mem_limit,
                healthcheck=health,
                extra_hosts=pod.extra_hosts,
                cap_add=pod.cap_add or None,
                ulimits=[Ulimit(name=n, soft=s, hard=h) for n, (s, h) in pod.ulimits.items()],
                log_config=LogConfig(type="json-file",
                                     config={"max-size": pod.log_max_size, "max-file": str(pod.log_max_files)}),
                detach=True,
            )
            container.start()
            return str(container.id)
        except ImageNotFound as exc:
            raise RuntimeFailure(
                f"image {pod.image} not found locally (build or pull it first)"
            ) from exc
        except APIError as exc:
            raise _failure(f"start {pod.container}", exc) from exc

    def remove_container(self, name: str, *, timeout: int = 30) -> None:
        try:
            container = self.client.containers.get(name)
            container.stop(timeout=timeout)
            # v=True removes only the anonymous volume the image's VOLUME line gives a container
            # with nothing mounted there (a capture, a verify): a pod's data volume is named and stays
            container.remove(v=True)
        except NotFound:
            pass
        except APIError as exc:
            raise _failure(f"remove {name}", exc) from exc

    def list_containers(self, labels: Mapping[str, str]) -> list[ContainerInfo]:
        """Containers (running or not) carrying every given label."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            found = self.client.containers.list(all=True, filters=filters, ignore_removed=True)
        except APIError as exc:
            raise _failure("list containers", exc) from exc
        out = []
        for container in found:
            state = container.attrs.get("State", {})
            out.append(ContainerInfo(
                name=container.name,
                state=str(state.get("Status", container.status)),
                health=(state.get("Health") or {}).get("Status"),
                labels=dict(container.labels),
                restart_count=int(container.attrs.get("RestartCount", 0)),
                exit_code=int(state.get("ExitCode", 0)),
                identity=_identity(container.attrs.get("Config", {}).get("Env") or []),
                published=_published(container.attrs),
                networks=tuple(sorted((container.attrs.get("NetworkSettings") or {}).get("Networks") or {})),
                started_at=_epoch(str(state.get("StartedAt") or "")),
            ))
        return out

    def list_volumes(self, labels: Mapping[str, str]) -> list[str]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            return [v.name for v in self.client.volumes.list(filters=filters)]
        except APIError as exc:
            raise _failure("list volumes", exc) from exc

    def network_exists(self, name: str) -> bool:
        # Docker's name filter matches substrings ("voodu0" also finds "voodu01"): compare exactly
        return any(n.name == name for n in self.client.networks.list(names=[name]))

    def start_container(self, name: str) -> None:
        try:
            self.client.containers.get(name).start()
        except APIError as exc:
            raise _failure(f"start {name}", exc) from exc

    def restart_container(self, name: str, *, timeout: int = 30) -> None:
        try:
            self.client.containers.get(name).restart(timeout=timeout)
        except APIError as exc:
            raise _failure(f"restart {name}", exc) from exc

    def container_state(self, name: str) -> str | None:
        """Docker's state string (``running``, ``exited`` …) or None when absent."""
        try:
            return str(self.client.containers.get(name).status)
        except NotFound:
            return None

    def host_port(self, name: str, container_port: int) -> int:
        container = self.client.containers.get(name)
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{container_port}/tcp") or []
        if not bindings:
            raise RuntimeFailure(f"{name}: port {container_port} is not published")
        return int(bindings[0]["HostPort"])

    def exec(self, name: str, argv: list[str], *, user: str = "postgres",
             env: Mapping[str, str] | None = None) -> ExecResult:
        """Run ``argv`` inside a running container; env travels in the API body, not an argv."""
        try:
            result = self.client.containers.get(name).exec_run(
                argv, user=user, environment=dict(env or {}), demux=False
            )
        except NotFound as exc:
            raise RuntimeFailure(f"container {name} not found") from exc
        except APIError as exc:
            raise _failure(f"exec in {name}", exc) from exc
        output = result.output.decode("utf-8", "replace") if result.output else ""
        return ExecResult(int(result.exit_code or 0), output)

    def stop_container(self, name: str, *, timeout: int = 30) -> int:
        """Stop (SIGINT: Postgres fast shutdown) and return the exit code; 0 means a clean stop."""
        try:
            container = self.client.containers.get(name)
            container.stop(timeout=timeout)
            container.reload()
            return int(container.attrs.get("State", {}).get("ExitCode", -1))
        except NotFound as exc:
            raise RuntimeFailure(f"container {name} not found") from exc
        except APIError as exc:
            raise _failure(f"stop {name}", exc) from exc

    def image_of(self, name: str) -> str:
        try:
            container = self.client.containers.get(name)
        except NotFound as exc:
            raise RuntimeFailure(f"container {name} not found") from exc
        # the image *ID* the pod runs, not its tag: a re-pulled tag may be another major version
        return str(container.attrs["Image"])

    def run_oneshot(self, image: str, argv: list[str], *, volumes_from: str, network: str,
                    env: Mapping[str, str] | None = None, user: str = "postgres",
                    labels: Mapping[str, str] | None = None, timeout: float = 300) -> ExecResult:
        """Run a throwaway container sharing another container's mounts; wait; return exit + output.

        Environment goes through the Engine API (never a process argv), so passwords stay private.
        """
        try:
            container = self.client.containers.run(
                image, argv, user=user, environment=dict(env or {}), network=network,
                volumes_from=[volumes_from], labels=dict(labels or {}), detach=True,
            )
        except APIError as exc:
            raise _failure(f"one-shot {argv[0]}", exc) from exc
        try:
            result = container.wait(timeout=timeout)
            output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
            return ExecResult(int(result.get("StatusCode", -1)), output)
        except Exception as exc:  # the wait can time out with a requests error
            raise RuntimeFailure(f"one-shot {argv[0]} did not finish: {_one_line(exc)}", transient=False) from exc
        finally:
            try:
                container.remove(force=True, v=True)
            except APIError:
                pass

    def logs_tail(self, name: str, lines: int = 20) -> str:
        try:
            raw = self.client.containers.get(name).logs(tail=lines)
        except (NotFound, APIError):
            return ""
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    # -- detached helper containers (backups) -------------------------------------------------

    def run_detached(self, image: str, argv: list[str], *, name: str, network: str,
                     binds: Mapping[str, tuple[str, str]], env: Mapping[str, str] | None = None,
                     user: str = "postgres", labels: Mapping[str, str] | None = None) -> None:
        """Create and start a helper container (not removed when it exits: its state, exit code and
        log are the record). ``binds`` maps host path → (container path, mode). Environment travels
        in the API body, never an argv."""
        self.ensure_image(image)
        try:
            container = self.client.containers.create(
                image, argv, name=name, user=user, environment=dict(env or {}), network=network,
                volumes={src: {"bind": dst, "mode": mode} for src, (dst, mode) in binds.items()},
                labels=dict(labels or {}), detach=True,
                log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
            )
            container.start()
        except APIError as exc:
            raise _failure(f"start {name}", exc) from exc

    def logs(self, name: str) -> str:
        """A container's whole log (stdout and stderr, interleaved); RuntimeFailure when it is gone."""
        try:
            raw = self.client.containers.get(name).logs(stdout=True, stderr=True)
        except NotFound as exc:
            raise RuntimeFailure(f"container {name} not found") from exc
        except APIError as exc:
            raise _failure(f"logs of {name}", exc) from exc
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def follow_logs(self, name: str) -> Iterator[str]:
        """The log from the start, then as it is written, until the container stops."""
        try:
            stream = self.client.containers.get(name).logs(stdout=True, stderr=True, stream=True, follow=True)
        except NotFound as exc:
            raise RuntimeFailure(f"container {name} not found") from exc
        except APIError as exc:
            raise _failure(f"logs of {name}", exc) from exc
        for chunk in stream:
            yield chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else str(chunk)

    def exit_code_of(self, name: str) -> int | None:
        """The exit code of a stopped container; None while it runs or when it is gone."""
        try:
            container = self.client.containers.get(name)
        except NotFound:
            return None
        state = container.attrs.get("State", {})
        if state.get("Running") or str(state.get("Status")) in ("created", "restarting"):
            return None
        return int(state.get("ExitCode", -1))

    def wait_exit(self, name: str, timeout: float) -> int | None:
        """Block until the container has stopped and return its exit code, or None when it is
        still running after ``timeout`` seconds; RuntimeFailure when it is gone. One blocking
        request (Docker's wait) instead of polling: the caller learns of the exit at once."""
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import ReadTimeout
        from urllib3.exceptions import ReadTimeoutError

        try:
            result = self.client.api.wait(name, timeout=timeout)
        except NotFound as exc:
            raise RuntimeFailure(f"container {name} not found") from exc
        except ReadTimeout:
            return None
        except RequestsConnectionError as exc:
            # over the unix socket a read timeout arrives as a ConnectionError wrapping urllib3's
            if any(isinstance(arg, ReadTimeoutError) for arg in exc.args):
                return None
            raise _failure(f"wait for {name}", exc) from exc
        except APIError as exc:
            raise _failure(f"wait for {name}", exc) from exc
        return int(result.get("StatusCode", -1))

    def remove_stale(self, label_key: str, *, older_than_s: float) -> int:
        """Remove what interrupted sessions left behind: objects carrying ``label_key`` whose
        session (the label's value) has no container younger than ``older_than_s``. Sessions
        still running — their containers are recent — are left alone."""
        from datetime import UTC, datetime

        cutoff = time.time() - older_than_s
        live: set[str] = set()
        stale = []
        for container in self.client.containers.list(all=True, filters={"label": label_key}, ignore_removed=True):
            created = str(container.attrs.get("Created", ""))
            try:
                stamp = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00").timestamp()
            except ValueError:
                stamp = 0.0
            session = container.labels.get(label_key, "")
            if stamp >= cutoff:
                live.add(session)
            else:
                stale.append((session, container))
        removed = 0
        for session, container in stale:
            if session not in live:
                container.remove(force=True, v=True)
                removed += 1
        def old(created: object) -> bool:
            # a network or volume made moments ago by a session that has no container yet is live
            try:
                stamp = datetime.fromisoformat(str(created)[:19]).replace(tzinfo=UTC).timestamp()
            except ValueError:
                return True
            return stamp < cutoff

        for volume in self.client.volumes.list(filters={"label": label_key}):
            if (volume.attrs.get("Labels") or {}).get(label_key, "") not in live and old(volume.attrs.get("CreatedAt")):
                try:
                    volume.remove()
                except APIError:
                    pass
        for network in self.client.networks.list(filters={"label": label_key}):
            if (network.attrs.get("Labels") or {}).get(label_key, "") not in live and old(network.attrs.get("Created")):
                try:
                    network.remove()
                except APIError:
                    pass
        return removed

    def remove_labelled(self, label: str) -> int:
        """Remove every container (with its anonymous volumes), volume and network carrying ``label``."""
        removed = 0
        for container in self.client.containers.list(all=True, filters={"label": label}, ignore_removed=True):
            container.remove(force=True, v=True)
            removed += 1
        for volume in self.client.volumes.list(filters={"label": label}):
            volume.remove(force=True)
        for network in self.client.networks.list(filters={"label": label}):
            network.remove()
        return removed


if TYPE_CHECKING:
    def _docker_runtime_is_a_runtime(runtime: DockerRuntime) -> Runtime:
        return runtime  # mypy checks DockerRuntime against the protocol here
