"""Shared rate limit of an upstream service: every process draws request slots from one schedule
in PostgreSQL, so together they never exceed the catalog's limit, and a 429 pauses them all."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from va_signals.catalog.models import RateLimit
from va_signals.resilience.clock import SERVER_CLOCK, Clock
from va_signals.resilience.errors import RateLimitWaitExceeded

logger = logging.getLogger(__name__)

# Slots are spaced this fraction wider than the limit strictly needs. The limit itself holds
# exactly on the schedule of slot times, margin or not. The margin is for the requests, which go
# a little after their slots (waking from sleep, the pause check, the HTTP client): two requests
# `requests` slots apart still reach the upstream at least `per_seconds` apart unless the earlier
# one is delayed beyond its slot by more than `per_seconds * SLOT_MARGIN` over the later one's
# delay (20 ms in a 1 s window, 1.2 s in a minute). It costs 2% of the limit, whatever the rate.
SLOT_MARGIN = 0.02
# Waits shorter than this are the normal pace of a busy service; logging each would flood runs.
_LOGGED_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class Reservation:
    """The answer to one request for a slot; times are Unix seconds on the store's clock."""

    granted: bool
    # Until the slot (granted) or until the earliest free slot (refused).
    wait_seconds: float
    slot_at: float | None = None
    paused_for: float = 0.0


class RateLimitStateError(Exception):
    """The shared rate-limit state could not be read or written; the message names the cause."""


class RateLimitStore(Protocol):
    """Shared storage of each service's schedule of slots and pause."""

    def reserve(
        self, service: str, interval: float, max_wait: float, now: float | None
    ) -> Reservation:
        """Atomically take the next slot unless it is more than `max_wait` seconds away."""

    def pause(self, service: str, seconds: float, now: float | None) -> float:
        """Hold the service until `now + seconds` (kept if already later); return that time."""

    def paused_after(self, service: str, slot_at: float) -> bool:
        """Whether a pause set after a reservation now covers its slot."""


def allowed_requests(limit: RateLimit, *, has_key: bool) -> int:
    """Requests per `per_seconds` for this caller: keyed callers may have a higher limit."""
    return limit.requests_with_key if has_key and limit.requests_with_key else limit.requests


def slot_interval(limit: RateLimit, *, has_key: bool, margin: float = SLOT_MARGIN) -> float:
    """Seconds between two request slots of a service.

    Requests are evenly spaced rather than sent in bursts: slots at least `per_seconds /
    requests` apart put at most `requests` slots in any window of `per_seconds`, not just in
    aligned ones, for all processes together.
    """
    return limit.per_seconds / allowed_requests(limit, has_key=has_key) * (1.0 + margin)


class RateLimiter:
    """The `Throttle` of one source's calls to one service; the schedule itself is shared."""

    def __init__(
        self,
        service: str,
        limit: RateLimit,
        store: RateLimitStore,
        *,
        source_id: str = "",
        has_key: bool = False,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        clock: Clock = SERVER_CLOCK,
        margin: float = SLOT_MARGIN,
    ) -> None:
        self.service = service
        self.limit = limit
        self.source_id = source_id
        self.requests = allowed_requests(limit, has_key=has_key)
        self.interval = slot_interval(limit, has_key=has_key, margin=margin)
        self._store = store
        self._log = log or logger
        self._clock = clock

    def acquire(self) -> float:
        """Sleep until this caller's slot; return the seconds waited.

        The slot's time is the earliest the request may go, fixed when the slot is taken: this
        returns at or after it, never before, and a caller waking late sends late without
        moving any later slot, so the limit holds on the schedule whatever callers do.

        Raises `RateLimitWaitExceeded` when the slot is further away than the service's
        `max_wait_seconds`, or when the shared state cannot be read (failing closed).
        """
        budget = self.limit.max_wait_seconds
        waited = 0.0
        while True:
            reservation = self._reserve(budget - waited)
            if not reservation.granted:
                raise self._too_long(reservation, waited)
            if reservation.wait_seconds <= 0:
                return waited
            self._clock.sleep(reservation.wait_seconds)
            waited += reservation.wait_seconds
            assert reservation.slot_at is not None
            if not self._paused_after(reservation.slot_at):
                self._log_wait(waited, reservation)
                return waited
            # A 429 paused the service while this caller slept: its slot now falls inside the
            # pause, so it queues again behind the pause instead of firing into it.
            self._log.info(
                "%s: %s was paused while waiting for a slot; queueing again",
                self.source_id or "-",
                self.service,
            )

    def pause(self, seconds: float) -> None:
        """Hold every caller of the service, in every process, for `seconds`."""
        try:
            until = self._store.pause(self.service, seconds, self._clock.now())
        except RateLimitStateError as exc:
            raise self._unreadable(exc) from exc
        self._log.warning(
            "%s: %s asked us to slow down; every caller paused for %.1fs (until %s)",
            self.source_id or "-",
            self.service,
            seconds,
            datetime.fromtimestamp(until, UTC).strftime("%H:%M:%SZ"),
        )

    def _reserve(self, max_wait: float) -> Reservation:
        try:
            return self._store.reserve(
                self.service, self.interval, max(0.0, max_wait), self._clock.now()
            )
        except RateLimitStateError as exc:
            raise self._unreadable(exc) from exc

    def _paused_after(self, slot_at: float) -> bool:
        try:
            return self._store.paused_after(self.service, slot_at)
        except RateLimitStateError as exc:
            raise self._unreadable(exc) from exc

    def _log_wait(self, waited: float, reservation: Reservation) -> None:
        level = logging.INFO if waited >= _LOGGED_WAIT_SECONDS else logging.DEBUG
        cause = "paused after a 429" if reservation.paused_for > 0 else "at its rate limit"
        self._log.log(
            level,
            "%s: waited %.2fs for a request slot of %s (%s)",
            self.source_id or "-",
            waited,
            self.service,
            cause,
        )

    def _too_long(self, reservation: Reservation, waited: float) -> RateLimitWaitExceeded:
        limit = self.limit
        paused = (
            f", paused after a 429 for {reservation.paused_for:.1f}s more"
            if reservation.paused_for > 0
            else ""
        )
        message = (
            f"the next request slot is {reservation.wait_seconds + waited:.1f}s away "
            f"(limit {self.requests} per {limit.per_seconds:g}s{paused}), more than "
            f"max_wait_seconds={limit.max_wait_seconds:g}"
        )
        self._log.warning("%s: %s: %s", self.source_id or "-", self.service, message)
        return RateLimitWaitExceeded(self.source_id, self.service, "", message)

    def _unreadable(self, exc: RateLimitStateError) -> RateLimitWaitExceeded:
        self._log.error(
            "%s: rate-limit state of %s unreadable, not sending: %s",
            self.source_id or "-",
            self.service,
            exc,
        )
        return RateLimitWaitExceeded(
            self.source_id,
            self.service,
            "",
            f"rate-limit state unreadable, request not sent to fail closed ({exc})",
        )
