"""Fixtures of the resilience suite: the pool on the emptied test database and a fake clock."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import SpawnContext

import pytest
from psycopg_pool import ConnectionPool

from va_signals.db.pool import get_pool
from va_signals_tests.resilience.clocks import FakeClock


@pytest.fixture
def pool(db: str) -> ConnectionPool:
    """The process-wide pool the pipeline itself would use, on the emptied test database."""
    return get_pool(db)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spawn() -> SpawnContext:
    """Fresh interpreters: no pool or connection inherited from the test process."""
    return multiprocessing.get_context("spawn")
