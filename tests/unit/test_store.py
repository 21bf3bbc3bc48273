"""The SQLite config bucket store: merge rules, empty-means-unset, file mode, concurrency."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from voodu_postgres.adapters.store import SqliteStore, resolve_home


def test_file_and_dir_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = SqliteStore(home)
    store.patch("s", "n", {"POSTGRES_PASSWORD": "x"})
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for side in home.glob("state.db-*"):
        assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0, side


def test_app_values_win_over_scope_values(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.patch("s", "", {"BACKUP_KEEP": "10", "BACKUP_MAX_AGE": "7d"})
    store.patch("s", "db", {"BACKUP_KEEP": "5"})
    assert store.resolve("s", "db") == {"BACKUP_KEEP": "5", "BACKUP_MAX_AGE": "7d"}
    assert store.own("s", "db") == {"BACKUP_KEEP": "5"}
    assert store.resolve("s", "other") == {"BACKUP_KEEP": "10", "BACKUP_MAX_AGE": "7d"}
    assert store.resolve("t", "db") == {}


def test_empty_value_unsets(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.patch("s", "db", {"A": "1", "B": "2"})
    store.patch("s", "db", {"A": ""})
    store.unset("s", "db", ["B", "missing"])
    assert store.own("s", "db") == {}


def test_state_survives_reopen(tmp_path: Path) -> None:
    SqliteStore(tmp_path).patch("", "solo", {"K": "v"})
    assert SqliteStore(tmp_path).resolve("", "solo") == {"K": "v"}


def test_home_resolution_order(tmp_path: Path) -> None:
    assert resolve_home(str(tmp_path / "x"), {"VOODU_POSTGRES_HOME": "/elsewhere"}) == tmp_path / "x"
    assert resolve_home(None, {"VOODU_POSTGRES_HOME": str(tmp_path)}) == tmp_path
    assert str(resolve_home(None, {})).endswith(".voodu-postgres")


def _writer(home: str, worker: int) -> None:
    store = SqliteStore(Path(home))
    for i in range(50):
        store.patch("s", "db", {f"W{worker}_{i}": str(i)})


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    SqliteStore(tmp_path)
    procs = [multiprocessing.get_context("spawn").Process(target=_writer, args=(str(tmp_path), w))
             for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(SqliteStore(tmp_path).own("s", "db")) == 100
