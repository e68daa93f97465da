"""Compressed bodies and Retry-After values as upstreams really send them: gzip and deflate are
decoded once, bombs and codings we never asked for are refused, absurd pauses are capped."""

from __future__ import annotations

import gzip
import logging
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import pytest
from psycopg_pool import ConnectionPool

from va_signals.resilience.errors import RateLimited, ResponseTooLarge
from va_signals.resilience.http import (
    ACCEPT_ENCODING,
    MAX_RETRY_AFTER_SECONDS,
    ResilientClient,
    UndecodableBody,
)
from va_signals_tests.faults import upstream as up
from va_signals_tests.faults.harness import (
    LDA_KEPT,
    Ingest,
    fault_catalog,
    ledger,
    plain_client,
    summary,
)
from va_signals_tests.faults.upstream import ECFR_PATH, LDA_PATH, FakeUpstream

LDA = "lda_filings"
ECFR = "ecfr_title38"


def encoded(encoding: str, encode: Callable[[bytes], bytes]) -> up.Behavior:
    """The healthy answer, its body passed through `encode` and labelled `encoding`."""

    def behave(handler: up._Handler, seen: up.Seen) -> None:
        body = handler.upstream.healthy_body(seen)
        assert body is not None
        handler.answer(200, encode(body), headers={"Content-Encoding": encoding})

    return behave


