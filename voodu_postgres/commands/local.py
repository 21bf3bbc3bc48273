"""Standalone mode: where facts come from and where actions land when there is no controller.

* **Facts**: the spec recorded by the last ``apply`` (no HCL file needed), the bucket from the
  SQLite store, and — when a command asks — a fresh observation of Docker and Postgres.
* **Sink**: the actions a command decided are carried out here, in order, as Voodu's controller
  would: ``config_set``/``config_unset`` write the store, ``apply_manifest`` of the cluster's
  statefulset runs the reconciler until the pods match, ``exec_local`` runs attached to this
  terminal (its exit code becomes ours), ``fetch_file`` copies.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voodu_postgres.adapters.docker import DockerRuntime, run_attached
from voodu_postgres.adapters.lease import cluster_lease
from voodu_postgres.adapters.store import SqliteStore
from voodu_postgres.commands.base import NETWORK_ENV, Env, ExitStatus, Result
from voodu_postgres.commands.facts import Facts, consumer_ref
from voodu_postgres.domain.actions import Action
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.naming import DEFAULT_NETWORK, Ref, RefError, parse_ref
from voodu_postgres.domain.physical import refuse_while_restoring
from voodu_postgres.domain.spec import PostgresSpec, SpecError, load_spec
from voodu_postgres.reconciler.desired import assets_dir_for, derive, state_dir_for
from voodu_postgres.reconciler.observe import snapshot
from voodu_postgres.render.expansion import expand

if TYPE_CHECKING:  # the reconciler loads only when a command reconciles (start-up time)
    from voodu_postgres.reconciler.loop import Context

Recorded = tuple[PostgresSpec, dict[str, Any], str]


def parse_cli_ref(text: str) -> Ref:
    try:
        return parse_ref(text)
    except RefError as exc:
        raise UsageError(str(exc)) from exc


class LocalMode:
    plugin = False

    def __init__(self, env: Env, store: SqliteStore, home: Path, *, runtime: DockerRuntime | None = None,
                 lock_timeout: float = 300.0, lock_wait: bool = True) -> None:
        self.env = env
        self.store = store
        self.home = home
        self._runtime = runtime
        self.lock_timeout = lock_timeout
        self.lock_wait = lock_wait

    def lease(self, ref_text: str, command: str) -> AbstractContextManager[object]:
        """Hold the cluster's operation lease (one mutating operation per cluster at a time)."""
        return cluster_lease(self.store, parse_cli_ref(ref_text), command, wait=self.lock_wait,
                             timeout=self.lock_timeout, on_wait=self.env.warn)

    # -- where things come from -----------------------------------------------------------

    @property
    def runtime(self) -> DockerRuntime:
        if self._runtime is None:
            self._runtime = DockerRuntime()
        return self._runtime

    def network(self, explicit: str | None = None) -> str:
        return explicit or self.env.environ.get(NETWORK_ENV) or DEFAULT_NETWORK

    def context(self, network: str) -> Context:
        from voodu_postgres.reconciler.loop import Context

        return Context(runtime=self.runtime, store=self.store, home=self.home, network=network,
                       extra_labels=self.env.extra_labels())

    def recorded(self, refs: list[str]) -> list[Recorded]:
        """The applied specs of ``refs`` (every applied cluster when empty)."""
        recorded = {Ref(r.scope, r.name): r for r in self.store.resources()}
        wanted = [parse_cli_ref(text) for text in refs]
        out = []
        for ref in wanted or sorted(recorded):
            if ref not in recorded:
                raise CommandError(f"postgres {ref} has not been applied on this host (voodu-postgres apply -f …)")
            rec = recorded[ref]
            try:
                spec = load_spec(rec.scope, rec.name, rec.body)
            except SpecError as exc:
                raise CommandError(f"recorded spec of {ref} no longer validates: {exc}") from exc
            out.append((spec, rec.body, rec.network))
        return out

    def load(self, ref_text: str, *, observe: bool) -> Facts:
        spec, _body, network = self.recorded([str(parse_cli_ref(ref_text))])[0]
        return self.facts(spec, network, observe=observe)

    def facts(self, spec: PostgresSpec, network: str, *, observe: bool) -> Facts:
        bucket = self.store.resolve(spec.scope, spec.name)
        expansion = expand(spec, bucket)
        if expansion.actions:
            raise CommandError(f"postgres {spec.ref} is not fully applied yet (its bucket lacks generated "
                               "secrets); run voodu-postgres apply first")
        statefulset = expansion.manifests[1]["spec"]
        if not observe:
            return Facts(spec, bucket, statefulset)
        assets = assets_dir_for(self.home, spec)
        desired = derive(spec, bucket, assets_dir=assets, network=network, extra_labels=self.env.extra_labels(),
                         state_dir=state_dir_for(self.home, spec))
        return Facts(spec, bucket, statefulset, desired, snapshot(self.runtime, desired, assets))

    def bucket(self, ref_text: str) -> dict[str, str]:
        ref = consumer_ref(ref_text)
        return self.store.resolve(ref.scope, ref.name)

    def record(self, ref: Ref, kv: Mapping[str, str]) -> None:
        """A synchronous bucket write (intent records, before the effect they announce)."""
        self.store.patch(ref.scope, ref.name, kv)

    # -- where actions land -----------------------------------------------------------------

    def apply_actions(self, actions: list[Action], *, progress: Callable[[str], None]) -> int:
        code: int = ExitStatus.OK
        for action in actions:
            if action.type == "config_set" and action.kv is not None:
                self.store.patch(action.scope, action.name, action.kv)
            elif action.type == "config_unset" and action.keys is not None:
                self.store.unset(action.scope, action.name, action.keys)
            elif action.type == "apply_manifest" and action.manifest and action.manifest.get("kind") == "statefulset":
                self._converge(Ref(action.scope, action.name), progress)
            elif action.type == "exec_local" and action.command:
                code = run_attached(action.command)
            elif action.type == "fetch_file" and action.remote_path and action.dest_path:
                shutil.copyfile(action.remote_path, action.dest_path)
            else:
                raise CommandError(f"standalone mode cannot carry out {action.describe()}")
        return code

    def _converge(self, ref: Ref, progress: Callable[[str], None]) -> None:
        from voodu_postgres.reconciler.loop import reconcile

        spec, _body, network = self.recorded([str(ref)])[0]
        # expose/unexpose re-apply the statefulset: not onto volumes a restore left half-done
        refuse_while_restoring(self.store.resolve(spec.scope, spec.name), spec.ref, "re-applying the pods")
        report = reconcile(spec, self.context(network), wait=True, timeout=300, progress=progress)
        if not report.converged:
            raise CommandError(report.message)

    def state_dir(self, spec: PostgresSpec) -> Path | None:
        return state_dir_for(self.home, spec)

    def finish(self, result: Result, *, output: str) -> int:
        text = output == "text"
        code = self.apply_actions(result.actions, progress=(lambda line: self.env.say(f"  {line}")) if text
                                  else (lambda _line: None))
        result.exit_code = code
        if any(a.type == "exec_local" for a in result.actions):
            return code  # psql's own output is the output
        if text:
            self.env.say(result.message)
        else:
            self.env.say(json.dumps({"message": result.message, **result.data}, indent=2))
        return code
