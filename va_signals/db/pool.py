"""One psycopg 3 connection pool per process, with a clear error when the server is unreachable."""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg_pool import ConnectionPool

from va_signals.db.location import redact

logger = logging.getLogger(__name__)

_pools: dict[tuple[str, int], ConnectionPool] = {}
_pools_lock = threading.Lock()


class DatabaseUnavailableError(RuntimeError):
    """The configured PostgreSQL server cannot be reached; the job cannot run without it."""


def get_pool(url: str, max_size: int = 10, timeout_seconds: float = 30.0) -> ConnectionPool:
    """The process-wide pool for `url`, opened on first use and shared by every caller after."""
    key = (url, max_size)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = _open_pool(url, max_size, timeout_seconds)
            _pools[key] = pool
        return pool


def close_all_pools() -> None:
    """Close every pool of this process (tests, CLI exit)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


def _open_pool(url: str, max_size: int, timeout_seconds: float) -> ConnectionPool:
    _probe(url)
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        timeout=timeout_seconds,
        open=False,
        # A connection broken by a server restart is detected and replaced before reuse.
        check=ConnectionPool.check_connection,
        kwargs={"connect_timeout": 10, "application_name": "va-signals"},
        name="va-signals",
    )
    try:
        pool.open(wait=True, timeout=min(timeout_seconds, 15.0))
    except Exception as exc:
        pool.close()
        cause = exc.__cause__ or exc
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {redact(url)}: {cause}"
        ) from exc
    logger.debug("connection pool open (max %d) to %s", max_size, redact(url))
    return pool


def _probe(url: str) -> None:
    # One direct attempt before the pool: the pool itself keeps retrying a refused connection
    # until its timeout, and a server that is simply not there should be reported at once.
    try:
        psycopg.connect(url, connect_timeout=5, application_name="va-signals").close()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {redact(url)}: {str(exc).strip()}"
        ) from exc
