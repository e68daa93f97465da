"""The process pool: bounded connections under load, returned on every path."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from va_signals.db.pool import DatabaseUnavailableError, close_all_pools, get_pool


def _backends(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'va-signals' AND datname = current_database()"
        ).fetchone()[0]


def test_more_threads_than_pool_size_never_exceed_the_pool(db: str) -> None:
    close_all_pools()
    pool = get_pool(db, max_size=3)
    observed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            observed.append(_backends(db))
            time.sleep(0.01)

    def work(n: int) -> None:
        with pool.connection() as conn:
            conn.execute("SELECT pg_sleep(0.05)")
            conn.execute(
                "INSERT INTO source_state (source_id) VALUES (%s) ON CONFLICT DO NOTHING",
                (f"pool-test-{n}",),
            )

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    watcher.join()

    assert max(observed) <= 3
    assert max(observed) >= 2, "the threads should have shared the pool concurrently"
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM source_state").fetchone()[0] == 12
    close_all_pools()


def test_connection_returns_to_pool_when_the_work_fails(db: str) -> None:
    close_all_pools()
    pool = get_pool(db, max_size=2)
    for _ in range(5):
        with pytest.raises(psycopg.errors.UndefinedTable):
            with pool.connection() as conn:
                conn.execute("SELECT * FROM no_such_table")
    stats = pool.get_stats()
    assert stats["pool_size"] <= 2
    assert stats.get("requests_errors", 0) == 0
    with pool.connection(timeout=2) as conn:  # would time out if connections had leaked
        assert conn.execute("SELECT 1").fetchone()[0] == 1
    close_all_pools()


def test_unreachable_server_fails_fast_with_one_clear_message() -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="cannot connect to PostgreSQL at"):
        get_pool(url, timeout_seconds=2)
    assert time.monotonic() - started < 20
