"""The one path every source request takes: limit, breaker, timeout, retry and classification.

A `ResilientClient` is bound to one source and its upstream service. It turns every way a call
can fail into an `UpstreamError` subclass, so adapters only ever see a good response or a
typed error, and the caller can record exactly why a run stopped.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import re
import statistics
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Protocol

import httpx

from va_signals.catalog.models import RetryPolicy, Service
from va_signals.resilience.errors import (
    Blocked,
    RateLimited,
    RequestRejected,
    ResponseTooLarge,
    UpstreamError,
    UpstreamUnavailable,
)

logger = logging.getLogger(__name__)

# The longest pause a Retry-After header may impose. The throttle stores the pause and holds
# every caller of the service for it, so an upstream saying "a year" (or a date in 9999) must not
# stop the service for a year: an hour is longer than any real API asks, and past the retry
# budget the run gives up anyway and the next scheduled run tries again.
MAX_RETRY_AFTER_SECONDS = 3600.0

# The only content codings we decode, one layer of them. We say so in every request, so a
# server that answers with anything else (br, zstd, `gzip, gzip`) is misbehaving: that body is
# refused, never decoded (see `UndecodableBody`).
ACCEPT_ENCODING = "gzip, deflate"
# Output of one decompression step: decoded bytes never exceed max_body_bytes plus this much.
DECODE_STEP_BYTES = 64 * 1024


class UndecodableBody(UpstreamError):
    """The body came in a Content-Encoding we did not ask for (br, stacked `gzip, gzip`...) or
    its compressed data is corrupt. Not retried: the same request gets the same answer."""


# Requests that cannot succeed by being repeated.
_NOT_RETRIED = (Blocked, RequestRejected, ResponseTooLarge, UndecodableBody)


class CallGate(Protocol):
    """A circuit breaker as the client sees it: ask before a call, report after it."""

    def before_call(self) -> None:
        """Raise `BreakerOpen` when the call must not be attempted."""

    def record_success(self) -> None: ...

    def record_failure(self, error: UpstreamError) -> None: ...


class Throttle(Protocol):
    """A rate limiter as the client sees it: wait for a slot, or pause the whole service."""

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""

    def pause(self, seconds: float) -> None:
        """Hold every caller of this service for `seconds` (a 429 with Retry-After)."""


@dataclass
class RequestStats:
    """Latencies of the requests one source made, for the run's ledger and metadata."""

    latencies_ms: list[float] = field(default_factory=list)
    attempts: int = 0
    retries: int = 0
    waited_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, latency_ms: float) -> None:
        with self._lock:
            self.latencies_ms.append(latency_ms)

    @property
    def p50_ms(self) -> int | None:
        return round(statistics.median(self.latencies_ms)) if self.latencies_ms else None

    @property
    def max_ms(self) -> int | None:
        return round(max(self.latencies_ms)) if self.latencies_ms else None


