"""Building small tar archives in memory, for the physical backup tests (unit and integration)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping


def tar_bytes(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed tar holding ``files`` (name → content), as bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
