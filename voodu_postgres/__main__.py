"""Allow ``python -m voodu_postgres``."""

from voodu_postgres.cli import entry

entry()
