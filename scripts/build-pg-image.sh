#!/usr/bin/env bash
# build-pg-image.sh — build the local PostgreSQL image used by voodu-postgres
# without pulling anything from a container registry.
#
# How: Debian bookworm is bootstrapped with debootstrap (minbase), postgresql-15
# is installed and trimmed inside a chroot, the tree is packed into a tarball,
# and `docker build` turns it into an image (FROM scratch + ADD). The entrypoint
# (scripts/image/docker-entrypoint.sh) follows the official postgres image's
# contract, so the image is a drop-in replacement for `postgres:15` in tests.
#
# Caching, fastest first:
#   image label org.voodu.build-key matches  -> nothing to do (~0.1 s)
#   rootfs tarball for this recipe is cached -> only `docker build` (seconds)
#   otherwise                                -> debootstrap + apt (~1 min)
# The rootfs tarball lives in $VOODU_IMAGE_CACHE (default
# ~/.cache/voodu-postgres-image), named after a hash of everything that goes
# into it; editing the recipe below therefore invalidates it automatically.
#
# Environment:
#   IMAGE              image tag (default voodu-postgres-local:15)
#   VOODU_IMAGE_CACHE  cache directory (rootfs tarballs, downloaded .debs, logs)
#   DEBIAN_MIRROR      default http://deb.debian.org/debian
#   SLIM=0             keep the LLVM JIT (+~157 MB)
#   FORCE_IMAGE=1      re-run `docker build` even if the image looks current
#   FORCE_ROOTFS=1     ignore the cached rootfs (e.g. to pick up Debian updates)
#
# Must run as root (debootstrap, chroot, mount); needs debootstrap and a
# reachable docker daemon.
set -Eeuo pipefail

IMAGE=${IMAGE:-voodu-postgres-local:15}
CACHE=${VOODU_IMAGE_CACHE:-$HOME/.cache/voodu-postgres-image}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SLIM=${SLIM:-1}
FORCE_IMAGE=${FORCE_IMAGE:-0}
FORCE_ROOTFS=${FORCE_ROOTFS:-0}

readonly SUITE=bookworm
readonly PG_MAJOR=15
readonly PG_ID=999 # uid and gid of postgres, as in the official image
readonly LABEL_KEY=org.voodu.build-key
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENTRYPOINT_SRC=$SCRIPT_DIR/image/docker-entrypoint.sh

note() { printf '%(%H:%M:%S)T build-pg-image: %s\n' -1 "$*" >&2; }
abort() {
	note "ERROR: $*"
	exit 1
}

[ -r "$ENTRYPOINT_SRC" ] || abort "entrypoint not found at $ENTRYPOINT_SRC"

# ---------------------------------------------------------------------------
# The chroot recipe. It runs inside the freshly bootstrapped tree as
# `bash /tmp/voodu-recipe.sh` with PG_MAJOR, PG_ID and SLIM in the environment.
# Its text is part of the rootfs cache key.
# ---------------------------------------------------------------------------
read -r -d '' CHROOT_RECIPE <<'RECIPE' || true
set -Eeuo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
pgbin=/usr/lib/postgresql/$PG_MAJOR/bin

# package scripts must not try to start services in here
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d

# create postgres before postgresql-common does, with the official ids,
# so data volumes can move between this image and postgres:15
groupadd --system --gid "$PG_ID" postgres
useradd --system --uid "$PG_ID" --gid postgres --home-dir /var/lib/postgresql \
	--shell /bin/bash postgres
install -d -o postgres -g postgres /var/lib/postgresql

# the entrypoint runs initdb itself; Debian must not create a "main" cluster
install -d /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/voodu.conf

# keep documentation out of this image and out of anything built on top of it
cat >/etc/dpkg/dpkg.cfg.d/voodu-nodoc <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF

# debootstrap left the package index of the suite behind, no `apt-get update` needed
apt-get install -y --no-install-recommends "postgresql-$PG_MAJOR" ca-certificates

# listen on every interface by default (Debian ships 'localhost')
sample=/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample
sed -ri "s/^#?listen_addresses[[:space:]]*=[^#]*/listen_addresses = '*'\t\t/" "$sample"
grep -q "^listen_addresses = '\*'" "$sample"

