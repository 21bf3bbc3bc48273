#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv in .venv and install the package with its test
# extras. Idempotent: when pyproject.toml has not changed since the last install, it only checks.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
stamp="$venv/.installed-from"
want=$(sha256sum "$root/pyproject.toml" | cut -c1-16)
if [ ! -x "$venv/bin/python" ]; then
	python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
	"$venv/bin/pip" install --quiet --disable-pip-version-check -e "$root[test]" 2> >(grep -v 'is ignored' >&2 || true)
	echo "$want" >"$stamp"
fi
