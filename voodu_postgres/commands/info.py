"""``info``: the cluster as declared and as observed — pure snapshot and text layout.

Passwords never appear, not even a prefix: only whether each is set and how long it is. Every
pod lists the address the host reaches it at (its published ``ip:port``), so nobody needs
``docker port``.

Pure: builds from :class:`Facts`; the CLI prints.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from voodu_postgres.commands.facts import Facts
from voodu_postgres.domain.backups import rfc3339
from voodu_postgres.domain.keys import PASSWORD_KEY, PENDING_SUFFIX, REPLICATION_PASSWORD_KEY
from voodu_postgres.domain.model import Desired, Observed, PodStatus
from voodu_postgres.domain.physical import interrupted_restore, restore_command
from voodu_postgres.domain.record import ClusterRecord
from voodu_postgres.domain.schedule import ScheduleError, next_fire, schedule_from_bucket
from voodu_postgres.reconciler.plan import streams_from_primary
from voodu_postgres.states.pod import classify


def redact(secret: str | None) -> str:
    """Never shows any part of a secret: only whether it is set and how long it is."""
    return f"<set, {len(secret)} chars>" if secret else "<unset>"


def pending_rotations(bucket: dict[str, str]) -> list[str]:
    """Password keys whose rotation was interrupted (a ``<KEY>_NEXT`` is still recorded)."""
    return [k for k in (PASSWORD_KEY, REPLICATION_PASSWORD_KEY) if bucket.get(k + PENDING_SUFFIX)]


def info_snapshot(facts: Facts) -> dict[str, Any]:
    desired, observed, spec, bucket = facts.desired, facts.observed, facts.spec, facts.bucket
    assert desired is not None and observed is not None, "info needs observed facts"
    P = desired.target_primary
    ref = desired.ref
    consumers = facts.consumers()
    exposed = facts.exposed
    pods = _pod_entries(desired, observed, plugin_mode=facts.plugin_mode)
    out: dict[str, Any] = {
        "ref": str(ref),
        "image": spec.image,
        "replicas": desired.replicas,
        "primary_ordinal": P,
        "primary_fqdn": ref.pod_host(P),
    }
    standbys = [ref.pod_host(o) for o in range(desired.replicas) if o != P]
    if standbys:
        out["standby_fqdns"] = standbys
    out.update({
        "super_user": spec.user,
        "database": spec.database,
        "port": spec.port,
        "replication_user": spec.replication_user,
        "password_redacted": redact(bucket.get(PASSWORD_KEY)),
        "replication_password_redacted": redact(bucket.get(REPLICATION_PASSWORD_KEY)),
        "exposed": exposed,
        "bind_address": "0.0.0.0 (every interface)" if exposed
        else "127.0.0.1 (loopback only — voodu-postgres expose publishes it)",
        "synchronous": spec.synchronous,
        "auto_failover": {"enabled": spec.auto_failover, "failover_timeout_s": spec.failover_timeout,
                          "max_lag_on_failover": spec.max_lag_on_failover},
        "network": desired.network,
    })
    out.update(_in_flight(desired, bucket, consumers))
    schedule = _backup_schedule(bucket)
    if schedule is not None:
        out["backup_schedule"] = schedule
    out["pods"] = pods
    return out


def _pod_entries(desired: Desired, observed: Observed, *, plugin_mode: bool) -> list[dict[str, Any]]:
    """One entry per ordinal, desired or still running (a scaled-down pod that lingers shows too)."""
    P = desired.target_primary
    primary_pod = observed.pod(P)
    lags = {r.application_name: r.lag_bytes for r in (primary_pod.pg.replicas if primary_pod and primary_pod.pg
                                                       else ())}
    writable = len(observed.writable)
    ref = desired.ref
    pods = []
    for ordinal in sorted(set(range(desired.replicas)) | {p.ordinal for p in observed.pods}):
        pod = observed.pod(ordinal)
        entry: dict[str, Any] = {"ordinal": ordinal, "container": ref.container(ordinal), "host": ref.pod_host(ordinal)}
        if pod is None or not pod.exists:
            entry.update(role="down", state="absent", desired=ordinal < desired.replicas)
        else:
            entry.update(_live_pod(desired, pod, ordinal, writable=writable, plugin_mode=plugin_mode))
            entry.update(_pg_state(desired, pod, lags.get(desired.app_name(ordinal))))
        pods.append(entry)
    return pods


def _live_pod(desired: Desired, pod: PodStatus, ordinal: int, *, writable: int, plugin_mode: bool) -> dict[str, Any]:
    """A running pod's role and container state; under Voodu the pod hash is the controller's
    business, so it always counts as up to date."""
    role = classify(pod, target_primary=desired.target_primary, writable_count=writable)
    return dict(role=role.value, state=pod.state, health=pod.health,
                desired=ordinal < desired.replicas,
                published=pod.published,
                up_to_date=pod.spec_hash == desired.pod(ordinal).spec_hash
                if ordinal < desired.replicas and not plugin_mode else True)


def _pg_state(desired: Desired, pod: PodStatus, replay_lag: int | None) -> dict[str, Any]:
    """What Postgres in the pod reports (timeline, LSN, standby streaming), or why it could not."""
    if pod.pg is None:
        return {"error": pod.error} if pod.error else {}
    entry: dict[str, Any] = dict(timeline=pod.pg.timeline, lsn=pod.pg.lsn, pending_restart=pod.pg.pending_restart)
    if pod.pg.in_recovery:
        entry.update(streaming_from_primary=streams_from_primary(desired, pod), replay_lag_bytes=replay_lag)
    return entry


def _in_flight(desired: Desired, bucket: dict[str, str], consumers: list[str]) -> dict[str, Any]:
    """Recorded events and unfinished operations, each only when there is one."""
    out: dict[str, Any] = {}
    record = ClusterRecord.of(bucket).last_failover
    failover = {k: v for k, v in record.items() if k not in ("epoch", "state", "last_lsn")}
    if failover and record.get("state", "promoted") == "promoted":  # not one still fencing
        out["last_failover"] = failover
    if consumers:
        out["linked_consumers"] = consumers
    if desired.switchover is not None:
        out["switchover_to"] = desired.switchover
    if desired.rejoin:
        out["rejoin_pending"] = sorted(desired.rejoin)
    interrupted = pending_rotations(bucket)
    if interrupted:
        out["interrupted_rotations"] = interrupted
    restoring = interrupted_restore(bucket)
    if restoring is not None:
        out["physical_restore_pending"] = {"from": restoring, "finish": restore_command(desired.ref, restoring)}
    return out


def _backup_schedule(bucket: dict[str, str]) -> dict[str, Any] | None:
    """The recorded backup schedule with its next run; its error when the bucket's is unreadable."""
    try:
        schedule = schedule_from_bucket(bucket)
    except ScheduleError as exc:
        return {"error": str(exc)}
    if schedule is None:
        return None
    return {**schedule.to_dict(), "next": rfc3339(next_fire(schedule.cron, datetime.now(UTC)))}


