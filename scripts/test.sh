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
echo "== complexity (radon, no function above 25)"; .venv/bin/python scripts/check_complexity.py
run_pytest() {
	local status=0
	.venv/bin/pytest "$@" || status=$?
	# pytest exits 5 when it collected nothing: that is a failure here, never a silent pass
	if [ "$status" -eq 5 ]; then echo "pytest collected no tests" >&2; return 1; fi
	return "$status"
}
if [ "$#" -gt 0 ]; then
	echo "== pytest $*"
	run_pytest "$@"
	exit $?
fi
# Unit tests first, with the coverage floor the reconciler's effectful core must keep when tested
# without Docker (the in-memory runtime); then everything that runs against real Docker.
echo "== pytest: unit (coverage floor 85% for execute, loop, failover)"
COVERAGE_FILE=.coverage.unit run_pytest -m "not integration" --cov=voodu_postgres.reconciler.execute \
	--cov=voodu_postgres.reconciler.loop --cov=voodu_postgres.reconciler.switchover --cov-report=term \
	--cov-fail-under=85
echo "== pytest: integration (real Docker and Postgres)"
run_pytest -m integration
