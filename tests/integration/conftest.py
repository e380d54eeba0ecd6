"""Fixtures for integration tests that start daemons."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.daemon import DaemonProcess


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons a test started (append to it); killed at teardown if still running."""
    made: list[DaemonProcess] = []
    try:
        yield made
    finally:
        for daemon in made:
            daemon.close()
