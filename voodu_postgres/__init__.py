"""voodu-postgres: a declarative PostgreSQL cluster (one primary, N streaming standbys) on Docker.

Layout (what each part owns):

* ``reconciler/`` — the spec (HCL → validated model), naming, the Voodu ``expand`` macro, the
  config bucket store, and (later) the observe/plan/execute loop. Pure modules never import
  docker, psycopg or subprocess; the import-linter contract in ``pyproject.toml`` enforces it.
* ``render/`` — pure renderers from spec values to file text (+ sha256).
* ``states/`` — the pod-role and backup state machines, as transition tables.
* ``cli.py`` — argument parsing and the single place where errors become exit codes.
"""

__version__ = "0.1.0"
