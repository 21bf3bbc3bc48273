#!/usr/bin/env bash
# Set up a fresh machine (Docker engine, local postgres image, venv) and show the main job on
# examples/voodu.hcl: validate the file, then render what a Voodu apply would receive.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup-docker.sh
bash scripts/bootstrap-python.sh
export VOODU_POSTGRES_HOME="${VOODU_POSTGRES_HOME:-$root/.demo-home}"
vp=.venv/bin/voodu-postgres
echo "== validate"; $vp validate -f examples/voodu.hcl
echo "== render (what expand emits; secrets redacted)"; $vp render -f examples/voodu.hcl
