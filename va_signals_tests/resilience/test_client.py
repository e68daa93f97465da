"""ResilientClient with the shared breaker and limiter against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import ClassVar

import httpx
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from va_signals.catalog.models import BreakerPolicy, RateLimit, RetryPolicy, Service, Source
from va_signals.db.breakers import PostgresBreakerStore
from va_signals.db.rate_limits import PostgresRateLimitStore
from va_signals.ingest import run_source
from va_signals.resilience.breaker import CircuitBreaker
from va_signals.resilience.errors import (
    BreakerOpen,
    RateLimited,
    RequestRejected,
    UpstreamUnavailable,
)
from va_signals.resilience.http import ResilientClient
from va_signals.resilience.limiter import RateLimiter
from va_signals.sources.base import Page, SourceAdapter, SourceClient
from va_signals_tests.resilience.clocks import FakeClock
from va_signals_tests.resilience.server import Reply, ScriptedServer, scripted_server

SERVICE = "local.test"
SOURCE = "local_source"
RETRY = RetryPolicy(max_attempts=3, max_total_seconds=10, base_delay_seconds=0.01)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as running:
        yield running


def service_at(server: ScriptedServer, **changes: object) -> Service:
    return Service(
        name=SERVICE,
        base_url=server.base_url,
        rate_limit=RateLimit(requests=1000, per_seconds=1),
        breaker=BreakerPolicy(failure_threshold=3, open_seconds=60),
        retry=RETRY,
        connect_timeout_seconds=2,
        read_timeout_seconds=2,
    ).model_copy(update=changes)


class Wired:
    """A client as HttpResource builds it, with handles on its breaker and limiter."""

    def __init__(self, service: Service, pool: ConnectionPool, clock: FakeClock) -> None:
        self.breaker = CircuitBreaker(
            SERVICE, service.breaker, PostgresBreakerStore(pool), source_id=SOURCE
        )
        self.limiter = RateLimiter(
            SERVICE, service.rate_limit, PostgresRateLimitStore(pool), source_id=SOURCE, clock=clock
        )
        self.client = ResilientClient(
            httpx.Client(),
            service,
            SOURCE,
            gate=self.breaker,
            throttle=self.limiter,
            sleep=lambda seconds: None,  # backoff between retries: instant
        )


def breaker_row(pool: ConnectionPool) -> dict:
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM breaker_state WHERE service = %s", (SERVICE,)).fetchone()


def test_a_500_then_a_200_is_retried_once_and_the_breaker_sees_both(
    server: ScriptedServer, pool: ConnectionPool, clock: FakeClock
) -> None:
    server.answer("/flaky", Reply(500), Reply(200, b'{"page": 1}'))
    wired = Wired(service_at(server), pool, clock)

    response = wired.client.get(f"{server.base_url}/flaky")

    assert response.json() == {"page": 1}
    assert server.count("/flaky") == 2
    assert (wired.client.stats.attempts, wired.client.stats.retries) == (2, 1)
    assert len(wired.client.stats.latencies_ms) == 2
    stored = breaker_row(pool)
    assert (stored["state"], stored["window_failures"], stored["window_successes"]) == (
        "CLOSED",
        1,
        1,
    )
    assert stored["consecutive_failures"] == 0
    with pool.connection() as conn:
        assert conn.execute("SELECT granted FROM rate_limits").fetchone()[0] == 2


def test_a_404_is_not_retried_and_not_a_breaker_failure(
    server: ScriptedServer, pool: ConnectionPool, clock: FakeClock
) -> None:
    server.answer("/missing", Reply(404, b'{"error": "not found"}'))
    wired = Wired(service_at(server), pool, clock)

    with pytest.raises(RequestRejected, match="HTTP 404"):
        wired.client.get(f"{server.base_url}/missing")

    assert server.count("/missing") == 1
    assert wired.client.stats.attempts == 1
    stored = breaker_row(pool)
    assert (stored["window_failures"], stored["window_successes"]) == (0, 1)
    assert stored["consecutive_failures"] == 0


def test_repeated_500s_open_the_breaker_and_later_calls_never_reach_the_server(
    server: ScriptedServer, pool: ConnectionPool, clock: FakeClock
) -> None:
    server.answer("/down", Reply(503))
    wired = Wired(service_at(server), pool, clock)

    with pytest.raises(UpstreamUnavailable, match="HTTP 503"):
        wired.client.get(f"{server.base_url}/down")  # 3 attempts: the 3rd failure opens it
    with pytest.raises(BreakerOpen, match="breaker is OPEN"):
        wired.client.get(f"{server.base_url}/down")

    assert server.count("/down") == 3
    assert breaker_row(pool)["state"] == "OPEN"


def test_a_429_with_retry_after_pauses_the_service_then_the_retry_succeeds(
    server: ScriptedServer, pool: ConnectionPool, clock: FakeClock
) -> None:
    server.answer("/busy", Reply(429, headers={"Retry-After": "3"}), Reply(200))
    wired = Wired(service_at(server), pool, clock)

    wired.client.get(f"{server.base_url}/busy")

    assert server.count("/busy") == 2
    # The retry waited out the pause in the shared limiter, not in a private backoff.
    assert clock.slept == [pytest.approx(3.0)]
    assert wired.client.stats.waited_seconds == pytest.approx(3.0)
    assert breaker_row(pool)["window_failures"] == 1  # a 429 blames the service


def test_a_retry_after_longer_than_the_retry_budget_gives_up_at_once(
    server: ScriptedServer, pool: ConnectionPool, clock: FakeClock
) -> None:
    server.answer("/busy", Reply(429, headers={"Retry-After": "30"}), Reply(200))
    wired = Wired(service_at(server), pool, clock)

    with pytest.raises(RateLimited, match="retry after 30s"):
        wired.client.get(f"{server.base_url}/busy")

    assert server.count("/busy") == 1
    assert clock.slept == []
    # Every other caller of the service is still held for those 30 s.
    with pool.connection() as conn:
        paused_until = conn.execute("SELECT paused_until FROM rate_limits").fetchone()[0]
    assert paused_until.timestamp() == pytest.approx(clock.now() + 30)


class _OneUrlAdapter(SourceAdapter):
    name: ClassVar[str] = "one_url_test"

    def pages(
        self, client: SourceClient, *, since: datetime | None, cursor: str | None
    ) -> Iterator[Page]:
        client.get(f"{self.base_url}/listing")
        yield Page(records=[])

    def parse(self, body: bytes) -> Page:
        return Page(records=[])


def test_a_failed_run_still_records_its_requests_and_latencies(
    server: ScriptedServer, pool: ConnectionPool, clock: FakeClock
) -> None:
    server.answer("/listing", Reply(500))
    service = service_at(server, breaker=BreakerPolicy(failure_threshold=10))
    wired = Wired(service, pool, clock)
    source = Source(
        id=SOURCE,
        family="local",
        adapter="one_url_test",
        service=SERVICE,
        description="a test source",
        cadence="daily",
        freshness_sla_hours=24,
        critical=False,
        max_pages=1,
    )

    result = run_source(
        _OneUrlAdapter(source, server.base_url),
        wired.client,
        pool,
        run_id="latency-test",
        stats=wired.client.stats,
    )

    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM source_runs WHERE id = %s", (result.source_run_id,))
        row = row.fetchone()
    assert (row["status"], row["error_class"], row["requests"]) == (
        "ERROR",
        "UpstreamUnavailable",
        3,
    )
    assert row["latency_p50_ms"] is not None and row["latency_max_ms"] is not None
    assert row["latency_max_ms"] >= row["latency_p50_ms"] >= 0
