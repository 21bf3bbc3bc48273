"""Plugin mode: the same commands when Voodu's controller runs us (``vd pg:<command> …``).

* **Facts** come from the controller: the statefulset the block expanded to
  (``GET /describe``), the merged bucket (``GET /config``); pods are observed through Docker on
  this host, as the Go plugin does.
* **Sink**: nothing is changed here except what must happen before the answer (the Docker/SQL
  effects of promote-like commands, and intent records written synchronously with
  ``POST /config?restart=false``). Every other change is an action in the one envelope printed
  on stdout — ``{"status":"ok","data":{"message":…,"actions":[…]}}`` — which the controller
  applies in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from voodu_postgres.adapters.controller import ControllerClient, Invocation
from voodu_postgres.adapters.docker import DockerRuntime
from voodu_postgres.commands.base import Env, Result, envelope_ok
from voodu_postgres.commands.facts import Facts, consumer_ref, spec_from_statefulset
from voodu_postgres.domain.errors import CommandError, UsageError
from voodu_postgres.domain.naming import DEFAULT_NETWORK, UNSCOPED_DIR, Ref, RefError, parse_ref
from voodu_postgres.domain.spec import PostgresSpec
from voodu_postgres.reconciler.desired import derive
from voodu_postgres.reconciler.observe import snapshot
from voodu_postgres.render.expansion import expand

#: under Voodu nothing is written here: asset digests only matter to the standalone planner
_NO_ASSETS = Path("/nonexistent/voodu-postgres-assets")


class PluginMode:
    plugin = True

    def __init__(self, env: Env, invocation: Invocation, *, runtime: DockerRuntime | None = None) -> None:
        self.env = env
        self.invocation = invocation
        assert invocation.controller_url is not None
        self.client = ControllerClient(invocation.controller_url)
        self._runtime = runtime

    @property
    def runtime(self) -> DockerRuntime:
        if self._runtime is None:
            self._runtime = DockerRuntime()
        return self._runtime

    def load(self, ref_text: str, *, observe: bool) -> Facts:
        try:
            ref = parse_ref(ref_text)
        except RefError as exc:
            raise UsageError(str(exc)) from exc
        statefulset = self.client.describe(ref.scope, ref.name)
        spec = spec_from_statefulset(ref.scope, ref.name, statefulset)
        bucket = self.client.config(ref.scope, ref.name)
        if expand(spec, bucket).actions:
            raise CommandError(f"postgres {ref}: its config bucket lacks the generated secrets; has it been "
                               "applied (vd apply)?")
        if not observe:
            return Facts(spec, bucket, statefulset, plugin_mode=True)
        networks = statefulset.get("networks")
        network = str(statefulset.get("network") or (networks[0] if isinstance(networks, list) and networks
                                                      else DEFAULT_NETWORK))
        desired = derive(spec, bucket, assets_dir=_NO_ASSETS, network=network)
        return Facts(spec, bucket, statefulset, desired, snapshot(self.runtime, desired, _NO_ASSETS),
                     plugin_mode=True)

    def bucket(self, ref_text: str) -> dict[str, str]:
        ref = consumer_ref(ref_text)
        return self.client.config(ref.scope, ref.name)

    def record(self, ref: Ref, kv: Mapping[str, str]) -> None:
        self.client.patch_config(ref.scope, ref.name, kv, restart=False)

    def state_dir(self, spec: PostgresSpec) -> Path | None:
        """``<plugin_dir>/state/<scope|_unscoped>/<name>``: private files the plugin itself needs on
        this host (a capture job's 0600 pgpass). None without a plugin directory."""
        if not self.invocation.plugin_dir:
            return None
        return Path(self.invocation.plugin_dir) / "state" / (spec.scope or UNSCOPED_DIR) / spec.name

    def lease(self, ref_text: str, command: str) -> AbstractContextManager[object]:
        """Voodu's controller serialises its own work per app; there is no standalone lease here."""
        return nullcontext()

    def finish(self, result: Result, *, output: str) -> int:
        message = result.message if output == "text" else json.dumps({"message": result.message, **result.data},
                                                                       indent=2)
        envelope_ok(self.env, {"message": message, "actions": [a.to_wire() for a in result.actions]})
        return result.exit_code
