"""Pure helpers of the failover module."""

from __future__ import annotations

import pytest

from voodu_postgres.reconciler.failover import _fmt_lsn
from voodu_postgres.reconciler.repair import lsn as _lsn


@pytest.mark.parametrize("text,value", [("0/0", 0), ("0/3000060", 0x3000060), ("1/0", 1 << 32),
                                        ("A/FF", (10 << 32) + 255)])
def test_lsn_round_trip(text: str, value: int) -> None:
    assert _lsn(text) == value
    assert _fmt_lsn(value) == text


def test_unknown_lsn_is_said_plainly() -> None:
    assert _fmt_lsn(None) == "an unknown point"
