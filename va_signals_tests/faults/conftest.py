"""Fixtures of the fault suite: a fake upstream per test, its catalog, and the production pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from psycopg_pool import ConnectionPool

from va_signals.catalog import Catalog
from va_signals.db.pool import get_pool
from va_signals_tests.faults.harness import Ingest, fault_catalog, resource_clients
from va_signals_tests.faults.upstream import FakeUpstream
from va_signals_tests.recordings import shared_recordings


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream(shared_recordings()).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def catalog(upstream: FakeUpstream) -> Catalog:
    return fault_catalog(upstream.base_url)


@pytest.fixture
def pool(db: str) -> ConnectionPool:
    """The process-wide pool the pipeline itself would use, on the emptied test database."""
    return get_pool(db)


@pytest.fixture
def make_ingest(db: str, pool: ConnectionPool) -> Callable[[Catalog], Ingest]:
    """Ingest through the pipeline's clients, breaker and limiter state in the test database."""
    return lambda catalog: Ingest(catalog, pool, resource_clients(db))


@pytest.fixture
def ingest(catalog: Catalog, make_ingest: Callable[[Catalog], Ingest]) -> Ingest:
    return make_ingest(catalog)
