"""Fixtures every integration test gets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.discogs_support import CuratorProcess


@pytest.fixture(autouse=True)
def no_curator_outlives_its_test() -> Iterator[None]:
    """A test that fails half-way never leaves a curator consuming the next tests' sync requests."""
    yield
    CuratorProcess.kill_all()
