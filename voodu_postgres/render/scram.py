"""SCRAM-SHA-256 password verifiers, computed client-side (RFC 5802/7677, Postgres' format).

``ALTER ROLE … PASSWORD 'SCRAM-SHA-256$…'`` stores a verifier as given, so the password itself
never travels to the server: it cannot land in the server log (even with
``log_statement = all``), in ``pg_stat_activity``, or in a process argv. Only the verifier does,
and it cannot be used to log in.

:func:`matches` checks a password against a stored verifier, which is how an interrupted
rotation finds out which recorded password the role really has.

Pure: no I/O (randomness is injectable).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata
from collections.abc import Callable

ITERATIONS = 4096  # Postgres' default scram_iterations
SALT_BYTES = 16


def _saslprep(password: str) -> bytes:
    """Postgres normalises with SASLprep (NFKC plus mappings) and falls back to the raw bytes
    when that is impossible; NFKC covers every password this tool generates (hex) and the usual
    operator ones."""
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def verifier(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS,
             random: Callable[[int], bytes] = os.urandom) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64 parts)."""
    salt = salt if salt is not None else random(SALT_BYTES)
    stored_key, server_key = _keys(password, salt, iterations)
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def matches(password: str, stored: str) -> bool:
    """Does ``password`` log in against the verifier ``stored`` (as read from ``pg_authid``)?"""
    try:
        method, _, rest = stored.partition("$")
        params, _, keys = rest.partition("$")
        iterations_text, _, salt_b64 = params.partition(":")
        stored_b64, _, server_b64 = keys.partition(":")
        if method != "SCRAM-SHA-256":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        want_stored = base64.b64decode(stored_b64, validate=True)
        want_server = base64.b64decode(server_b64, validate=True)
        stored_key, server_key = _keys(password, salt, int(iterations_text))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(stored_key, want_stored) and hmac.compare_digest(server_key, want_server)
