"""Every command, one row each: its name, help, arguments, handler, and whether (and how) it
answers under Voodu. The parser, the dispatcher, the plugin's refusals and ``plugin.yml`` are all
derived from this table, so adding a command is adding a row (and its handler and flags).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voodu_postgres.cli import flags
from voodu_postgres.cli import handlers as h


@dataclass(frozen=True)
class Command:
    """One command of the CLI (``voodu-postgres NAME``) and of the plugin (``vd pg:NAME``)."""

    name: str
    help: str
    handler: h.Handler
    #: the arguments it takes beyond the shared ones
    flags: Callable[[flags.Parser], None] | None = None
    #: a longer text for ``NAME --help``
    description: str | None = None
    #: takes ``-o text|json``
    output: bool = True
    #: holds the cluster's lease: takes ``--lock-timeout`` and ``--no-wait``
    lease: bool = False
    #: ``--no-wait``'s help when it means more than "fail at once"
    no_wait_help: str | None = None
    #: under Voodu: ``None`` when it answers there; otherwise what to use instead (it refuses)
    standalone_only: str | None = None
    #: plugin.yml's help line (defaults to ``help``)
    plugin_help: str | None = None
    #: answered before the mode is known (``expand``, ``help``, ``defaults``): same in both modes
    modeless: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


_PROMOTE_DESCRIPTION = (
    "Planned switchover (the primary is healthy): fence the primary with a clean shutdown, wait until the "
    "target has every committed write, promote it, re-point the other standbys, and rejoin the old primary "
    "as a standby. No acknowledged write is lost. Failover (--force, primary down): promote the target and "
    "report how far it had got.")
_CONFIG_DESCRIPTION = (
    "REF is scope/name for a resource bucket, scope for a scope-level bucket shared by every resource of "
    "that scope, or /name for an unscoped resource. Reads of a resource bucket include scope-level values "
    "(the resource's own win). Secret values are shown only when asked for by key. An empty value unsets; "
    "VALUE '-' reads the value from stdin.")
_LINK_DESCRIPTION = (
    "Writes DATABASE_URL (the current primary) into CONSUMER's config bucket, and with --reads "
    "DATABASE_READ_URL (every standby; the primary when replicas = 1). The consumer is remembered in "
    "POSTGRES_LINKED_CONSUMERS, and its URLs follow the cluster: after promote, scaling and new-password "
    "they are rewritten.")
_NEW_PASSWORD_DESCRIPTION = (
    "Generates a new password, sets it on the role (as a SCRAM verifier: the password never reaches "
    "Postgres), stores it in the bucket and rewrites linked apps' URLs. Open sessions keep working; no pod "
    "restarts. An interrupted rotation is finished by running it again.")
_LIST_DESCRIPTION = (
    "Rows come from the backups directory, the capture containers and the metadata sidecars; a row's state "
    "(running, complete, failed, cancelled) is derived now.")
_CAPTURE_DESCRIPTION = (
    "Runs pg_dump (custom format: one file) in a container of the cluster's image on its network, from the "
    "primary or --from-replica N, counting every table's rows in the dump's own snapshot. The dump is "
    "written as .partial, read back (TOC), checksummed, synced and renamed only when every stage succeeded; "
    "a JSON sidecar records what it holds. Returns at once with the id; --follow shows progress (Ctrl-C "
    "stops following, not the capture). Retention runs after a successful capture, so --keep N leaves "
    "exactly N. Under Voodu the capture is a job <name>.bk.bNNN (no --follow/--verify there).")
_RESTORE_DESCRIPTION = (
    "pg_restore --clean --if-exists --no-owner --no-privileges --single-transaction into the primary: a "
    "failed restore changes nothing. A dump from a newer PostgreSQL major is refused. Standbys receive the "
    "restored data by streaming. Holds the cluster lease.")
_SCHEDULE_DESCRIPTION = (
    "Records the schedule in the cluster's bucket (BACKUP_SCHEDULE). `reconcile --watch` starts a capture "
    "when a slot is due; a slot missed while it was down runs once when it comes back. --remove drops the "
    "schedule. Under Voodu it prints the cronjob block to add to voodu.hcl instead (Voodu's scheduler runs "
    "it).")
_BACKUP_DESCRIPTION = (
    "pg_basebackup -Ft -X stream (WAL streamed alongside, so the copy is self-consistent) from the primary, "
    "or from a running standby with --from-replica N, into ONE tar at PATH holding base.tar, pg_wal.tar and "
    "backup_manifest. Written under a temporary name next to PATH, checked, fsynced and renamed last: a "
    "failure leaves nothing at PATH. Mode 0600 (it holds password hashes). Restore it with "
    "`restore REF --from PATH`.")
_PHYSICAL_RESTORE_DESCRIPTION = (
    "Checks the tar first (base.tar with PG_VERSION, pg_wal.tar, the image's major) and changes nothing if "
    "it is wrong. Then, holding the cluster lease and with its intent recorded in the bucket "
    "(PG_PHYSICAL_RESTORE: apply and reconcile refuse until it finishes): stops every pod, wipes every data "
    "volume, unpacks the tar into the primary's, sets the bucket's passwords on the superuser and "
    "replication roles, starts the primary, and lets the reconciler re-clone the standbys. Interrupted, it "
    "is finished by running it again. Standalone only.")
_STANDALONE_PROMOTE = "voodu-postgres promote on the host (standalone)"

REGISTRY: tuple[Command, ...] = (
    Command("expand", "Voodu plugin protocol: expand request on stdin → envelope on stdout", h.expand,
            output=False, modeless=True,
            plugin_help="expand a postgres block into an asset + statefulset and seed the config bucket"),
    Command("validate", "check postgres blocks in HCL files; report every problem", h.validate, flags.hcl_files,
            standalone_only="vd diff -f voodu.hcl", plugin_help="standalone only (under Voodu: vd diff)"),
    Command("render", "show what expand produces for each block (secrets redacted; nothing is written)", h.render,
            flags.render, standalone_only="vd diff -f voodu.hcl", plugin_help="standalone only (under Voodu: vd diff)"),
    Command("config", "read and write config buckets (standalone stand-in for `vd config`)", h.config,
            description=_CONFIG_DESCRIPTION, output=False, standalone_only="vd config <scope>/<name> …",
            plugin_help="standalone only (under Voodu: vd config)"),
    Command("apply", "create or converge the clusters in HCL files and wait until ready", h.apply, flags.apply,
            lease=True, no_wait_help=("never block: start the work without waiting for readiness, and fail at "
                                      "once if another operation holds the cluster"),
            standalone_only="vd apply -f voodu.hcl", plugin_help="standalone only (under Voodu: vd apply)"),
    Command("reconcile", "one pass (or a loop) over applied clusters: repair drift", h.reconcile, flags.reconcile,
            lease=True, standalone_only="Voodu's controller reconciles by itself",
            plugin_help="standalone only (Voodu's controller reconciles)"),
    Command("info", "cluster topology: the spec, the bucket, and every pod as observed now", h.info, flags.ref,
            plugin_help="topology, users, bind address, linked apps and every pod as observed now"),
    Command("delete", "remove a cluster's containers (--prune: also its data and state)", h.delete, flags.delete,
            lease=True, standalone_only="vd delete <scope>/<name>",
            plugin_help="standalone only (under Voodu: vd delete)"),
    Command("promote", "make a standby the primary (planned switchover, or failover with --force)", h.promote,
            flags.promote, description=_PROMOTE_DESCRIPTION, lease=True, aliases=("failover",),
            standalone_only=_STANDALONE_PROMOTE, plugin_help="standalone only: make a standby the primary"),
    Command("rejoin", "re-attach a pod as a standby of the current primary (pg_rewind, or a fresh clone when "
            "rewind is impossible)", h.rejoin, flags.rejoin, lease=True,
            standalone_only="voodu-postgres rejoin on the host (standalone)",
            plugin_help="standalone only: re-attach a pod as a standby"),
    Command("link", "wire an app to the cluster: DATABASE_URL (and DATABASE_READ_URL) in its bucket", h.link,
            flags.link, description=_LINK_DESCRIPTION,
            plugin_help="set DATABASE_URL (and with --reads DATABASE_READ_URL) in an app's bucket"),
    Command("unlink", "remove DATABASE_URL / DATABASE_READ_URL from an app and forget it", h.unlink, flags.unlink,
            plugin_help="remove DATABASE_URL / DATABASE_READ_URL from an app"),
    Command("new-password", "rotate the superuser password on the live cluster (zero downtime)", h.new_password,
            flags.new_password, description=_NEW_PASSWORD_DESCRIPTION, lease=True,
            plugin_help="rotate the superuser (or --replication) password on the live cluster, no restart"),
    Command("expose", "publish the cluster on every interface (0.0.0.0)", h.expose, flags.ref, lease=True,
            plugin_help="publish the cluster on 0.0.0.0"),
    Command("unexpose", "publish the cluster on loopback (127.0.0.1) only", h.expose, flags.ref, lease=True,
            plugin_help="publish the cluster on 127.0.0.1 only"),
    Command("psql", "psql in the primary (or pod N) as the superuser, no password needed", h.psql, flags.psql,
            description="Arguments after -- go to psql unchanged. Exit code is psql's.", output=False,
            plugin_help="psql in the primary (or --replica N) as the superuser, no password"),
    Command("defaults", "print the default postgres block", h.defaults, modeless=True),
    Command("help", "plugin overview", h.overview, output=False, modeless=True),
    Command("backups", "list backups: one cluster (scope/name), a scope, or every cluster", h.backups_list,
            flags.backups, description=_LIST_DESCRIPTION,
            plugin_help="list a cluster's backups: state derived now, verified or not"),
    Command("backups:capture", "pg_dump the cluster into its backups directory (detached)", h.backups_capture,
            flags.backups_capture, description=_CAPTURE_DESCRIPTION,
            plugin_help=("pg_dump into the backups directory, as a Voodu job <name>.bk.bNNN (--from-replica, "
                         "--keep, --max-age)")),
    Command("backups:logs", "a capture's log (--follow: until it ends)", h.backups_logs, flags.backups_logs,
            output=False, plugin_help="a capture's log (--follow: standalone only)"),
    Command("backups:cancel", "stop a running capture (every running one without ID); nothing partial is left",
            h.backups_cancel, flags.backups_cancel,
            plugin_help="stop a running capture (delete_manifest of its job); nothing partial is left"),
    Command("backups:delete", "delete a finished backup (a running one must be cancelled)", h.backups_delete,
            flags.backups_delete,
            plugin_help="delete a finished backup's files and its job (--yes; a running one must be cancelled)"),
    Command("backups:prune", "apply a retention policy now (flags over BACKUP_KEEP/BACKUP_MAX_AGE)",
            h.backups_prune, flags.backups_prune,
            plugin_help="apply a retention policy now: files and jobs (--keep, --max-age, --dry-run, --yes)"),
    Command("backups:download", "copy a complete backup out of the backups directory", h.backups_download,
            flags.backups_download, plugin_help="fetch a complete backup (fetch_file)"),
    Command("backups:restore", "restore a complete backup into the primary, in one transaction",
            h.backups_restore, flags.backups_restore, description=_RESTORE_DESCRIPTION, lease=True),
    Command("backups:verify", "restore a backup into a throw-away server and compare row counts with its "
            "metadata when recorded (the result is recorded)", h.backups_verify, flags.ref_and_id,
            plugin_help="restore a backup into a throw-away server and compare row counts"),
    Command("backups:schedule", "record a backup schedule (cron, UTC); `reconcile --watch` runs it",
            h.backups_schedule, flags.backups_schedule, description=_SCHEDULE_DESCRIPTION,
            plugin_help="print the cronjob block that runs backups:capture on a schedule (--at CRON)"),
    Command("backup", "pg_basebackup the whole cluster into one tar file (base.tar + pg_wal.tar)", h.backup,
            flags.backup, description=_BACKUP_DESCRIPTION,
            plugin_help=("pg_basebackup the whole cluster into one tar file on this host (--destination PATH, "
                         "--from-replica N)")),
    Command("restore", "DESTRUCTIVE: replace the whole cluster's data with a `backup` tar", h.restore,
            flags.restore, description=_PHYSICAL_RESTORE_DESCRIPTION, lease=True,
            standalone_only=("vd pg:backups:restore (a physical restore replaces every pod's data, and the "
                             "controller owns the pods: it is standalone-only)"),
            plugin_help=("standalone only: replace the whole cluster's data with a backup tar (under Voodu: "
                         "vd pg:backups:restore)")),
)

#: name (or alias) → row
BY_NAME: dict[str, Command] = {name: row for row in REGISTRY for name in row.names}
#: every command, as plugin.yml must declare it (aliases included)
COMMANDS: tuple[str, ...] = tuple(BY_NAME)
#: commands that answer under Voodu; the rest manage standalone state and refuse there
PLUGIN_COMMANDS = frozenset(name for name, row in BY_NAME.items() if row.standalone_only is None)


def plugin_yml_commands() -> str:
    """plugin.yml's ``commands:`` list, as generated from the registry (a test keeps the file equal)."""
    lines = ["commands:"]
    for name, row in BY_NAME.items():
        text = row.plugin_help or row.help
        if name != row.name:
            text = f"standalone only: alias of {row.name}"
        needs_quotes = any(ch in text for ch in ":#{}[]") or text.startswith(("-", "`", "'", '"'))
        lines += [f"  - name: {name}", f"    help: \"{text}\"" if needs_quotes else f"    help: {text}"]
    return "\n".join(lines) + "\n"
