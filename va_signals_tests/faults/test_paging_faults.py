"""Paging faults: loops, records repeated across and within pages, and resuming a truncated run
through a failure, all against the fake LDA listing of 25 recorded filings in three pages."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg_pool import ConnectionPool

from va_signals.db.source_state import SourceState, save_state
from va_signals_tests.faults import upstream as up
from va_signals_tests.faults.harness import (
    HEALTHY_AFTER_PAGE_ONE,
    LDA_KEPT,
    LDA_TOTAL,
    Ingest,
    duplicated_keys,
    ledger,
    state,
    stored,
    summary,
)
from va_signals_tests.faults.upstream import LDA_PATH, FakeUpstream, lda_listing

LDA = "lda_filings"
EARLIER = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


def _healthy_rerun_counts_page_one_unchanged(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    upstream.heal()
    ingest.run(LDA)
    assert summary(ledger(pool, LDA)[-1]) == HEALTHY_AFTER_PAGE_ONE
    assert stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0


def test_a_continuation_back_to_the_same_url_stops_before_asking_again(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    upstream.fail(LDA_PATH, up.loop_to_self)

    ingest.run(LDA)

    assert upstream.count(LDA_PATH) == 1
    row = ledger(pool, LDA)[-1]
    assert summary(row) == ("ERROR", "PagingLoopError", 1, LDA_KEPT[0], 0, 0)
    assert "paging returned to a page already read" in row["error_message"]
    assert state(pool, LDA) == SourceState(None, None)
    _healthy_rerun_counts_page_one_unchanged(upstream, ingest, pool)


def test_new_urls_that_repeat_the_same_page_for_ever_stop_at_the_first_repeat(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    # Every answer carries page 1's filings and a continuation to a page never asked before.
    upstream.fail(LDA_PATH, up.listing_page(1, next_page=lambda asked: asked + 1))

    ingest.run(LDA)

    assert upstream.pages_requested(LDA_PATH) == [1, 2]
    row = ledger(pool, LDA)[-1]
    assert summary(row) == ("ERROR", "PagingLoopError", 1, LDA_KEPT[0], 0, 0)
    assert "repeats 10 records already read" in row["error_message"]
    _healthy_rerun_counts_page_one_unchanged(upstream, ingest, pool)


def test_records_repeated_on_later_pages_are_stored_and_counted_once(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    upstream.fail(LDA_PATH, up.with_records_of(2, extra=[0, 1, 2]), page=2)
    upstream.fail(LDA_PATH, up.with_records_of(3, extra=list(range(10, 20))), page=3)

    ingest.run(LDA)

    assert upstream.pages_requested(LDA_PATH) == [1, 2, 3]
    assert summary(ledger(pool, LDA)[-1]) == ("SUCCESS", None, 3, LDA_TOTAL, 0, 0)
    assert stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0


def test_records_repeated_within_one_page_are_stored_and_counted_once(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    upstream.fail(LDA_PATH, up.with_records_of(1, extra=list(range(10))), page=1)

    result = ingest.run(LDA)

    assert summary(ledger(pool, LDA)[-1]) == ("SUCCESS", None, 3, LDA_TOTAL, 0, 0)
    assert result.counts.duplicates == 10
    assert stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0


def test_a_truncated_run_resumes_from_its_cursor_even_through_a_failed_run(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    listing = lda_listing(upstream.recordings)
    with pool.connection() as conn:
        save_state(conn, LDA, SourceState(EARLIER, None))

    ingest.run(LDA, max_pages=1)
    first = ledger(pool, LDA)[-1]
    assert summary(first) == ("SUCCESS", None, 1, LDA_KEPT[0], 0, 0) and first["truncated"]
    # The old watermark stays: nothing between it and now may be skipped.
    assert state(pool, LDA) == SourceState(EARLIER, listing.next_url(upstream.base_url, 2))

    ingest.run(LDA, max_pages=1)
    second = ledger(pool, LDA)[-1]
    assert summary(second) == ("SUCCESS", None, 1, LDA_KEPT[1], 0, 0) and second["truncated"]
    assert state(pool, LDA) == SourceState(EARLIER, listing.next_url(upstream.base_url, 3))

    upstream.fail(LDA_PATH, up.status(503), page=3)
    ingest.run(LDA)
    third = ledger(pool, LDA)[-1]
    assert summary(third) == ("ERROR", "UpstreamUnavailable", 0, 0, 0, 0)
    assert state(pool, LDA) == SourceState(EARLIER, listing.next_url(upstream.base_url, 3))

    upstream.heal()
    ingest.run(LDA)
    fourth = ledger(pool, LDA)[-1]
    assert summary(fourth) == ("SUCCESS", None, 1, LDA_KEPT[2], 0, 0)
    assert not fourth["truncated"]
    finished = state(pool, LDA)
    assert finished.resume_cursor is None and finished.watermark > EARLIER

    # Each run started where the previous one stopped; page 3 was retried in the failed run.
    assert upstream.pages_requested(LDA_PATH) == [1, 2, 3, 3, 3, 3]
    assert stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0

    ingest.run(LDA)
    assert summary(ledger(pool, LDA)[-1]) == ("SUCCESS", None, 3, 0, 0, LDA_TOTAL)
