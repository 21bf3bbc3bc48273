"""Connection URLs handed to apps: ``DATABASE_URL`` (the writer) and ``DATABASE_READ_URL`` (the
standbys), as libpq URIs.

* The writer is the **current** primary's own DNS name (``<name>-<P>.<scope>.voodu``), never a
  fixed ordinal: after a promote, apps must follow the writer.
* The readers are every other pod, as a multi-host URI (libpq tries them in order); with one pod
  the read URL is the write URL.
* ``load_balance_hosts=random`` spreads readers across hosts, but libpq before 16 rejects the
  whole URI when it sees it ("invalid URI query parameter"), so it is opt-in.
* User, password and database are percent-encoded (RFC 3986 userinfo/path), so any password an
  operator may set — ``@``, ``/``, ``:``, ``%``, spaces, non-ASCII — survives the round trip.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from voodu_postgres.domain.naming import Ref


@dataclass(frozen=True)
class Urls:
    write: str
    read: str
    writer_host: str
    reader_hosts: tuple[str, ...]


def _enc(text: str) -> str:
    return quote(text, safe="")


def database_urls(ref: Ref, *, user: str, password: str, database: str, port: int, replicas: int,
                  primary: int, load_balance: bool = False) -> Urls:
    auth = f"{_enc(user)}:{_enc(password)}"
    writer = ref.pod_host(primary)
    write = f"postgres://{auth}@{writer}:{port}/{_enc(database)}"
    readers = tuple(ref.pod_host(o) for o in range(replicas) if o != primary)
    if not readers:
        return Urls(write, write, writer, ())
    hosts = ",".join(f"{h}:{port}" for h in readers)
    query = "target_session_attrs=any" + ("&load_balance_hosts=random" if load_balance else "")
    return Urls(write, f"postgres://{auth}@{hosts}/{_enc(database)}?{query}", writer, readers)
