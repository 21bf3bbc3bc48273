"""Pure helpers of the failover module."""

from __future__ import annotations

import pytest

from voodu_postgres.domain.model import lsn_text
from voodu_postgres.domain.model import lsn_value as _lsn


@pytest.mark.parametrize("text,value", [("0/0", 0), ("0/3000060", 0x3000060), ("1/0", 1 << 32),
                                        ("A/FF", (10 << 32) + 255)])
def test_lsn_round_trip(text: str, value: int) -> None:
    assert _lsn(text) == value
    assert lsn_text(value) == text


def test_unknown_lsn_is_said_plainly() -> None:
    assert lsn_text(None) == "an unknown point"
