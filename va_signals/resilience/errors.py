"""How an upstream call can fail, and which failures are transient, blocking or the caller's."""

from __future__ import annotations

from va_signals.sources.base import SourceError


class UpstreamError(SourceError):
    """A call to an upstream service failed. Subclasses say whether to retry and whether the
    failure counts against the service's circuit breaker."""

    transient: bool = False
    counts_as_failure: bool = True

    def __init__(
        self, source_id: str, service: str, url: str, message: str, status: int | None = None
    ) -> None:
        where = f"{service} {url}" if url else service
        super().__init__(source_id, f"{where}: {message}")
        self.service = service
        self.url = url
        self.status = status


class UpstreamUnavailable(UpstreamError):
    """Connection refused or reset, a timeout, or a 5xx answer: worth retrying later."""

    transient = True


class RateLimited(UpstreamError):
    """HTTP 429. `retry_after` is the pause the service asked for, in seconds, when it said."""

    transient = True

    def __init__(
        self, source_id: str, service: str, url: str, retry_after: float | None, status: int = 429
    ) -> None:
        told = f", retry after {retry_after:.0f}s" if retry_after is not None else ""
        super().__init__(source_id, service, url, f"rate limited (HTTP {status}{told})", status)
        self.retry_after = retry_after


class Blocked(UpstreamError):
    """A bot wall (403) or an HTML page where JSON was expected: retrying will not help."""


class RequestRejected(UpstreamError):
    """A 4xx caused by the request itself (400, 401, 404...): the service is fine, we are not."""

    counts_as_failure = False


class ResponseTooLarge(UpstreamError):
    """The body exceeded the service's size limit; the rest was not read."""


class BreakerOpen(UpstreamError):
    """The service's circuit breaker is open: the call was not attempted."""

    counts_as_failure = False


class BreakerRecovering(BreakerOpen):
    """The breaker closed again but admits only a share of calls for now; this one was not."""


class RateLimitWaitExceeded(UpstreamError):
    """Waiting for the shared rate limit would take longer than the service allows."""

    counts_as_failure = False
