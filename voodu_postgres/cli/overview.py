"""The ``help`` command's overview: the commands most people need, one line each."""

HELP_TEXT = """\
voodu-postgres — PostgreSQL clusters on Docker from a `postgres "scope" "name" { … }` block

One primary plus N streaming-replication standbys, generated secrets, promote/rejoin,
synchronous replication, app wiring and zero-downtime password rotation, and a reconciler that
keeps Docker in line with the file.

USAGE
  voodu-postgres apply -f voodu.hcl             create or converge; waits until every standby streams
  voodu-postgres info REF [-o json]             topology and every pod as observed now
  voodu-postgres reconcile [REF…] [--dry-run]   one repair pass (--watch: keep going)
  voodu-postgres link REF APP [--reads]         DATABASE_URL (+ DATABASE_READ_URL) into APP's bucket
  voodu-postgres unlink REF APP                 remove them again
  voodu-postgres new-password REF               rotate the superuser password (--replication: the replicator's)
  voodu-postgres expose REF / unexpose REF      publish on 0.0.0.0 / back to 127.0.0.1
  voodu-postgres psql REF [-c SQL] [-- ARGS]    psql in the primary (or --replica N), no password needed
  voodu-postgres promote REF --replica N        switchover (no acknowledged write lost); --force: failover
  voodu-postgres rejoin REF --replica N         re-attach a pod as a standby (pg_rewind, else re-clone)
  voodu-postgres delete REF --yes [--prune]     remove pods (--prune: data, secrets, assets too)
  voodu-postgres validate -f voodu.hcl          check every postgres block, report every problem
  voodu-postgres render -f voodu.hcl            what expand emits (secrets redacted)
  voodu-postgres config get|set|unset REF …     the config bucket (passwords, ordinal, retention)
  voodu-postgres defaults                       the default block
  voodu-postgres backups [REF|SCOPE]            list backups (state derived now; verified or not)
  voodu-postgres backups:capture REF [--follow] pg_dump (--from-replica N, --keep N, --max-age D, --verify)
  voodu-postgres backups:restore REF ID --yes   restore into the primary in one transaction
  voodu-postgres backups:verify REF ID          restore into a throw-away server, compare row counts
  voodu-postgres backups:logs|cancel|delete|prune|download …   the rest of the backups suite
  voodu-postgres backup REF --destination PATH  pg_basebackup of the whole cluster into one tar (--from-replica N)
  voodu-postgres restore REF --from PATH --yes  DESTRUCTIVE: the whole cluster from such a tar (standalone only)
  voodu-postgres expand                         Voodu plugin hook (JSON on stdin/stdout)

REF is scope/name. `voodu-postgres <command> --help` shows a command's flags.
As a Voodu plugin: vd plugins:install <this repository>; then `vd pg:<command> …` runs the same
commands (info, link, unlink, new-password, expose, unexpose, psql, backup, and the backups
suite: captures run as Voodu jobs; backups:schedule prints the cronjob block to add).
"""
