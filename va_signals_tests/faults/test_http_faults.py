"""Each upstream fault meets the real client, runner and database: what was retried, what the
ledger says, what was kept, and that the next healthy run completes without duplicates."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from va_signals.catalog import Catalog
from va_signals.db.source_state import SourceState, save_state
from va_signals.resources import HttpResource
from va_signals_tests.faults import upstream as up
from va_signals_tests.faults.harness import (
    FAST_RETRY,
    FR_VA_KEPT,
    HEALTHY_AFTER_PAGE_ONE,
    LDA_KEPT,
    LDA_TOTAL,
    Ingest,
    duplicated_keys,
    fault_catalog,
    ledger,
    state,
    stored,
    summary,
)
from va_signals_tests.faults.upstream import ECFR_PATH, LDA_PATH, FakeUpstream

MakeIngest = Callable[[Catalog], Ingest]
LDA = "lda_filings"
FR_VA = "federal_register_va"
ECFR = "ecfr_title38"
# A watermark from an earlier complete run; a failed run must leave it exactly as it is.
EARLIER = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


@dataclass(frozen=True)
class PageTwoFault:
    """A fault served on LDA page 2 and the exact outcome it must produce."""

    behavior: up.Behavior
    page_two_requests: int
    error_class: str
    message: str
    settings: dict[str, Any] = field(default_factory=dict)


PAGE_TWO_FAULTS = {
    "500": PageTwoFault(up.status(500), 3, "UpstreamUnavailable", "HTTP 500"),
    "503": PageTwoFault(up.status(503), 3, "UpstreamUnavailable", "HTTP 503"),
    "hang-before-headers": PageTwoFault(
        up.hang(10),
        3,
        "UpstreamUnavailable",
        "timed out (ReadTimeout)",
        {"read_timeout_seconds": 0.3},
    ),
    "hang-mid-body": PageTwoFault(
        up.hang(10, after_headers=True),
        3,
        "UpstreamUnavailable",
        "timed out reading body",
        {"read_timeout_seconds": 0.3},
    ),
    "connection-dropped": PageTwoFault(up.drop, 3, "UpstreamUnavailable", "connection failed"),
    "body-cut-off": PageTwoFault(up.cut_off, 3, "UpstreamUnavailable", "body interrupted"),
    "403-bot-wall": PageTwoFault(up.bot_wall(403), 1, "Blocked", "blocked (HTTP 403, text/html)"),
    "200-html-page": PageTwoFault(
        up.bot_wall(200), 1, "Blocked", "an HTML page arrived where JSON was expected"
    ),
    "404": PageTwoFault(up.status(404), 1, "RequestRejected", "HTTP 404"),
    "truncated-json": PageTwoFault(up.truncated_json, 1, "SourceShapeError", "is not valid JSON"),
    "wrong-shape": PageTwoFault(
        up.wrong_shape({"count": 25, "results": {"filing_uuid": "x"}}),
        1,
        "SourceShapeError",
        "field 'results' should be list",
    ),
}


@pytest.mark.parametrize("fault", PAGE_TWO_FAULTS.values(), ids=PAGE_TWO_FAULTS.keys())
def test_a_fault_on_page_two_keeps_page_one_and_the_watermark_then_a_healthy_run_completes(
    upstream: FakeUpstream, make_ingest: MakeIngest, pool: ConnectionPool, fault: PageTwoFault
) -> None:
    ingest = make_ingest(fault_catalog(upstream.base_url, **fault.settings))
    with pool.connection() as conn:
        save_state(conn, LDA, SourceState(EARLIER, None))
    upstream.fail(LDA_PATH, fault.behavior, page=2)

    failed = ingest.run(LDA)

    # Retried exactly as classified: transient faults up to max_attempts, the rest once.
    assert upstream.pages_requested(LDA_PATH) == [1] + [2] * fault.page_two_requests
    row = ledger(pool, LDA)[-1]
    assert summary(row) == ("ERROR", fault.error_class, 1, LDA_KEPT[0], 0, 0)
    assert fault.message in row["error_message"]
    assert row["requests"] == 1 + fault.page_two_requests
    assert row["ended_at"] is not None and not row["truncated"]
    assert failed.error_class == fault.error_class
    # Page 1 was committed before the fault; progress stays where the last complete run left it.
    assert stored(pool, LDA) == LDA_KEPT[0]
    assert state(pool, LDA) == SourceState(EARLIER, None)

    upstream.heal()
    healthy = ingest.run(LDA)

    assert summary(ledger(pool, LDA)[-1]) == HEALTHY_AFTER_PAGE_ONE
    assert healthy.ok and stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0
    after = state(pool, LDA)
    assert after.watermark is not None and after.watermark > EARLIER
    assert after.resume_cursor is None
    # The healthy run asked from the day before the old watermark (the adapter's overlap).
    first_query = dict(upstream.seen[-3].query)
    assert first_query["filing_dt_posted_after"] == "2026-01-04"


@pytest.mark.parametrize(
    ("behavior", "retries"),
    [(up.status(500), 2), (up.status(503), 1), (up.drop, 2), (up.cut_off, 1)],
    ids=["500-twice", "503-once", "dropped-twice", "cut-off-once"],
)
def test_transient_faults_within_the_retry_budget_are_invisible_in_the_outcome(
    upstream: FakeUpstream,
    ingest: Ingest,
    pool: ConnectionPool,
    behavior: up.Behavior,
    retries: int,
) -> None:
    upstream.fail(LDA_PATH, behavior, page=2, times=retries)

    result = ingest.run(LDA)

    assert upstream.pages_requested(LDA_PATH) == [1] + [2] * (retries + 1) + [3]
    row = ledger(pool, LDA)[-1]
    assert summary(row) == ("SUCCESS", None, 3, LDA_TOTAL, 0, 0)
    assert row["requests"] == 3 + retries and row["error_message"] is None
    assert result.requests == 3 + retries
    assert stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0


@pytest.mark.parametrize(
    "retry_after", ["1", "date"], ids=["retry-after-seconds", "retry-after-http-date"]
)
def test_a_429_waits_the_time_retry_after_gives_then_succeeds(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool, retry_after: str
) -> None:
    # An HTTP date has one-second resolution, so two seconds ahead means a wait in (1, 2].
    header = up.http_date(2) if retry_after == "date" else retry_after
    upstream.fail(LDA_PATH, up.rate_limited(header), page=2, times=1)

    ingest.run(LDA)

    # The shared limiter paused the whole service; the retry waited for it in acquire().
    page_two = [seen.at for seen in upstream.seen if seen.path == LDA_PATH and seen.page == 2]
    assert len(page_two) == 2
    waited = page_two[1] - page_two[0]
    assert 0.95 <= waited < 2.5, waited
    with pool.connection() as conn:
        paused = conn.execute(
            "SELECT paused_until IS NOT NULL FROM rate_limits WHERE service = 'lda.senate.gov'"
        ).fetchone()
    assert paused == (True,)
    assert summary(ledger(pool, LDA)[-1]) == ("SUCCESS", None, 3, LDA_TOTAL, 0, 0)


def test_connections_refused_mid_run_are_retried_then_the_run_errors(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    # The listener closes while page 1 is being answered: page 2 finds nobody listening.
    upstream.fail(LDA_PATH, up.hook(lambda server, seen: server.stop_listening()), page=1)

    result = ingest.run(LDA)

    assert upstream.pages_requested(LDA_PATH) == [1]
    row = ledger(pool, LDA)[-1]
    assert summary(row) == ("ERROR", "UpstreamUnavailable", 1, LDA_KEPT[0], 0, 0)
    assert "connection failed" in row["error_message"]
    # Three connection attempts for page 2 that the server never saw.
    assert row["requests"] == 4 and result.requests == 4
    assert stored(pool, LDA) == LDA_KEPT[0]
    assert state(pool, LDA) == SourceState(None, None)

    upstream.heal()
    upstream.resume_listening()
    ingest.run(LDA)

    assert summary(ledger(pool, LDA)[-1]) == HEALTHY_AFTER_PAGE_ONE
    assert stored(pool, LDA) == LDA_TOTAL and duplicated_keys(pool) == 0


def test_a_service_that_refuses_every_connection_errors_without_data(
    make_ingest: MakeIngest, pool: ConnectionPool
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # The probe is closed: nothing listens on that port any more.
    ingest = make_ingest(fault_catalog(f"http://127.0.0.1:{closed_port}"))

    result = ingest.run(ECFR)

    row = ledger(pool, ECFR)[-1]
    assert summary(row) == ("ERROR", "UpstreamUnavailable", 0, 0, 0, 0)
    assert "connection failed" in row["error_message"] and row["requests"] == 3
    assert result.requests == 3 and stored(pool, ECFR) == 0
    assert state(pool, ECFR) == SourceState(None, None)


@pytest.mark.parametrize("declared", [False, True], ids=["streamed", "content-length"])
def test_a_50_mb_body_stops_at_max_body_bytes_without_being_read(
    upstream: FakeUpstream, make_ingest: MakeIngest, pool: ConnectionPool, declared: bool
) -> None:
    # A healthy LDA page of 10 filings is about 36 KB.
    limit = 256 * 1024
    size = 50 * 1024 * 1024
    ingest = make_ingest(fault_catalog(upstream.base_url, max_body_bytes=limit))
    upstream.fail(LDA_PATH, up.huge_body(size, declare_length=declared), page=2)

    ingest.run(LDA)

    # Too large is not transient: one request, no retry.
    assert upstream.pages_requested(LDA_PATH) == [1, 2]
    row = ledger(pool, LDA)[-1]
    assert summary(row) == ("ERROR", "ResponseTooLarge", 1, LDA_KEPT[0], 0, 0)
    expected = f"body of {size} bytes exceeds" if declared else f"body exceeds limit of {limit}"
    assert expected in row["error_message"]
    assert row["requests"] == 2
    # The client hung up: what the server pushed is the limit plus the sockets' buffers at most.
    assert upstream.stream.done.wait(10)
    assert upstream.stream.aborted
    assert upstream.stream.bytes_sent < size // 4
    assert stored(pool, LDA) == LDA_KEPT[0]

    upstream.heal()
    ingest.run(LDA)

    assert summary(ledger(pool, LDA)[-1]) == HEALTHY_AFTER_PAGE_ONE


def test_the_first_healthy_run_of_each_source_stores_everything_once(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    for source_id, pages, total in ((LDA, 3, LDA_TOTAL), (FR_VA, 2, sum(FR_VA_KEPT)), (ECFR, 1, 1)):
        ingest.run(source_id)
        assert summary(ledger(pool, source_id)[-1]) == ("SUCCESS", None, pages, total, 0, 0)
        assert stored(pool, source_id) == total
    assert upstream.count() == 3 + 2 + 1
    assert duplicated_keys(pool) == 0


def test_no_data_at_all_is_no_data_and_moves_the_watermark(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    upstream.fail(LDA_PATH, up.wrong_shape({"count": 0, "next": None, "results": []}))
    before = datetime.now(UTC) - timedelta(seconds=1)

    ingest.run(LDA)

    assert summary(ledger(pool, LDA)[-1]) == ("NO_DATA", None, 1, 0, 0, 0)
    after = state(pool, LDA)
    assert after.watermark is not None and after.watermark >= before


def test_a_body_trickling_in_below_the_read_timeout_is_cut_at_the_retry_budget(
    upstream: FakeUpstream, make_ingest: MakeIngest, pool: ConnectionPool
) -> None:
    # Each byte arrives within the 0.3 s read timeout, so only a total deadline can stop it:
    # the 31 KB page would take an hour at this pace (the server gives up after 20 s).
    budget = FAST_RETRY.model_copy(update={"max_total_seconds": 2.0})
    ingest = make_ingest(fault_catalog(upstream.base_url, read_timeout_seconds=0.3, retry=budget))
    upstream.fail(LDA_PATH, up.trickle(0.1, 20), page=2)
    started = time.monotonic()

    ingest.run(LDA)

    # Bounded by the retry budget, not by the server's patience; past the budget, no retry.
    assert time.monotonic() - started < 4
    assert upstream.pages_requested(LDA_PATH) == [1, 2]
    row = ledger(pool, LDA)[-1]
    assert summary(row) == ("ERROR", "UpstreamUnavailable", 1, LDA_KEPT[0], 0, 0)
    assert "body not complete within the 2s retry budget" in row["error_message"]


def test_a_redirect_carries_the_api_key_to_the_same_origin_only(
    upstream: FakeUpstream, db: str
) -> None:
    elsewhere = FakeUpstream(upstream.recordings).start()
    try:
        # Same host and port: the key goes along. Another port is another origin: it must not.
        upstream.fail("/moved-here", up.redirect(upstream.base_url + ECFR_PATH))
        upstream.fail("/moved-away", up.redirect(elsewhere.base_url + ECFR_PATH))
        service = fault_catalog(upstream.base_url).service("api.congress.gov")
        http = HttpResource(data_gov_api_key="secret-key", state_database_url=db)
        client = http.client_for(service, "congress_bills")

        here = client.get(upstream.base_url + "/moved-here")
        away = client.get(upstream.base_url + "/moved-away")

        assert here.status_code == away.status_code == 200
        assert [seen.header("x-api-key") for seen in upstream.seen] == ["secret-key"] * 3
        assert [seen.path for seen in elsewhere.seen] == [ECFR_PATH]
        assert elsewhere.seen[0].header("x-api-key") is None
    finally:
        elsewhere.close()
