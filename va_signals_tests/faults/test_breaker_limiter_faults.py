"""The shared breaker and rate limiter under faults: an OPEN breaker outlives its process and skips
the source without a request, then probes and closes gradually; a 429 pauses every caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from va_signals.assets import build_pipeline
from va_signals.catalog import BreakerPolicy, Catalog, RetryPolicy
from va_signals.db.breakers import PostgresBreakerStore
from va_signals.db.rate_limits import PostgresRateLimitStore
from va_signals.jobs import daily_signals_job
from va_signals.launch import run_daily_signals
from va_signals.resilience.breaker import CircuitBreaker
from va_signals.resilience.errors import BreakerOpen, RateLimitWaitExceeded
from va_signals.resilience.http import ResilientClient
from va_signals.resilience.limiter import RateLimiter
from va_signals.resources import DatabaseResource, HttpResource
from va_signals_tests.faults import upstream as up
from va_signals_tests.faults.harness import (
    HEALTHY_AFTER_PAGE_ONE,
    LDA_KEPT,
    LDA_TOTAL,
    Ingest,
    duplicated_keys,
    fault_catalog,
    ledger,
    stored,
    summary,
)
from va_signals_tests.faults.upstream import LDA_PATH, FakeUpstream

LDA = "lda_filings"
SERVICE = "lda.senate.gov"
# Opens after 3 failures in a row; two probes close it; traffic then ramps 50% -> 100%, two
# successful calls per step.
POLICY = BreakerPolicy(
    failure_threshold=3,
    open_seconds=60,
    half_open_probes=2,
    recovery_steps=(0.5, 1.0),
    recovery_step_calls=2,
)
# A fourth attempt, so the one after the breaker opens shows it being refused.
RETRY = RetryPolicy(
    max_attempts=4, max_total_seconds=5.0, base_delay_seconds=0.01, max_delay_seconds=0.05
)


class ManualClock:
    """Unix time that moves only when told: `sleep` advances it instead of waiting."""

    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.at += max(0.0, seconds)


def _server_now(pool: ConnectionPool) -> float:
    with pool.connection() as conn:
        return conn.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8").fetchone()[0]


def _row(pool: ConnectionPool, table: str) -> dict[str, Any]:
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        # `table` is one of two constants below, never outside input.
        cur.execute(
            f"SELECT *, EXTRACT(EPOCH FROM clock_timestamp())::float8 AS server_now FROM {table} "
            "WHERE service = %s",
            (SERVICE,),
        )
        row = cur.fetchone()
    assert row is not None, f"no {table} row for {SERVICE}"
    return row


def _transitions(pool: ConnectionPool) -> list[tuple[str, str]]:
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT from_state, to_state FROM breaker_events WHERE service = %s ORDER BY id",
            (SERVICE,),
        ).fetchall()
    return [tuple(row) for row in rows]


def _breaker(pool: ConnectionPool, catalog: Catalog, clock: ManualClock) -> CircuitBreaker:
    """A breaker object of the service as another process would build it, on `clock`."""
    service = catalog.service(SERVICE)
    store = PostgresBreakerStore(pool)
    return CircuitBreaker(service.name, service.breaker, store, source_id=LDA, clock=clock)


def _ingest(catalog: Catalog, pool: ConnectionPool, db: str, **gates: Any) -> Ingest:
    """Ingest through HttpResource.client_for with the given gate or throttle."""

    def build(catalog: Catalog, source_id: str) -> ResilientClient:
        service = catalog.service(catalog.source(source_id).service)
        return HttpResource(state_database_url=db).client_for(service, source_id, **gates)

    return Ingest(catalog, pool, build)


def _pipeline(catalog: Catalog, db: str) -> dg.Definitions:
    return dg.Definitions(
        assets=[build_pipeline(catalog)],
        jobs=[daily_signals_job],
        resources={"database": DatabaseResource(url=db), "http": HttpResource()},
    )


def test_an_open_breaker_outlives_its_process_then_probes_and_closes_gradually(
    upstream: FakeUpstream,
    make_ingest: Callable[[Catalog], Ingest],
    pool: ConnectionPool,
    db: str,
    dagster_instance: dg.DagsterInstance,
) -> None:
    catalog = fault_catalog(upstream.base_url, breaker=POLICY, retry=RETRY)
    upstream.fail(LDA_PATH, up.status(503), page=2)

    make_ingest(catalog).run(LDA)

    # Three 503s open the breaker; the fourth attempt is refused before it is sent.
    assert upstream.pages_requested(LDA_PATH) == [1, 2, 2, 2]
    opened = ledger(pool, LDA)[-1]
    assert summary(opened) == ("ERROR", "BreakerOpen", 1, LDA_KEPT[0], 0, 0)
    assert opened["requests"] == 4
    breaker = _row(pool, "breaker_state")
    assert breaker["state"] == "OPEN" and "HTTP 503" in breaker["last_failure"]
    open_until = breaker["open_until"].timestamp()
    assert open_until - breaker["opened_at"].timestamp() == pytest.approx(60)

    # A new process (a fresh Dagster run, fresh objects) finds it OPEN in PostgreSQL and skips
    # the source without a single request, recording why.
    upstream.heal()
    outcome = run_daily_signals(
        select=[LDA],
        instance=dagster_instance,
        definitions=_pipeline(catalog, db),
        catalog=catalog,
    )

    assert outcome.success, outcome.step_failures
    assert upstream.count() == 4
    skipped = ledger(pool, LDA)[-1]
    assert summary(skipped) == ("ERROR", "BreakerOpen", 0, 0, 0, 0)
    assert skipped["requests"] == 0 and "skipped: breaker is OPEN until" in skipped["error_message"]

    # A second past the open period: at most two probes at once, whichever processes ask.
    later = ManualClock(open_until + 1)
    first, second, third = (_breaker(pool, catalog, later) for _ in range(3))
    first.before_call()
    second.before_call()
    with pytest.raises(BreakerOpen, match=r"HALF_OPEN with 2 probe\(s\) in flight"):
        third.before_call()
    first.record_success()
    second.record_success()
    closed = _row(pool, "breaker_state")
    assert (closed["state"], closed["recovery_step"]) == ("CLOSED", 0)

    # Recovering at 50%: the run's first call goes, its second is refused without a request.
    _ingest(catalog, pool, db, gate=_breaker(pool, catalog, later)).run(LDA)

    ramping = ledger(pool, LDA)[-1]
    assert summary(ramping) == ("ERROR", "BreakerRecovering", 1, 0, 0, LDA_KEPT[0])
    assert "admitting 50% of calls" in ramping["error_message"] and ramping["requests"] == 1
    assert upstream.count() == 5

    # The next call completes the 50% step; at 100% the run finishes and recovery is complete.
    _ingest(catalog, pool, db, gate=_breaker(pool, catalog, later)).run(LDA)

    recovered = ledger(pool, LDA)[-1]
    assert summary(recovered) == HEALTHY_AFTER_PAGE_ONE
    final = _row(pool, "breaker_state")
    assert (final["state"], final["recovery_step"], final["reopen_count"]) == ("CLOSED", None, 0)
    assert _transitions(pool) == [
        ("CLOSED", "OPEN"),
        ("OPEN", "HALF_OPEN"),
        ("HALF_OPEN", "CLOSED"),
    ]
    assert stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0


def test_a_429_pauses_the_service_for_every_caller_for_the_time_given(
    upstream: FakeUpstream,
    catalog: Catalog,
    ingest: Ingest,
    pool: ConnectionPool,
    db: str,
) -> None:
    # The recorded answer: Retry-After 28 s, beyond the 5 s retry budget, so no retry.
    upstream.fail(LDA_PATH, up.rate_limited("28"), page=2)

    ingest.run(LDA)

    assert upstream.pages_requested(LDA_PATH) == [1, 2]
    throttled = ledger(pool, LDA)[-1]
    assert summary(throttled) == ("ERROR", "RateLimited", 1, LDA_KEPT[0], 0, 0)
    assert "rate limited (HTTP 429, retry after 28s)" in throttled["error_message"]
    pause = _row(pool, "rate_limits")
    assert 27.0 < pause["paused_until"].timestamp() - pause["server_now"] <= 28.0

    # Any other caller of the service (another process: new objects) is held by the pause;
    # it is longer than the service's max_wait_seconds (5 s), so it refuses at once.
    service = catalog.service(SERVICE)
    other = RateLimiter(SERVICE, service.rate_limit, PostgresRateLimitStore(pool), source_id="x")
    with pytest.raises(RateLimitWaitExceeded, match="paused after a 429"):
        other.acquire()

    # So does the source's next run, healthy upstream or not: nothing is sent.
    upstream.heal()
    ingest.run(LDA)

    held = ledger(pool, LDA)[-1]
    assert summary(held) == ("ERROR", "RateLimitWaitExceeded", 0, 0, 0, 0)
    assert held["requests"] == 0 and upstream.count() == 2

    # 29 seconds later the pause is over and the run completes.
    later = ManualClock(_server_now(pool) + 29)
    limiter = RateLimiter(SERVICE, service.rate_limit, PostgresRateLimitStore(pool), clock=later)
    _ingest(catalog, pool, db, throttle=limiter).run(LDA)

    assert summary(ledger(pool, LDA)[-1]) == HEALTHY_AFTER_PAGE_ONE
    assert stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0
