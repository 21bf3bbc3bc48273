"""Files on this host: rendered assets and state files that pods bind-mount, secret files (0600),
and dump downloads. Writes are atomic where pods may read them mid-write.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from voodu_postgres.domain.errors import CommandError
from voodu_postgres.domain.rendered import Rendered


def write_assets(directory: Path, files: Iterable[Rendered]) -> dict[str, str]:
    """Write asset files (mode 0644: scripts run through ``bash``, never executed).

    Returns key → absolute host path. Files are rewritten only when their bytes change, so an
    unchanged apply touches nothing. A new file is created atomically; an existing one is
    rewritten *in place*, because pods bind-mount single files, and a bind mount follows the
    inode: an atomic rename would leave running pods reading the old text (a pg_config reload
    would then silently reload nothing).
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for item in files:
        target = directory / item.name
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{item.name}.")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(item.text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        elif target.read_text(encoding="utf-8") != item.text:
            with open(target, "r+", encoding="utf-8") as handle:
                handle.write(item.text)
                handle.truncate()
        paths[item.name] = str(target.resolve())
    return paths


def write_state(directory: Path, values: Mapping[str, str]) -> None:
    """Write small state files (one value each) atomically into a directory pods mount.

    The directory, not the files, is bind-mounted, so an atomic rename is visible inside pods.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        target = directory / name
        if target.exists() and target.read_text(encoding="utf-8") == value:
            continue
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)


def write_secret(directory: Path, name: str, value: str) -> None:
    """Write a secret file atomically with mode 0600 (created so, never world-readable)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.")  # mkstemp creates it 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, directory / name)


def file_digests(directory: Path) -> dict[str, str]:
    """sha256 of every asset file currently on disk in ``directory`` (key → digest)."""
    if not directory.is_dir():
        return {}
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }


def download(url: str, directory: Path) -> Path:
    """Fetch an http(s) URL into ``directory`` under a hidden temporary name; the file's path.
    A failed fetch leaves nothing behind and raises one line naming the URL and the reason."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".vdrestore-", suffix=".dump")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        Path(tmp).unlink(missing_ok=True)
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else str(exc)
        raise CommandError(f"download {url}: {reason}") from exc
    return Path(tmp)