install -d -o postgres -g postgres -m 3777 /var/run/postgresql
install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
install -d -m 0755 /docker-entrypoint-initdb.d
ln -sfn usr/local/bin/docker-entrypoint.sh /docker-entrypoint.sh

if [ "$SLIM" = 1 ]; then
	# JIT is optional; without llvmjit.so the server just reports it unavailable
	rm -rf "/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit.so" \
		"/usr/lib/postgresql/$PG_MAJOR/lib/llvmjit_types.bc" \
		"/usr/lib/postgresql/$PG_MAJOR/lib/bitcode" \
		/usr/lib/*-linux-gnu/libLLVM-*.so* /usr/lib/*-linux-gnu/libz3.so*
fi

# everything the project runs inside the container must be there
for tool in bash setpriv gunzip; do
	command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
for tool in postgres initdb pg_ctl pg_isready psql pg_basebackup pg_rewind pg_dump pg_restore; do
	[ -x "$pgbin/$tool" ] || { echo "missing $pgbin/$tool" >&2; exit 1; }
done

rm -f /usr/sbin/policy-rc.d
# /var/cache/apt/archives is the bind-mounted .deb cache: do not `apt-get clean`
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \
	/var/lib/dpkg/*-old /var/log/apt/* /var/log/dpkg.log /var/log/alternatives.log \
	/var/log/bootstrap.log /usr/share/doc/* /usr/share/man/* /usr/share/info/* \
	/usr/share/lintian/* /tmp/* /root/.cache
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
: >/etc/resolv.conf
echo voodu-postgres >/etc/hostname
RECIPE

# ---------------------------------------------------------------------------
# Dockerfile of the final image
# ---------------------------------------------------------------------------
DOCKERFILE="FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LANG=C.UTF-8 \\
    PG_MAJOR=$PG_MAJOR \\
    PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT [\"docker-entrypoint.sh\"]
CMD [\"postgres\"]"

hash16() { sha256sum | cut -c1-16; }

FLAVOUR="$SUITE-pg$PG_MAJOR-slim$SLIM"
ROOTFS_KEY=$(printf '%s\n' "$FLAVOUR" "$DEBIAN_MIRROR" "$PG_ID" "$CHROOT_RECIPE" | hash16)
ROOTFS_TAR=$CACHE/rootfs-$FLAVOUR-$ROOTFS_KEY.tar
BUILD_KEY=$( { printf '%s\n' "$ROOTFS_KEY" "$DOCKERFILE"; cat "$ENTRYPOINT_SRC"; } | hash16)

# --- fast path: the image already carries this exact build key -------------
if current=$(docker image inspect --format "{{ index .Config.Labels \"$LABEL_KEY\" }}" "$IMAGE" 2>/dev/null); then
	if [ "$current" = "$BUILD_KEY" ] && [ "$FORCE_IMAGE" != 1 ]; then
		note "$IMAGE is up to date ($BUILD_KEY)"
		exit 0
	fi
	note "$IMAGE exists with key '${current:-none}', want $BUILD_KEY: rebuilding"
else
	timeout 10 docker version >/dev/null 2>&1 || abort "docker daemon is not reachable"
	note "$IMAGE not found: building"
fi

[ "$(id -u)" = 0 ] || abort "must run as root"
mkdir -p "$CACHE/debs"

# --- stage 1: the root filesystem tarball ------------------------------------
WORK_ROOT=
release_chroot() {
	[ -n "$WORK_ROOT" ] || return 0
	umount -l "$WORK_ROOT/var/cache/apt/archives" 2>/dev/null || true
	umount -l "$WORK_ROOT/proc" 2>/dev/null || true
	rm -rf --one-file-system "$WORK_ROOT"
	WORK_ROOT=
}

make_rootfs() {
	command -v debootstrap >/dev/null || abort "debootstrap is not installed"
	WORK_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/voodu-rootfs.XXXXXX")
	trap release_chroot EXIT
	local started=$SECONDS

	note "debootstrap --variant=minbase $SUITE (log: $CACHE/debootstrap.log)"
	if ! debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$SUITE" "$WORK_ROOT" "$DEBIAN_MIRROR" \
		>"$CACHE/debootstrap.log" 2>&1; then
		tail -n 25 "$CACHE/debootstrap.log" >&2
		abort "debootstrap failed"
	fi
	note "debootstrap finished after $((SECONDS - started))s; customising (log: $CACHE/chroot.log)"

	cp /etc/resolv.conf "$WORK_ROOT/etc/resolv.conf"
	mount -t proc proc "$WORK_ROOT/proc"
	mkdir -p "$WORK_ROOT/var/cache/apt/archives"
	mount --bind "$CACHE/debs" "$WORK_ROOT/var/cache/apt/archives"
	printf '%s\n' "$CHROOT_RECIPE" >"$WORK_ROOT/tmp/voodu-recipe.sh"
	if ! chroot "$WORK_ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		PG_MAJOR="$PG_MAJOR" PG_ID="$PG_ID" SLIM="$SLIM" \
		bash /tmp/voodu-recipe.sh </dev/null >"$CACHE/chroot.log" 2>&1; then
		tail -n 25 "$CACHE/chroot.log" >&2
		abort "chroot customisation failed"
	fi
	rm -f "$WORK_ROOT/tmp/voodu-recipe.sh"
	umount "$WORK_ROOT/var/cache/apt/archives"
	umount "$WORK_ROOT/proc"
	rm -rf "$WORK_ROOT/var/cache/apt/archives/partial" "$WORK_ROOT"/var/cache/apt/archives/*.deb

	note "customised after $((SECONDS - started))s; packing $ROOTFS_TAR"
	tar --numeric-owner --one-file-system -C "$WORK_ROOT" -cf "$ROOTFS_TAR.partial" .
	mv -f "$ROOTFS_TAR.partial" "$ROOTFS_TAR"
	# superseded tarballs of the same flavour are dead weight
	find "$CACHE" -maxdepth 1 -name "rootfs-$FLAVOUR-*.tar" ! -name "${ROOTFS_TAR##*/}" -delete
	release_chroot
	trap - EXIT
}

