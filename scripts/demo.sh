#!/usr/bin/env bash
# Set up a fresh machine (Docker engine, local postgres image, venv) and run the main job on
# examples/voodu.hcl: validate it, apply it (a real primary + 2 streaming standbys), show `info`.
# The cluster keeps running afterwards; remove it with:
#   .venv/bin/voodu-postgres delete demo/db --prune --yes
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup-docker.sh
bash scripts/bootstrap-python.sh
vp=.venv/bin/voodu-postgres
echo "== validate"; $vp validate -f examples/voodu.hcl
echo "== apply"; $vp apply -f examples/voodu.hcl
echo "== info"; $vp info demo/db
echo "== a write on the primary, read back on a standby"
# inside a pod, loopback connections are trusted by the image's pg_hba: no password needed
docker exec demo-db.0 psql -q -h 127.0.0.1 -U appuser -d appdata \
	-c "CREATE TABLE IF NOT EXISTS demo_hello (at timestamptz DEFAULT now()); INSERT INTO demo_hello DEFAULT VALUES;"
want=$(docker exec demo-db.0 psql -h 127.0.0.1 -U appuser -d appdata -At -c "SELECT count(*) FROM demo_hello")
for _ in $(seq 50); do
	got=$(docker exec demo-db.1 psql -h 127.0.0.1 -U appuser -d appdata -At -c "SELECT count(*) FROM demo_hello" 2>/dev/null || true)
	[ "$got" = "$want" ] && break
	sleep 0.1
done
echo "primary demo-db.0 has $want row(s); standby demo-db.1 sees ${got:-?}"
echo "== wire an app: DATABASE_URL / DATABASE_READ_URL in the bucket of demo/web"
$vp link demo/db demo/web --reads
echo "== a verified backup"
$vp backups:capture demo/db --follow --verify --keep 3
$vp backups demo/db
