#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine (Docker engine, the local postgres
# image, the Python venv), then run the checks: lint, types, architecture contracts, unit tests
# and the integration tests against real Postgres containers.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m "not integration"`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup-docker.sh
bash scripts/bootstrap-python.sh
export TESTCONTAINERS_RYUK_DISABLED=true
echo "== ruff"; .venv/bin/ruff check voodu_postgres tests
echo "== mypy --strict"; .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports
echo "== pytest"
status=0
.venv/bin/pytest "$@" || status=$?
# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass
if [ "$status" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$status"
