"""Allow ``python -m voodu_postgres``."""

from voodu_postgres.cli import main

raise SystemExit(main())