def format_info(snap: dict[str, Any]) -> str:
    title = f"postgres {snap['ref']}"
    lines = [title, "─" * min(len(title), 80)]

    def row(label: str, value: Any) -> None:
        lines.append(f"  {label:<16}{value}")

    row("image", snap["image"])
    row("replicas", f"{snap['replicas']} (primary=pod-{snap['primary_ordinal']})")
    row("primary", f"{snap['primary_fqdn']}:{snap['port']}")
    if snap.get("standby_fqdns"):
        row("standbys", "")
        lines.extend(f"{'':18}{h}:{snap['port']}" for h in snap["standby_fqdns"])
    lines.append("")
    row("database", snap["database"])
    row("super_user", f"{snap['super_user']} (password {snap['password_redacted']})")
    row("replication", f"{snap['replication_user']} (password {snap['replication_password_redacted']})")
    lines.append("")
    row("bind", snap["bind_address"])
    if "switchover_to" in snap:
        row("⚠ switchover", f"to pod-{snap['switchover_to']} not finished; `voodu-postgres reconcile {snap['ref']}` "
                           "finishes it")
    if snap.get("rejoin_pending"):
        row("⚠ rejoin", "pending for " + ", ".join(f"pod-{o}" for o in snap["rejoin_pending"])
            + f"; `voodu-postgres reconcile {snap['ref']}` finishes it")
    for key in snap.get("interrupted_rotations", []):
        flag = " --replication" if key == REPLICATION_PASSWORD_KEY else ""
        row("⚠ rotation", f"{key} rotation was interrupted; finish it: voodu-postgres new-password {snap['ref']}{flag}")
    restoring = snap.get("physical_restore_pending")
    if restoring:
        row("⚠ restore", f"a physical restore from {restoring['from']} did not finish (the pods' data is "
                         f"half-replaced); finish it: {restoring['finish']}")
    auto = snap.get("auto_failover") or {}
    if auto.get("enabled"):
        row("auto_failover", f"on: after {auto['failover_timeout_s']:g}s of a failing primary "
                             f"(async standbys at most {auto['max_lag_on_failover']} bytes behind)")
    last = snap.get("last_failover")
    if last:
        lost = "none (synchronous)" if last.get("synchronous") else f"up to {last.get('lost_bytes', '?')} bytes"
        row("last failover", f"{last.get('at', '?')}: pod-{last.get('from', '?')} → pod-{last.get('to', '?')} "
                             f"({last.get('problem', '?')}); lost {lost}")
    backup = snap.get("backup_schedule")
    if backup is not None:
        if "error" in backup:
            row("⚠ backups", backup["error"])
        else:
            extra = "".join(f", {label} {backup[key]}" for key, label in (("from_replica", "from pod"),
                            ("keep", "keep"), ("max_age", "max-age")) if backup[key] not in (None, 0, "0"))
            row("backups", f"scheduled {backup['cron']!r} UTC{extra}; next {backup['next']} "
                           "(runs under reconcile --watch)")
    lines.append("")
    lines.append(_pods_table(snap["pods"]).rstrip("\n"))
    lines.append("")
    consumers = snap.get("linked_consumers") or []
    if consumers:
        lines.append(f"  linked consumers ({len(consumers)})")
        lines.extend(f"{'':18}{c}" for c in consumers)
    else:
        lines.append("  linked consumers (none) — voodu-postgres link wires one")
    return "\n".join(lines) + "\n"


def _pods_table(pods: list[dict[str, Any]]) -> str:
    """One row per pod, rendered by rich as plain text (no colour codes: output may be piped)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 2, 0, 0))
    for header in ("POD", "ROLE", "STATE", "HOST ADDRESS", "TIMELINE", "LAG", "STREAMING", ""):
        table.add_column(header)
    for pod in pods:
        lag = pod.get("replay_lag_bytes")
        streaming = pod.get("streaming_from_primary")
        notes = [note for flag, note in ((pod.get("desired", True), "surplus"),
                                         (pod.get("up_to_date", True), "outdated spec")) if not flag]
        table.add_row(str(pod["ordinal"]), pod["role"], pod["state"], pod.get("published") or "—",
                      str(pod.get("timeline") or "—"),
                      "—" if lag is None else f"{lag} B",
                      "—" if streaming is None else ("yes" if streaming else "NO"), ", ".join(notes))
    buffer = io.StringIO()
    Console(file=buffer, width=120, color_system=None, highlight=False).print(table)
    return "\n".join("  " + line.rstrip() for line in buffer.getvalue().splitlines() if line.strip())