class ResilientClient:
    """Makes GET requests for one source to one upstream service."""

    def __init__(
        self,
        http: httpx.Client,
        service: Service,
        source_id: str,
        *,
        api_key: str | None = None,
        gate: CallGate | None = None,
        throttle: Throttle | None = None,
        retry: RetryPolicy | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self.service = service
        self.source_id = source_id
        self._api_key = api_key
        self._gate = gate
        self._throttle = throttle
        self._retry = retry or service.retry
        self._log = log or logger
        self._sleep = sleep
        self.stats = RequestStats()

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        expect_json: bool = True,
    ) -> httpx.Response:
        """GET `url`, retrying transient failures; return a 2xx response or raise."""
        deadline = time.monotonic() + self._retry.max_total_seconds
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(url, params, headers, expect_json, deadline)
            except UpstreamError as error:
                if isinstance(error, _NOT_RETRIED) or not error.transient:
                    raise
                delay = self._backoff(attempt, error)
                # After a 429 the throttle holds the next attempt for Retry-After: the retry
                # budget must cover that wait too, not only our own backoff.
                held = max(delay, self._paused_by_throttle(error))
                if attempt >= self._retry.max_attempts or time.monotonic() + held > deadline:
                    self._log.warning(
                        "%s: giving up on %s after %d attempts: %s",
                        self.source_id,
                        _safe_url(url),
                        attempt,
                        error,
                    )
                    raise
                self.stats.retries += 1
                self._log.info(
                    "%s: attempt %d failed (%s); retrying in %.2fs",
                    self.source_id,
                    attempt,
                    error,
                    delay,
                )
                self._sleep(delay)

    def _attempt(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        expect_json: bool,
        deadline: float,
    ) -> httpx.Response:
        if self._gate is not None:
            self._gate.before_call()
        if self._throttle is not None:
            waited = self._throttle.acquire()
            if waited > 0:
                self.stats.waited_seconds += waited
        self.stats.attempts += 1
        started = time.perf_counter()
        try:
            response = self._send(url, params, headers, deadline)
            self._check(response, expect_json)
        except UpstreamError as error:
            self.stats.add((time.perf_counter() - started) * 1000)
            if isinstance(error, RateLimited) and error.retry_after and self._throttle:
                self._throttle.pause(error.retry_after)
            if self._gate is not None:
                if error.counts_as_failure:
                    self._gate.record_failure(error)
                else:
                    self._gate.record_success()
            raise
        self.stats.add((time.perf_counter() - started) * 1000)
        if self._gate is not None:
            self._gate.record_success()
        return response

    def _send(
        self,
        url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        deadline: float,
    ) -> httpx.Response:
        request_headers = httpx.Headers(headers or {})
        # We decode these ourselves, with a bound (`BoundedDecoder`); nothing else is accepted.
        request_headers["Accept-Encoding"] = ACCEPT_ENCODING
        if self._api_key and self.service.api_key_header:
            request_headers[self.service.api_key_header] = (
                self.service.api_key_prefix + self._api_key
            )
        timeout = httpx.Timeout(
            connect=self.service.connect_timeout_seconds,
            read=self.service.read_timeout_seconds,
            write=self.service.read_timeout_seconds,
            pool=self.service.connect_timeout_seconds,
        )
        try:
            request = self._http.build_request(
                "GET", url, params=params, headers=request_headers, timeout=timeout
            )
            response = self._send_following(request)
        except httpx.TimeoutException as exc:
            raise self._error(
                UpstreamUnavailable, url, f"timed out ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise self._error(UpstreamUnavailable, url, f"connection failed: {exc}") from exc
        try:
            body = self._read_limited(response, url, deadline)
        finally:
            response.close()
        # The body is decoded now: the headers must describe it, or httpx would decode it again.
        decoded_headers = httpx.Headers(response.headers)
        for name in ("content-encoding", "content-length", "transfer-encoding"):
            decoded_headers.pop(name, None)
        return httpx.Response(
            response.status_code,
            headers=decoded_headers,
            content=body,
            request=response.request,
        )

    def _send_following(self, request: httpx.Request) -> httpx.Response:
        """Send, following redirects as the httpx client is set to, but never taking the API key
        to another origin: httpx itself drops only `Authorization`, not a key header."""
        origin = _origin(request.url)
        response = self._http.send(request, stream=True, follow_redirects=False)
        hops = 0
        while self._http.follow_redirects and response.next_request is not None:
            following = response.next_request
            response.close()
            hops += 1
            if hops > self._http.max_redirects:
                raise self._error(
                    RequestRejected, str(request.url), f"more than {hops - 1} redirects"
                )
            if self.service.api_key_header and _origin(following.url) != origin:
                following.headers.pop(self.service.api_key_header, None)
            response = self._http.send(following, stream=True, follow_redirects=False)
        return response

    def _read_limited(self, response: httpx.Response, url: str, deadline: float) -> bytes:
        """Read and decode the body, refusing it once either the bytes received or the bytes
        decoded pass max_body_bytes: a few KB of gzip must not expand to gigabytes in memory."""
        limit = self.service.max_body_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise self._error(
                ResponseTooLarge, url, f"body of {declared} bytes exceeds limit of {limit}"
            )
        if response.is_stream_consumed:
            # Built in memory and already read, so already decoded, by httpx: a transport such as
            # ReplayTransport answering with `content=`. Only its size is left to check.
            pieces: Iterable[bytes] = [response.content]
            encoding = None
        else:
            pieces = response.iter_raw()
            encoding = response.headers.get("content-encoding")
        try:
            decoder = BoundedDecoder(encoding, limit)
        except UnsupportedEncoding as exc:
            if response.status_code >= 400:
                return b""  # an error page: its status says what went wrong, not its body
            raise self._error(UndecodableBody, url, str(exc), response.status_code) from None
        chunks: list[bytes] = []
        received = 0
        try:
            for raw in pieces:
                received += len(raw)
                if received > limit:
                    raise self._error(ResponseTooLarge, url, f"body exceeds limit of {limit} bytes")
                chunks.extend(decoder.feed(raw))
                # httpx times each read, not the body: bytes trickling in just under the read
                # timeout would hold the run for hours without this bound.
                if time.monotonic() > deadline:
                    raise self._error(
                        UpstreamUnavailable,
                        url,
                        f"body not complete within the {self._retry.max_total_seconds:g}s "
                        "retry budget",
                    )
            chunks.extend(decoder.finish())
        except BodyLimitExceeded:
            raise self._error(
                ResponseTooLarge,
                url,
                f"body exceeds limit of {limit} bytes once decoded ({decoder.encoding})",
            ) from None
        except CorruptBody as exc:
            if response.status_code >= 400:
                return b""  # an error page: its status says what went wrong, not its body
            raise self._error(UndecodableBody, url, str(exc), response.status_code) from None
        except httpx.TimeoutException as exc:
            raise self._error(UpstreamUnavailable, url, f"timed out reading body: {exc}") from exc
        except httpx.TransportError as exc:
            raise self._error(UpstreamUnavailable, url, f"body interrupted: {exc}") from exc
        return b"".join(chunks)

    def _check(self, response: httpx.Response, expect_json: bool) -> None:
        status = response.status_code
        url = str(response.request.url)
        if status == 429:
            raise RateLimited(
                self.source_id,
                self.service.name,
                _safe_url(url),
                self._retry_after(response),
                status,
            )
        if status >= 500:
            raise self._error(UpstreamUnavailable, url, f"HTTP {status}", status)
        if status == 403:
            raise self._error(Blocked, url, f"blocked (HTTP 403, {_kind(response)})", status)
        if status >= 400:
            raise self._error(RequestRejected, url, f"HTTP {status}: {_snippet(response)}", status)
        if expect_json and "html" in response.headers.get("content-type", "").lower():
            raise self._error(Blocked, url, "blocked: an HTML page arrived where JSON was expected")

    def _error(
        self, kind: type[UpstreamError], url: str, message: str, status: int | None = None
    ) -> UpstreamError:
        return kind(self.source_id, self.service.name, _safe_url(url), message, status)

    def _retry_after(self, response: httpx.Response) -> float | None:
        """Retry-After in seconds, at most MAX_RETRY_AFTER_SECONDS; None when absent or unusable."""
        seconds = _retry_after(response)
        if seconds is not None and seconds > MAX_RETRY_AFTER_SECONDS:
            self._log.warning(
                "%s: %s asked to retry after %.0fs; capped at %.0fs",
                self.source_id,
                self.service.name,
                seconds,
                MAX_RETRY_AFTER_SECONDS,
            )
            return MAX_RETRY_AFTER_SECONDS
        return seconds

    def _paused_by_throttle(self, error: UpstreamError) -> float:
        if self._throttle is None or not isinstance(error, RateLimited):
            return 0.0
        return error.retry_after or 0.0

    def _backoff(self, attempt: int, error: UpstreamError) -> float:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            # The throttle already holds every caller of the service for that long.
            if self._throttle is not None:
                return 0.0
            return min(error.retry_after, self._retry.max_total_seconds)
        # Full jitter: a uniform wait up to the exponential cap spreads retries of many callers.
        cap = min(
            self._retry.max_delay_seconds, self._retry.base_delay_seconds * 2 ** (attempt - 1)
        )
        return random.uniform(0, cap)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header given as seconds or as an HTTP date, uncapped; None
    when absent or not a finite, non-negative value (negative, NaN, garbage)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)  # a 400-digit number is inf: not a usable answer
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": the date is in UTC, its source zone unknown
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, when.timestamp() - time.time())
    except (OverflowError, ValueError, OSError):
        return None


