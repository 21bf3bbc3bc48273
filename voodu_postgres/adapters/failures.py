"""The one error type every adapter raises (Docker engine, Postgres, files): a one-line message
and whether the failure is worth another try. Adapters import it from here, so none of them
needs another adapter for its errors."""

from __future__ import annotations

from voodu_postgres.domain.errors import VooduError


class RuntimeFailure(VooduError, RuntimeError):
    """An outside-world operation failed; the message is one line a human can act on.

    ``transient`` marks failures worth retrying (the engine or server unreachable, gateway errors,
    timeouts); everything else — a name conflict, a missing image, a refused statement — is permanent.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
