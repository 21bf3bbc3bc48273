#!/usr/bin/env bash
# setup-docker.sh — make this machine ready for voodu-postgres tests/dev.
#
# Target: Debian 12 (bookworm), run as root, no systemd, no container registry.
# Safe to run any number of times; when everything is in place it only checks
# and returns in about a second.
#
#   1. packages : Debian's docker.io and debootstrap, installed only if missing
#   2. daemon   : start dockerd (detached, outlives this script) unless it answers
#   3. network  : user-defined bridge network "voodu0" used by the product
#   4. image    : voodu-postgres-local:15 via scripts/build-pg-image.sh (cached)
#
# Environment:
#   IMAGE, VOODU_IMAGE_CACHE, SLIM, FORCE_IMAGE, FORCE_ROOTFS  -> build-pg-image.sh
#   VOODU_NETWORK          network name (default voodu0)
#   DOCKERD_LOG            default /var/log/dockerd.log
#   DOCKERD_PIDFILE        default /var/run/docker.pid
#   DOCKERD_ARGS           extra dockerd arguments (word-split)
#   DOCKERD_WAIT           seconds to wait for the daemon (default 60)
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NETWORK=${VOODU_NETWORK:-voodu0}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_PIDFILE=${DOCKERD_PIDFILE:-/var/run/docker.pid}
DOCKERD_ARGS=${DOCKERD_ARGS:-}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}
LOCK_FILE=/var/lock/voodu-setup-docker.lock
APT_LOG=/var/log/voodu-setup-apt.log
readonly PACKAGES=(docker.io debootstrap)

START=$SECONDS
progress() { printf '%(%H:%M:%S)T setup-docker [+%ss]: %s\n' -1 "$((SECONDS - START))" "$*" >&2; }
bail() {
	progress "ERROR: $*"
	exit 1
}

[ "$(id -u)" = 0 ] || bail "run me as root"

# Serialise concurrent invocations (several test jobs may call .ci/setup at
# once). fd 9 is closed again for dockerd so the daemon never holds the lock.
mkdir -p "${LOCK_FILE%/*}"
exec 9>"$LOCK_FILE"
if ! flock -n 9; then
	progress "another setup run is in progress; waiting for it"
	flock -w 900 9 || bail "timed out waiting for $LOCK_FILE"
fi

# ------------------------------------------------------------- 1. packages
is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_missing_packages() {
	local pkg missing=()
	for pkg in "${PACKAGES[@]}"; do
		is_installed "$pkg" || missing+=("$pkg")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		progress "packages present: ${PACKAGES[*]}"
		return
	fi
	progress "installing ${missing[*]} (apt-get update + install, log: $APT_LOG)"
	export DEBIAN_FRONTEND=noninteractive
	# Recommends are skipped on purpose (git, needrestart, apparmor, ...).
	# Package scripts cannot start dockerd here (no systemd, policy-rc.d
	# denies it); step 2 does that.
	if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$APT_LOG" 2>&1; then
		tail -n 25 "$APT_LOG" >&2
		bail "apt-get failed"
	fi
	for pkg in "${missing[@]}"; do
		is_installed "$pkg" || bail "$pkg did not install"
	done
	progress "installed ${missing[*]}"
}

# --------------------------------------------------------------- 2. daemon
daemon_answers() {
	timeout 5 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# The pid in the pidfile belongs to a live dockerd (not a zombie, and not an
# unrelated process that reused the pid: /run is not a tmpfs on these VMs).
dockerd_alive() {
	local pid state
	pid=$(cat "$DOCKERD_PIDFILE" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
	state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
	[ -n "$state" ] && [ "$state" != Z ]
}

# cgroup v1 controllers (or v2) must be mounted before dockerd starts. The
# VM's init normally does this; only fill the gap when nothing is there.
ensure_cgroups() {
	if [ -e /sys/fs/cgroup/cgroup.controllers ] || awk '$3 == "cgroup" {found = 1} END {exit !found}' /proc/self/mounts; then
		return
	fi
	progress "no cgroup hierarchy mounted; mounting cgroup v1 controllers"
	if command -v cgroupfs-mount >/dev/null; then
		cgroupfs-mount
		return
	fi
	mountpoint -q /sys/fs/cgroup || mount -t tmpfs -o uid=0,gid=0,mode=0755 cgroup /sys/fs/cgroup
	local ctrl enabled
	while read -r ctrl _ _ enabled; do
		[ "$enabled" = 1 ] || continue
		mkdir -p "/sys/fs/cgroup/$ctrl"
		mountpoint -q "/sys/fs/cgroup/$ctrl" || mount -t cgroup -o "$ctrl" cgroup "/sys/fs/cgroup/$ctrl"
	done < <(grep -v '^#' /proc/cgroups)
}

launch_dockerd() {
	if [ -e "$DOCKERD_PIDFILE" ]; then
		progress "removing stale pidfile $DOCKERD_PIDFILE (pid $(cat "$DOCKERD_PIDFILE" 2>/dev/null || echo '?'))"
		rm -f "$DOCKERD_PIDFILE"
	fi
	mkdir -p "${DOCKERD_LOG%/*}"
	progress "starting dockerd (log: $DOCKERD_LOG)"
	# New session (setsid) + nohup + no tty/stdin: the daemon is detached from
	# this script's process group and survives when the caller's job ends.
	# shellcheck disable=SC2086 # DOCKERD_ARGS is deliberately word-split
	nohup setsid dockerd --pidfile "$DOCKERD_PIDFILE" $DOCKERD_ARGS \
		</dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
}

ensure_daemon() {
	if daemon_answers; then
		progress "docker daemon is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
		return
	fi
	command -v dockerd >/dev/null || bail "dockerd not found (is docker.io installed?)"
	ensure_cgroups
	local launches=0
	if dockerd_alive; then
		progress "dockerd pid $(cat "$DOCKERD_PIDFILE") is running but not answering yet; waiting"
	else
		launch_dockerd
		launches=1
	fi
	local deadline=$((SECONDS + DOCKERD_WAIT))
	until daemon_answers; do
		if [ $SECONDS -ge $deadline ]; then
			tail -n 20 "$DOCKERD_LOG" >&2 || true
			bail "docker daemon did not answer within ${DOCKERD_WAIT}s"
		fi
		# it may have died (e.g. killed, or a start-up error); give it a few more tries
		if ! dockerd_alive && ! daemon_answers; then
			sleep 1
			if ! dockerd_alive && ! daemon_answers; then
				[ $launches -lt 3 ] || {
					tail -n 20 "$DOCKERD_LOG" >&2 || true
					bail "dockerd keeps exiting; see $DOCKERD_LOG"
				}
				progress "dockerd is not running; starting it again"
				launch_dockerd
				launches=$((launches + 1))
			fi
		fi
		sleep 0.25
	done
	progress "docker daemon is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null), pid $(cat "$DOCKERD_PIDFILE" 2>/dev/null || echo '?'))"
}

# -------------------------------------------------------------- 3. network
ensure_network() {
	if docker network inspect "$NETWORK" >/dev/null 2>&1; then
		progress "network $NETWORK exists"
		return
	fi
	progress "creating bridge network $NETWORK"
	# tolerate a concurrent creator (e.g. the product itself)
	docker network create --driver bridge "$NETWORK" >/dev/null ||
		docker network inspect "$NETWORK" >/dev/null 2>&1 ||
		bail "could not create network $NETWORK"
}

install_missing_packages
ensure_daemon
ensure_network
progress "checking image ${IMAGE:-voodu-postgres-local:15}"
bash "$HERE/build-pg-image.sh"
progress "done"
