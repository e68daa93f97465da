"""Per-source PostgreSQL advisory locks, so two runs of one source never ingest it at once."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)

# Namespaces the key so another feature hashing the same source id gets a different lock.
_KEY_PREFIX = b"va_signals.source_lock:"


class SourceBusy(Exception):
    """Another run holds the source's lock; this run skipped the source instead of racing it."""

    def __init__(self, source_id: str, waited_seconds: float) -> None:
        super().__init__(
            f"source {source_id!r}: another run holds its lock (still held after waiting "
            f"{waited_seconds:.1f}s); skipped so the source is not ingested twice at once"
        )
        self.source_id = source_id
        self.waited_seconds = waited_seconds


def source_lock_key(source_id: str) -> int:
    """A stable signed 64-bit key for `source_id`, the same in every process and release."""
    digest = hashlib.blake2b(_KEY_PREFIX + source_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def source_lock(
    pool: ConnectionPool,
    source_id: str,
    *,
    wait_seconds: float = 30.0,
    poll_seconds: float = 0.25,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold the source's advisory lock for the body, on a pooled connection kept for it alone.

    Waits up to `wait_seconds` for another holder to finish, then raises `SourceBusy`. The lock
    is released on every exit; if releasing fails the connection is closed, which releases it.
    """
    log = log or logger
    key = source_lock_key(source_id)
    with pool.connection() as conn:
        _acquire(conn, source_id, key, wait_seconds, poll_seconds, log, sleep)
        try:
            yield
        finally:
            _release(conn, source_id, key, log)


def _acquire(
    conn: psycopg.Connection,
    source_id: str,
    key: int,
    wait_seconds: float,
    poll_seconds: float,
    log: logging.Logger | logging.LoggerAdapter,
    sleep: Callable[[float], None],
) -> None:
    started = time.monotonic()
    announced = False
    while True:
        held = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        # Commit at once: the lock belongs to the session and must not ride a long transaction.
        conn.commit()
        if held:
            return
        waited = time.monotonic() - started
        if waited >= wait_seconds:
            raise SourceBusy(source_id, waited)
        if not announced:
            log.info(
                "%s: another run holds this source; waiting up to %.0fs", source_id, wait_seconds
            )
            announced = True
        sleep(min(poll_seconds, wait_seconds - waited))


def _release(
    conn: psycopg.Connection,
    source_id: str,
    key: int,
    log: logging.Logger | logging.LoggerAdapter,
) -> None:
    try:
        conn.rollback()
        released = conn.execute("SELECT pg_advisory_unlock(%s)", (key,)).fetchone()[0]
        conn.commit()
    except psycopg.Error as exc:
        # Closing ends the session, and PostgreSQL drops every lock a session held.
        log.warning(
            "%s: releasing the source lock failed (%s); closing its connection", source_id, exc
        )
        conn.close()
        return
    if not released:
        log.warning("%s: the source lock was no longer held when released", source_id)


__all__ = ["SourceBusy", "source_lock", "source_lock_key"]
