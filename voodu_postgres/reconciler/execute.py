"""Write effects: run a plan's steps through the runtime, with one retry policy at this boundary.

Each step is idempotent (it checks before it acts), so retrying a transient Docker failure is
safe. Retries live only here — never inside the runtime — so they don't multiply. A failing step
becomes a failed :class:`Outcome`; the remaining steps of *other* pods still run (one broken pod
must not stall the cluster), and the loop re-observes afterwards anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential

from voodu_postgres.reconciler.model import Desired, Outcome, Plan, Step, StepKind
from voodu_postgres.reconciler.observe import psql_argv
from voodu_postgres.reconciler.runtime import DockerRuntime, RuntimeFailure, write_assets

STOP_TIMEOUT_S = 30  # docker stop grace: SIGINT = fast shutdown, normally well under a second


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeFailure) and exc.transient


def default_retrying() -> Retrying:
    return Retrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(4) | stop_after_delay(60),
        wait=wait_exponential(multiplier=0.2, max=5),
        reraise=True,
    )


def execute(
    plan: Plan,
    desired: Desired,
    runtime: DockerRuntime,
    *,
    assets_dir: Path,
    retrying: Callable[[], Retrying] = default_retrying,
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for step in plan.steps:
        try:
            for attempt in retrying():
                with attempt:
                    detail = _run(step, desired, runtime, assets_dir)
            outcomes.append(Outcome(step, True, detail))
        except RuntimeFailure as exc:
            outcomes.append(Outcome(step, False, str(exc)))
    return outcomes


def _run(step: Step, desired: Desired, runtime: DockerRuntime, assets_dir: Path) -> str:
    ordinal = step.ordinal
    if step.kind is StepKind.ENSURE_NETWORK:
        runtime.ensure_network(desired.network)
        return f"network {desired.network} ready"
    if step.kind is StepKind.WRITE_ASSETS:
        write_assets(assets_dir, desired.files)
        return f"asset files written to {assets_dir}"
    if step.kind is StepKind.SET_SYNC:
        assert step.ordinal is not None
        return set_sync_names(runtime, desired, step.ordinal)
    if step.kind is StepKind.RELOAD_CONFIG:
        write_assets(assets_dir, desired.files)
        reloaded = []
        for running in desired.pods:
            if runtime.container_state(running.container) != "running":
                continue  # a stopped pod reads the new file when it starts
            result = runtime.exec(running.container, psql_argv(desired.port, desired.user, desired.database,
                                                           "SELECT pg_reload_conf()"))
            if result.exit_code == 0:
                reloaded.append(desired.app_name(running.ordinal))
        return f"reloaded {', '.join(reloaded) or 'no running pod'}"
    assert ordinal is not None
    pod = desired.pod(ordinal) if ordinal < desired.replicas else None
    container = desired.ref.container(ordinal)
    if step.kind is StepKind.CREATE_POD:
        assert pod is not None
        if runtime.container_state(container) is not None:
            runtime.remove_container(container, timeout=STOP_TIMEOUT_S)
        runtime.run_pod(pod)
        return f"created {container}"
    if step.kind is StepKind.START_POD:
        runtime.start_container(container)
        return f"started {container}"
    if step.kind is StepKind.RECREATE_POD:
        assert pod is not None
        runtime.remove_container(container, timeout=STOP_TIMEOUT_S)
        runtime.run_pod(pod)
        return f"recreated {container}"
    if step.kind is StepKind.RESTART_POD:
        runtime.restart_container(container, timeout=STOP_TIMEOUT_S)
        return f"restarted {container}"
    if step.kind is StepKind.REMOVE_POD:
        runtime.remove_container(container, timeout=STOP_TIMEOUT_S)
        return f"removed {container} (volume {desired.ref.volume(ordinal)} kept)"
    raise AssertionError(f"unhandled step {step.kind}")  # pragma: no cover


def set_sync_names(runtime: DockerRuntime, desired: Desired, ordinal: int) -> str:
    """Set (or reset) ``synchronous_standby_names`` on a primary, in postgresql.auto.conf."""
    target = desired.ref.container(ordinal)
    if desired.sync_names:
        literal = desired.sync_names.replace("'", "''")
        statement = f"ALTER SYSTEM SET synchronous_standby_names = '{literal}'"
    else:
        statement = "ALTER SYSTEM RESET synchronous_standby_names"
    # ALTER SYSTEM refuses to run inside a transaction block: two separate psql calls
    for sql in (statement, "SELECT pg_reload_conf()"):
        result = runtime.exec(target, psql_argv(desired.port, desired.user, desired.database, sql))
        if result.exit_code != 0:
            raise RuntimeFailure(f"{desired.app_name(ordinal)}: {result.output.strip()}")
    return f"synchronous_standby_names = {desired.sync_names or '(unset)'}"
