"""Runs catalog sources against the fake upstream and reads back what the database recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from va_signals.catalog import Catalog, RateLimit, RetryPolicy, default_catalog
from va_signals.db.source_state import SourceState, load_state
from va_signals.ingest import SourceRunResult, run_source
from va_signals.resilience.http import ResilientClient
from va_signals.sources import build_adapter

# Small but real: three attempts with millisecond backoff keep every fault test fast while the
# retry loop, its deadline and its classification run exactly as in production.
FAST_RETRY = RetryPolicy(
    max_attempts=3, max_total_seconds=5.0, base_delay_seconds=0.01, max_delay_seconds=0.05
)
# Far above what a test sends, so the shared limiter is exercised without slowing anything;
# the limiter's own tests set their limits explicitly.
UNHURRIED = RateLimit(requests=1000, per_seconds=1, max_wait_seconds=5)

# What the adapters keep of each page the fake serves (see upstream.LDA_PAGE_SIZE and
# FR_PAGE_SIZE): LDA filings 21 and 22 have no VET activity; FR has 7 VA documents per half.
LDA_KEPT = (10, 10, 3)
LDA_TOTAL = sum(LDA_KEPT)
# The ledger summary of a healthy run after a faulty one kept page 1: three pages, the rest of
# the filings new and page 1's unchanged (status, error class, pages, new, updated, unchanged).
HEALTHY_AFTER_PAGE_ONE = ("SUCCESS", None, 3, LDA_TOTAL - LDA_KEPT[0], 0, LDA_KEPT[0])
FR_VA_KEPT = (7, 7)


def fault_catalog(base_url: str, **service_settings: Any) -> Catalog:
    """The shipped catalog with every service pointed at `base_url`, fast retries, short
    timeouts and a high rate limit; `service_settings` override any other Service field."""
    catalog = default_catalog()
    settings: dict[str, Any] = {
        "base_url": base_url,
        "retry": FAST_RETRY,
        "rate_limit": UNHURRIED,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 2.0,
        **service_settings,
    }
    services = tuple(service.model_copy(update=settings) for service in catalog.services)
    return Catalog(services=services, sources=catalog.sources)


ClientFactory = Callable[[Catalog, str], ResilientClient]


def resource_clients(state_url: str) -> ClientFactory:
    """Clients as the pipeline builds them (HttpResource: shared breaker and rate limiter),
    keeping that shared state in the database at `state_url`."""

    def build(catalog: Catalog, source_id: str) -> ResilientClient:
        from va_signals.resources import HttpResource

        service = catalog.service(catalog.source(source_id).service)
        return HttpResource(state_database_url=state_url).client_for(service, source_id)

    return build


def plain_client(catalog: Catalog, source_id: str) -> ResilientClient:
    """The same ResilientClient on a bare httpx client: no Dagster import, for subprocesses."""
    service = catalog.service(catalog.source(source_id).service)
    return ResilientClient(httpx.Client(headers={"Accept": "application/json"}), service, source_id)


@dataclass
class Ingest:
    """One source at a time, the way the pipeline's ingest step runs it."""

    catalog: Catalog
    pool: ConnectionPool
    client_factory: ClientFactory

    def run(self, source_id: str, *, max_pages: int | None = None) -> SourceRunResult:
        source = self.catalog.source(source_id)
        adapter = build_adapter(source, self.catalog.service(source.service))
        client = self.client_factory(self.catalog, source_id)
        return run_source(
            adapter, client, self.pool, run_id="fault-test", max_pages=max_pages, stats=client.stats
        )


def ledger(pool: ConnectionPool, source_id: str) -> list[dict[str, Any]]:
    """Every source_runs row of a source, oldest first."""
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM source_runs WHERE source_id = %s ORDER BY id", (source_id,))
        return list(cur.fetchall())


def summary(row: dict[str, Any]) -> tuple[Any, ...]:
    """The columns a fault test pins: status, error class, pages and the three record counts."""
    return (
        row["status"],
        row["error_class"],
        row["pages"],
        row["records_new"],
        row["records_updated"],
        row["records_unchanged"],
    )


def stored(pool: ConnectionPool, source_id: str) -> int:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM documents WHERE source_id = %s", (source_id,)
        ).fetchone()[0]


def duplicated_keys(pool: ConnectionPool) -> int:
    """How many (source_id, external_id) pairs occur more than once; must always be 0."""
    with pool.connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM (SELECT source_id, external_id FROM documents "
            "GROUP BY 1, 2 HAVING count(*) > 1) AS d"
        ).fetchone()[0]


def state(pool: ConnectionPool, source_id: str) -> SourceState:
    with pool.connection() as conn:
        return load_state(conn, source_id)
