"""Runs one source end to end: pages in, rows upserted, progress saved, ledger row closed.

Every page is committed as it arrives, so a failure in the middle of paging keeps what was
already fetched. The watermark only moves after a complete run; a run stopped by its page
budget saves a resume cursor instead, and the next run continues from there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import Connection
from psycopg_pool import ConnectionPool, PoolTimeout

from va_signals.db.documents import UpsertCounts, upsert_documents
from va_signals.db.pool import DatabaseUnavailableError
from va_signals.db.source_runs import RunOutcome, RunStatus, close_run, open_run
from va_signals.db.source_state import SourceState, load_state, save_state
from va_signals.resilience.http import RequestStats
from va_signals.sources.base import SourceAdapter, SourceClient

logger = logging.getLogger(__name__)


class PoolExhaustedError(DatabaseUnavailableError):
    """Every connection of the pool stayed busy for the pool's whole timeout."""


@contextmanager
def _connection(pool: ConnectionPool) -> Iterator[Connection]:
    """`pool.connection()`, with a wait that timed out explained: psycopg's own message names
    neither the pool's size nor whether its connections were taken or the server was gone."""
    with ExitStack() as stack:
        try:
            conn = stack.enter_context(pool.connection())
        except PoolTimeout as exc:
            refused = _server_refuses(pool)
            if refused:
                raise DatabaseUnavailableError(
                    f"no database connection within {pool.timeout:g}s from pool {pool.name!r}: "
                    f"the server is not accepting connections ({refused})"
                ) from exc
            raise PoolExhaustedError(
                f"database connection pool {pool.name!r} exhausted: all {pool.max_size} "
                f"connections stayed taken for {pool.timeout:g}s"
            ) from exc
        yield conn


def _server_refuses(pool: ConnectionPool) -> str | None:
    """Why a fresh connection to the pool's server fails, or None when the server answers.

    Pool counters cannot tell connections in use from connections being reopened after an
    outage; one direct attempt, only on this failure path, can.
    """
    kwargs = {**(pool.kwargs or {}), "connect_timeout": 2}
    try:
        psycopg.connect(pool.conninfo, **kwargs).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@dataclass
class SourceRunResult:
    """What one source run did; mirrors its `source_runs` row."""

    source_id: str
    status: RunStatus
    source_run_id: int | None = None
    pages: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    truncated: bool = False
    resume_cursor: str | None = None
    duration_ms: int = 0
    latency_p50_ms: int | None = None
    latency_max_ms: int | None = None
    requests: int = 0
    error_class: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (RunStatus.SUCCESS, RunStatus.NO_DATA)


def run_source(
    adapter: SourceAdapter,
    client: SourceClient,
    pool: ConnectionPool,
    *,
    run_id: str | None,
    max_pages: int | None = None,
    stats: RequestStats | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> SourceRunResult:
    """Ingest one source; never raises for upstream or data errors, which become the result.

    Database errors while opening or closing the ledger row propagate: without the database
    nothing can be recorded, and the caller must fail loudly.
    """
    log = log or logger
    source_id = adapter.source_id
    budget = max_pages or adapter.source.max_pages
    started = time.perf_counter()
    run_started_at = datetime.now(UTC)

    with _connection(pool) as conn:
        source_run_id = open_run(conn, source_id, run_id)
        state = load_state(conn, source_id)

    result = SourceRunResult(source_id, RunStatus.RUNNING, source_run_id)
    cursor = state.resume_cursor
    if cursor:
        log.info("%s: resuming from a saved cursor", source_id)
    try:
        last_cursor: str | None = None
        for page in adapter.pages(client, since=state.watermark, cursor=cursor):
            with _connection(pool) as conn:
                result.counts += upsert_documents(conn, source_id, page.records)
            result.pages += 1
            last_cursor = page.next_cursor
            if last_cursor and result.pages >= budget:
                break
        # A continuation left after the last page means the run stopped early: at the page
        # budget here, or at a budget of the adapter's own (details per run, say).
        if last_cursor:
            result.truncated = True
            result.resume_cursor = last_cursor
    except Exception as exc:  # noqa: BLE001 - every failure of a source becomes its run's data
        result.status = RunStatus.ERROR
        result.error_class = type(exc).__name__
        result.error_message = str(exc)
        log.warning("%s: failed after %d pages: %s", source_id, result.pages, exc)
    else:
        fetched = result.counts.new + result.counts.updated + result.counts.unchanged
        result.status = RunStatus.SUCCESS if fetched else RunStatus.NO_DATA
        # A truncated run keeps the old watermark so nothing between it and now is skipped.
        next_state = (
            SourceState(state.watermark, result.resume_cursor)
            if result.truncated
            else SourceState(run_started_at, None)
        )
        with _connection(pool) as conn:
            save_state(conn, source_id, next_state)

    result.duration_ms = round((time.perf_counter() - started) * 1000)
    if stats is not None:
        result.latency_p50_ms = stats.p50_ms
        result.latency_max_ms = stats.max_ms
        result.requests = stats.attempts
    with _connection(pool) as conn:
        close_run(conn, source_run_id, _outcome(result))
    log.info(
        "%s: %s, %d pages, %d new, %d updated, %d unchanged%s",
        source_id,
        result.status.value,
        result.pages,
        result.counts.new,
        result.counts.updated,
        result.counts.unchanged,
        " (truncated)" if result.truncated else "",
    )
    return result


def record_skipped_run(
    pool: ConnectionPool,
    source_id: str,
    reason: Exception,
    *,
    run_id: str | None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> SourceRunResult:
    """Record a source that was not attempted (its breaker open, another run holding it) as an
    ERROR row with no requests, so the ledger says why the source has no fresh data."""
    log = log or logger
    result = SourceRunResult(
        source_id, RunStatus.ERROR, error_class=type(reason).__name__, error_message=str(reason)
    )
    with _connection(pool) as conn:
        result.source_run_id = open_run(conn, source_id, run_id)
        close_run(conn, result.source_run_id, _outcome(result))
    log.warning("%s: skipped: %s", source_id, reason)
    return result


def _outcome(result: SourceRunResult) -> RunOutcome:
    return RunOutcome(
        status=result.status,
        pages=result.pages,
        records_new=result.counts.new,
        records_updated=result.counts.updated,
        records_unchanged=result.counts.unchanged,
        records_duplicate=result.counts.duplicates,
        truncated=result.truncated,
        error_class=result.error_class,
        error_message=result.error_message,
        latency_p50_ms=result.latency_p50_ms,
        latency_max_ms=result.latency_max_ms,
        requests=result.requests,
    )