if [ "$FORCE_ROOTFS" = 1 ] || [ ! -s "$ROOTFS_TAR" ]; then
	make_rootfs
else
	note "reusing cached rootfs ${ROOTFS_TAR##*/}"
fi

# --- stage 2: docker build -----------------------------------------------------
CONTEXT=$(mktemp -d "$CACHE/context.XXXXXX")
trap 'rm -rf "$CONTEXT"' EXIT
# same filesystem as the cache, so a hard link avoids copying ~200 MB
ln "$ROOTFS_TAR" "$CONTEXT/rootfs.tar" 2>/dev/null || cp "$ROOTFS_TAR" "$CONTEXT/rootfs.tar"
install -m 0755 "$ENTRYPOINT_SRC" "$CONTEXT/docker-entrypoint.sh"
printf '%s\nLABEL %s="%s" org.voodu.rootfs-key="%s"\n' \
	"$DOCKERFILE" "$LABEL_KEY" "$BUILD_KEY" "$ROOTFS_KEY" >"$CONTEXT/Dockerfile"

previous_id=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
note "docker build -t $IMAGE"
# Without buildx the CLI uses the legacy builder and prints a deprecation
# banner on stderr; drop that noise but keep real errors.
docker build --quiet --tag "$IMAGE" "$CONTEXT" >/dev/null \
	2> >(grep -v -i -e DEPRECATED -e 'legacy builder' -e buildx -e buildkit \
		-e 'environment-variable' -e '^[[:space:]]*$' >&2 || true)
rm -rf "$CONTEXT"
trap - EXIT

new_id=$(docker image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$previous_id" ] && [ "$previous_id" != "$new_id" ]; then
	docker rmi "$previous_id" >/dev/null 2>&1 || note "old image ${previous_id:7:12} is still in use; left dangling"
fi

# sanity check of the result (a throw-away container, anonymous volume included)
docker run --rm "$IMAGE" bash -c \
	'set -e; for t in pg_isready psql pg_basebackup pg_rewind pg_dump pg_restore setpriv; do command -v "$t" >/dev/null; done
	 test "$(id -u postgres):$(id -g postgres)" = 999:999' ||
	abort "$IMAGE failed its sanity check"

size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
note "built $IMAGE: $((size / 1000000)) MB, build key $BUILD_KEY"