# RFC 9110 delay-seconds: ASCII digits only (str.isdigit would also accept "²" or "٣").
_DELAY_SECONDS = re.compile(r"[0-9]+")


class BodyLimitExceeded(ValueError):
    """Decoding would produce more than the allowed number of bytes."""


class UnsupportedEncoding(ValueError):
    """A Content-Encoding other than one layer of gzip or deflate."""


class CorruptBody(ValueError):
    """The compressed data could not be decoded."""


class BoundedDecoder:
    """Decodes a body's one Content-Encoding layer (identity, gzip or deflate) incrementally,
    never holding more than `limit` decoded bytes plus one DECODE_STEP_BYTES step.

    Any other coding, or several stacked, raises `UnsupportedEncoding` before anything is
    decoded; more than `limit` decoded bytes raises `BodyLimitExceeded`; bad data `CorruptBody`.
    """

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        codings = [c for c in codings if c != "identity"]
        self.encoding = codings[0] if codings else "identity"
        if len(codings) > 1 or self.encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            raise UnsupportedEncoding(
                f"unsupported Content-Encoding {content_encoding!r} "
                f"(we accept one layer of {ACCEPT_ENCODING})"
            )
        self.limit = limit
        self.decoded = 0
        self._started = False
        self._fed = False
        self._zlib: Any = None
        if self.encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.encoding == "deflate":
            self._zlib = zlib.decompressobj()

    def feed(self, raw: bytes) -> list[bytes]:
        """The decoded bytes of the next piece of the raw body."""
        if not raw:
            return []
        self._fed = True
        if self._zlib is None:
            return self._count([raw])
        if not self._started and raw and self.encoding == "deflate":
            self._started = True
            # RFC 9110's deflate is zlib-wrapped, but some servers send raw deflate.
            if raw[0] & 0x0F != 8 or int.from_bytes(raw[:2], "big") % 31:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._count(self._inflate(raw))

    def finish(self) -> list[bytes]:
        """Whatever the decompressor still holds, once the raw body is complete."""
        if self._zlib is None:
            return []
        pieces = self._count(self._inflate(b""))
        if self._fed and not self._zlib.eof:
            raise CorruptBody(f"{self.encoding} body ends before its compressed data does")
        return pieces

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        try:
            while True:
                if self._zlib.eof:
                    # gzip allows several members one after another; each is decoded in turn.
                    rest = self._zlib.unused_data + data
                    if not rest or self.encoding == "deflate":
                        return
                    self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data = rest
                out = self._zlib.decompress(data, DECODE_STEP_BYTES)
                data = self._zlib.unconsumed_tail
                if out:
                    yield out
                # A full step may leave output inside zlib even with no input left: ask again.
                if not data and len(out) < DECODE_STEP_BYTES and not self._zlib.eof:
                    return
        except zlib.error as exc:
            raise CorruptBody(f"{self.encoding} body cannot be decoded: {exc}") from None

    def _count(self, pieces: Iterator[bytes] | list[bytes]) -> list[bytes]:
        kept = []
        for piece in pieces:
            self.decoded += len(piece)
            if self.decoded > self.limit:
                raise BodyLimitExceeded(f"more than {self.limit} bytes once decoded")
            kept.append(piece)
        return kept


def _kind(response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "unknown content")
    return content_type.split(";")[0]


def _snippet(response: httpx.Response) -> str:
    text = response.content[:160].decode("utf-8", errors="replace")
    return " ".join(text.split())


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _safe_url(url: str) -> str:
    """The URL without its query string, which may carry an API key."""
    return url.split("?", 1)[0]
