"""Fixtures shared by the unit tests."""

from __future__ import annotations

import time

import pytest


@pytest.fixture
def never_really_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """``time.sleep`` raises: every wait in a test on the in-memory runtime must go through its
    fake clock (a real sleep would make the suite slow and the timing untested). Modules opt in
    with ``pytestmark = pytest.mark.usefixtures("never_really_sleep")``."""

    def refuse(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}s for real: waits must go through the fake clock")

    monkeypatch.setattr(time, "sleep", refuse)