def raw_body(body: bytes, encoding: str) -> up.Behavior:
    def behave(handler: up._Handler, seen: up.Seen) -> None:
        handler.answer(200, body, headers={"Content-Encoding": encoding})

    return behave


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """100 MB of zeros in about 100 KB of gzip."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    return b"".join(compressor.compress(block) for _ in range(100)) + compressor.flush()


def client_for(
    upstream: FakeUpstream, source_id: str = ECFR, **settings: object
) -> ResilientClient:
    return plain_client(fault_catalog(upstream.base_url, **settings), source_id)


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("gzip", lambda body: gzip.compress(body[:1000]) + gzip.compress(body[1000:])),
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw", "gzip-two-members"],
)
def test_a_compressed_body_is_decoded_once_and_its_headers_match_it(
    upstream: FakeUpstream, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    upstream.fail(ECFR_PATH, encoded(encoding, encode))
    expected = upstream.healthy_body(up.Seen(ECFR_PATH, 1, (), 0.0))
    assert expected is not None

    response = client_for(upstream).get(upstream.base_url + ECFR_PATH)

    assert response.content == expected
    assert response.json()["titles"]
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(expected))
    assert upstream.seen[0].header("accept-encoding") == ACCEPT_ENCODING == "gzip, deflate"


def test_a_run_against_an_upstream_answering_gzip_completes(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    upstream.fail(LDA_PATH, encoded("gzip", gzip.compress))

    result = ingest.run(LDA)

    assert result.ok
    assert summary(ledger(pool, LDA)[-1]) == ("SUCCESS", None, 3, sum(LDA_KEPT), 0, 0)


def test_a_gzip_bomb_stops_at_max_body_bytes_without_expanding_in_memory(
    upstream: FakeUpstream,
) -> None:
    limit = 256 * 1024
    bomb = gzip_bomb()
    assert len(bomb) < limit  # the raw bytes alone pass the limit
    upstream.fail(ECFR_PATH, raw_body(bomb, "gzip"))
    client = client_for(upstream, max_body_bytes=limit)

    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match="once decoded") as raised:
            client.get(upstream.base_url + ECFR_PATH)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert f"exceeds limit of {limit} bytes" in str(raised.value)
    # The limit plus one decode step and the raw body, not the 100 MB it expands to.
    assert peak < 8 * 1024 * 1024, peak
    assert upstream.count(ECFR_PATH) == 1


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip, gzip", gzip.compress(gzip.compress(bytes(10 * 1024 * 1024)))),
        ("br", b"\x1b\x03\x00\xf8\xa5\x40"),
        ("compress", b"\x1f\x9d"),
    ],
    ids=["stacked-gzip", "brotli", "compress"],
)
def test_a_coding_we_did_not_ask_for_is_refused_without_decoding_and_not_retried(
    upstream: FakeUpstream, encoding: str, body: bytes
) -> None:
    upstream.fail(ECFR_PATH, raw_body(body, encoding))

    with pytest.raises(UndecodableBody, match="unsupported Content-Encoding") as raised:
        client_for(upstream).get(upstream.base_url + ECFR_PATH)

    assert repr(encoding) in str(raised.value)
    assert upstream.count(ECFR_PATH) == 1


def test_corrupt_gzip_is_refused_as_undecodable(upstream: FakeUpstream) -> None:
    upstream.fail(ECFR_PATH, raw_body(b"\x1f\x8b\x08\x00garbage-not-deflate", "gzip"))

    with pytest.raises(UndecodableBody, match="gzip body cannot be decoded"):
        client_for(upstream).get(upstream.base_url + ECFR_PATH)


def test_an_error_page_in_an_unsupported_coding_is_still_classified_by_its_status(
    upstream: FakeUpstream,
) -> None:
    def behave(handler: up._Handler, seen: up.Seen) -> None:
        handler.answer(503, b"\x1b\x03\x00", headers={"Content-Encoding": "br"})

    upstream.fail(ECFR_PATH, behave)

    with pytest.raises(Exception, match="HTTP 503") as raised:
        client_for(upstream).get(upstream.base_url + ECFR_PATH)

    assert type(raised.value).__name__ == "UpstreamUnavailable"


def rate_limited_error(upstream: FakeUpstream, header: str) -> RateLimited:
    upstream.fail(ECFR_PATH, up.rate_limited(header))
    with pytest.raises(RateLimited) as raised:
        client_for(upstream).get(upstream.base_url + ECFR_PATH)
    return raised.value


@pytest.mark.parametrize(
    "header",
    ["31536000", "Fri, 31 Dec 9999 23:59:59 GMT"],
    ids=["a-year-in-seconds", "http-date-in-9999"],
)
def test_an_absurd_retry_after_is_capped_and_logged(
    upstream: FakeUpstream, header: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="va_signals.resilience.http"):
        error = rate_limited_error(upstream, header)

    assert MAX_RETRY_AFTER_SECONDS == 3600
    assert error.retry_after == MAX_RETRY_AFTER_SECONDS
    assert any("capped at 3600s" in record.getMessage() for record in caplog.records)
    # Past the retry budget: given up at once, not slept on.
    assert upstream.count(ECFR_PATH) == 1


@pytest.mark.parametrize(
    "header",
    ["9" * 400, "-5", "NaN", "inf", "1e9", "\u00b2", "soon", "Mon, 99 Foo 2024 99:99:99 GMT"],
    ids=["inf-digits", "negative", "nan", "inf", "exponent", "superscript", "garbage", "bad-date"],
)
def test_an_unusable_retry_after_counts_as_absent(upstream: FakeUpstream, header: str) -> None:
    error = rate_limited_error(upstream, header)

    assert error.retry_after is None
    # Without a usable Retry-After the client backs off as for any transient failure.
    assert upstream.count(ECFR_PATH) == 3


def test_a_year_long_retry_after_pauses_the_service_for_an_hour_at_most(
    upstream: FakeUpstream, ingest: Ingest, pool: ConnectionPool
) -> None:
    upstream.fail(LDA_PATH, up.rate_limited("31536000"), page=2)
    before = datetime.now(UTC)

    failed = ingest.run(LDA)

    assert failed.error_class == "RateLimited"
    assert upstream.pages_requested(LDA_PATH) == [1, 2]
    with pool.connection() as conn:
        (paused_until,) = conn.execute(
            "SELECT paused_until FROM rate_limits WHERE service = 'lda.senate.gov'"
        ).fetchone()
    assert paused_until is not None
    assert paused_until <= before + timedelta(seconds=MAX_RETRY_AFTER_SECONDS + 60)
