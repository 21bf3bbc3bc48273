#!/usr/bin/env bash
# docker-entrypoint.sh — entrypoint of the locally built voodu-postgres-local image.
#
# Behaves like the entrypoint of the official `postgres` image, as far as the
# project relies on it:
#   * `docker run IMG -c x=y`        -> runs `postgres -c x=y`
#   * `docker run IMG psql ...`      -> any non-postgres command is exec'd as-is,
#                                       as whatever user the container runs as
#   * started as root                -> fixes PGDATA / socket dir ownership, then
#                                       re-runs itself as `postgres` (setpriv)
#   * empty PGDATA (no PG_VERSION)   -> initdb from POSTGRES_USER / _PASSWORD / _DB /
#                                       _INITDB_ARGS (or their *_FILE variants), runs
#                                       /docker-entrypoint-initdb.d/* against a private
#                                       unix-socket-only server, stops it
#   * finally                        -> exec postgres (PID 1, so SIGINT from
#                                       `docker stop` triggers a fast shutdown)
set -Eeo pipefail

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
readonly SOCKET_DIR=/var/run/postgresql
readonly INITDB_DIR=/docker-entrypoint-initdb.d

say() { printf '%s [entrypoint] %s\n' "$(date -u '+%F %T UTC')" "$*" >&2; }
fail() {
	say "FATAL: $*"
	exit 1
}

# load_secret NAME [DEFAULT]
# Exports NAME from $NAME, or from the file named by $NAME_FILE (docker
# secrets style), or DEFAULT. Setting both forms is an error.
load_secret() {
	local name=$1 file_var="${1}_FILE" fallback=${2:-} value
	if [ -n "${!name:-}" ] && [ -n "${!file_var:-}" ]; then
		fail "both $name and $file_var are set; use only one of them"
	fi
	value=$fallback
	if [ -n "${!name:-}" ]; then
		value=${!name}
	elif [ -n "${!file_var:-}" ]; then
		[ -r "${!file_var}" ] || fail "$file_var points to an unreadable file: ${!file_var}"
		value=$(<"${!file_var}")
	fi
	export "$name=$value"
	unset "$file_var"
}

# prepare_dirs_as_root: make the data and socket directories usable by postgres.
prepare_dirs_as_root() {
	mkdir -p "$PGDATA" "$SOCKET_DIR"
	# only touch what is not already ours (cheap on big data dirs)
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	chmod 0700 "$PGDATA"
	chown postgres:postgres "$SOCKET_DIR"
	chmod 3777 "$SOCKET_DIR"
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres '{}' +
		chmod 0700 "$POSTGRES_INITDB_WALDIR"
	fi
}

# run_sql [psql args...]: psql against the temporary server, stopping on the first error.
run_sql() {
	psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

# run_init_scripts: everything in /docker-entrypoint-initdb.d, in glob (C) order.
run_init_scripts() {
	local f
	shopt -s nullglob
	for f in "$INITDB_DIR"/*; do
		case $f in
		*.sh)
			if [ -x "$f" ]; then
				say "executing $f"
				"$f"
			else
				# read-only bind mounts with mode 0644 land here: source them
				say "sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql)
			say "applying $f"
			run_sql --dbname "$POSTGRES_DB" -f "$f"
			;;
		*.sql.gz)
			say "applying $f (gzip)"
			gunzip -c "$f" | run_sql --dbname "$POSTGRES_DB"
			;;
		*)
			say "ignoring $f (not .sh, .sql or .sql.gz)"
			;;
		esac
	done
	shopt -u nullglob
}

# initialise_cluster POSTGRES_ARGS...: first start on an empty data directory.
initialise_cluster() {
	load_secret POSTGRES_PASSWORD
	load_secret POSTGRES_USER postgres
	load_secret POSTGRES_DB "$POSTGRES_USER"
	load_secret POSTGRES_INITDB_ARGS
	export POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

	if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
		fail "the database is not initialised and no superuser password was given.
  Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value,
  or set POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password (unsafe)."
	fi
	if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
		say "WARNING: POSTGRES_HOST_AUTH_METHOD=trust: any host may connect without a password"
	fi
	[ -w "$PGDATA" ] || fail "$PGDATA is not writable by uid $(id -u)"

	# POSTGRES_INITDB_ARGS is a shell-quoted string, like in the official image
	local -a extra=()
	if [ -n "$POSTGRES_INITDB_ARGS" ]; then
		eval "extra=( $POSTGRES_INITDB_ARGS )"
	fi
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		extra+=(--waldir "$POSTGRES_INITDB_WALDIR")
	fi

	say "running initdb in $PGDATA (superuser $POSTGRES_USER)"
	if [ -n "$POSTGRES_PASSWORD" ]; then
		initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") "${extra[@]}"
	else
		initdb --username="$POSTGRES_USER" "${extra[@]}"
	fi

	{
		echo
		echo "# added by docker-entrypoint.sh"
		echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"

	# Private server for the setup phase: no TCP listener, so clients probing
	# over TCP only see the database once initialisation is complete. The
	# container's own postgres options are passed through (e.g. -c
	# shared_preload_libraries=... needed by CREATE EXTENSION in init scripts).
	local opts
	# Like the official image, the temporary server's port is ${PGPORT:-5432} and comes LAST so
	# it wins over a `-p` among the container's options: the psql calls below (and the init
	# scripts) reach it through PGPORT, whatever port the final server will use.
	local opts=""
	if [ $# -gt 0 ]; then
		opts="$(printf '%q ' "$@")"
	fi
	opts+=" -c listen_addresses='' -p ${PGPORT:-5432}"
	say "starting temporary server (unix socket only)"
	pg_ctl -D "$PGDATA" -o "$opts" -w start

	local saved_pgpassword=${PGPASSWORD-}
	export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
	unset PGHOST PGHOSTADDR

	if [ "$POSTGRES_DB" != postgres ]; then
		say "creating database $POSTGRES_DB"
		run_sql --dbname postgres --set db="$POSTGRES_DB" <<-'SQL'
			SELECT format('CREATE DATABASE %I', :'db')
			WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
		SQL
	fi

	run_init_scripts

	say "stopping temporary server"
	pg_ctl -D "$PGDATA" -m fast -w stop
	if [ -n "$saved_pgpassword" ]; then
		export PGPASSWORD=$saved_pgpassword
	else
		unset PGPASSWORD
	fi
	say "initialisation complete"
}

main() {
	# `docker run IMG -c foo=bar` means `postgres -c foo=bar`
	if [ "${1:0:1}" = - ]; then
		set -- postgres "$@"
	fi

	# psql, pg_basebackup, pg_rewind, bash, ...: run unchanged
	if [ "${1:-}" != postgres ]; then
		exec "$@"
	fi

	if [ "$(id -u)" = 0 ]; then
		prepare_dirs_as_root
		# drop root for good and start over as the postgres user
		exec setpriv --reuid=postgres --regid=postgres --init-groups \
			env HOME=/var/lib/postgresql "$(readlink -f "${BASH_SOURCE[0]}")" "$@"
	fi

	if [ -s "$PGDATA/PG_VERSION" ]; then
		say "PGDATA already initialised (PG_VERSION $(<"$PGDATA/PG_VERSION")); skipping init"
	else
		initialise_cluster "${@:2}"
	fi

	exec "$@"
}

main "$@"
