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

from voodu_postgres.reconciler.desired import OVERRIDES_KEY
from voodu_postgres.reconciler.model import Desired, Outcome, Plan, Step, StepKind
from voodu_postgres.reconciler.observe import psql_argv, run_sql
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
    # the reload step writes the overrides itself, keeping the old text to restore on rejection
    reload_planned = any(s.kind is StepKind.RELOAD_CONFIG for s in plan.steps)
    for step in plan.steps:
        try:
            for attempt in retrying():
                with attempt:
                    detail = _run(step, desired, runtime, assets_dir, reload_planned)
            outcomes.append(Outcome(step, True, detail))
        except RuntimeFailure as exc:
            outcomes.append(Outcome(step, False, str(exc), retryable=exc.transient))
    return outcomes


def _run(step: Step, desired: Desired, runtime: DockerRuntime, assets_dir: Path, reload_planned: bool) -> str:
    ordinal = step.ordinal
    if step.kind is StepKind.ENSURE_NETWORK:
        runtime.ensure_network(desired.network)
        return f"network {desired.network} ready"
    if step.kind is StepKind.WRITE_ASSETS:
        files = [f for f in desired.files if not (reload_planned and f.name == OVERRIDES_KEY)]
        write_assets(assets_dir, files)
        return f"asset files written to {assets_dir}"
    if step.kind is StepKind.SET_SYNC:
        assert step.ordinal is not None
        return set_sync_names(runtime, desired, step.ordinal)
    if step.kind is StepKind.RELOAD_CONFIG:
        return _reload_config(desired, runtime, assets_dir)
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
        try:
            run_sql(runtime, target, port=desired.port, user=desired.user, database=desired.database, sql=sql)
        except RuntimeFailure as exc:
            raise RuntimeFailure(f"{desired.app_name(ordinal)}: {exc}") from None
    return f"synchronous_standby_names = {desired.sync_names or '(unset)'}"


# Rows of pg_file_settings that Postgres refused. A valid change to a restart-only parameter also
# shows "setting could not be applied", so those (pending_restart) are not errors.
_CONFIG_ERRORS_SQL = (
    "SELECT coalesce(string_agg(coalesce(f.name, '?') || ': ' || f.error, '; '), '') "
    "FROM pg_file_settings f LEFT JOIN pg_settings s ON s.name = f.name "
    "WHERE f.error IS NOT NULL AND NOT coalesce(s.pending_restart, false)"
)


def _reload_config(desired: Desired, runtime: DockerRuntime, assets_dir: Path) -> str:
    """Rewrite the overrides file and reload every running pod — unless Postgres rejects it.

    ``pg_reload_conf()`` succeeds even when a line is invalid (a typo in a parameter name, a bad
    value): the server just keeps the old value and would refuse to start on its next restart.
    So the first pod's ``pg_file_settings`` is checked; on any error the previous file is put
    back and the step fails with Postgres' own words.
    """
    overrides = assets_dir / OVERRIDES_KEY
    previous = overrides.read_text(encoding="utf-8") if overrides.exists() else None
    write_assets(assets_dir, desired.files)
    running = [p for p in desired.pods if runtime.container_state(p.container) == "running"]
    reloaded = []
    for index, pod in enumerate(running):
        result = runtime.exec(pod.container, psql_argv(desired.port, desired.user, desired.database,
                                                       "SELECT pg_reload_conf()"))
        if result.exit_code != 0:
            continue
        if index == 0:
            check = runtime.exec(pod.container, psql_argv(desired.port, desired.user, desired.database,
                                                          _CONFIG_ERRORS_SQL))
            errors = check.output.strip() if check.exit_code == 0 else ""
            if errors:
                if previous is not None:
                    overrides.write_text(previous, encoding="utf-8")  # in place: pods bind the inode
                    runtime.exec(pod.container, psql_argv(desired.port, desired.user, desired.database,
                                                          "SELECT pg_reload_conf()"))
                raise RuntimeFailure(f"pg_config rejected by Postgres ({errors}); previous settings kept")
        reloaded.append(desired.app_name(pod.ordinal))
    return f"reloaded {', '.join(reloaded) or 'no running pod'}"
