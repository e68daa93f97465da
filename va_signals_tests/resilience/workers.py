"""Work done in separate processes (spawned, so importable by path) for the cross-process tests."""

from __future__ import annotations

import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event

import psycopg

from va_signals.catalog.models import BreakerPolicy, RateLimit
from va_signals.db.breakers import PostgresBreakerStore
from va_signals.db.locks import source_lock
from va_signals.db.pool import close_all_pools, get_pool
from va_signals.db.rate_limits import PostgresRateLimitStore
from va_signals.resilience.breaker import CircuitBreaker
from va_signals.resilience.errors import BreakerOpen, RateLimitWaitExceeded, UpstreamUnavailable
from va_signals.resilience.limiter import RateLimiter, RateLimitStore, Reservation
from va_signals_tests.resilience.clocks import FakeClock

# Generous enough that concurrent failures only ever count, never open the breaker.
COUNTING_POLICY = BreakerPolicy(
    failure_threshold=100_000, min_calls_for_rate=100_000, window_seconds=3600
)


def record_failures(url: str, service: str, count: int, start: Event) -> None:
    breaker = CircuitBreaker(service, COUNTING_POLICY, PostgresBreakerStore(get_pool(url)))
    error = UpstreamUnavailable("worker", service, "http://127.0.0.1/x", "HTTP 500", 500)
    start.wait(30)
    for _ in range(count):
        breaker.record_failure(error)
    close_all_pools()


def breaker_verdict(url: str, service: str, policy_json: str) -> str:
    """What a brand-new process sees: 'OPEN: <message>' or 'admitted'."""
    policy = BreakerPolicy.model_validate_json(policy_json)
    breaker = CircuitBreaker(service, policy, PostgresBreakerStore(get_pool(url)))
    try:
        breaker.before_call()
    except BreakerOpen as refused:
        return f"OPEN: {refused}"
    finally:
        close_all_pools()
    return "admitted"


class RecordingStore:
    """A `RateLimitStore` that keeps the slot of every reservation it grants, in order."""

    def __init__(self, store: RateLimitStore) -> None:
        self._store = store
        self.slots: list[float] = []

    def reserve(
        self, service: str, interval: float, max_wait: float, now: float | None
    ) -> Reservation:
        reservation = self._store.reserve(service, interval, max_wait, now)
        if reservation.granted:
            assert reservation.slot_at is not None
            self.slots.append(reservation.slot_at)
        return reservation

    def pause(self, service: str, seconds: float, now: float | None) -> float:
        return self._store.pause(service, seconds, now)

    def paused_after(self, service: str, slot_at: float) -> bool:
        return self._store.paused_after(service, slot_at)


def acquire_and_record(
    url: str, service: str, requests: int, per_seconds: float, count: int, start: Event
) -> None:
    store = RecordingStore(PostgresRateLimitStore(get_pool(url)))
    limiter = RateLimiter(
        service,
        RateLimit(requests=requests, per_seconds=per_seconds, max_wait_seconds=60),
        store,
        source_id="worker",
    )
    start.wait(30)
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(count):
            limiter.acquire()
            # The slot granted (no pause here, so the last one) and the moment the request
            # would go out, both on the server's clock shared by both workers.
            conn.execute(
                "INSERT INTO limiter_grants (slot_at, at) "
                "VALUES (to_timestamp(%s::float8), clock_timestamp())",
                (store.slots[-1],),
            )
    close_all_pools()


def pause_service(url: str, service: str, seconds: float, now: float) -> None:
    clock = FakeClock(now)
    limiter = RateLimiter(
        service,
        RateLimit(requests=1, per_seconds=1),
        PostgresRateLimitStore(get_pool(url)),
        source_id="worker",
        clock=clock,
    )
    limiter.pause(seconds)
    close_all_pools()


def hold_source_lock(url: str, source_id: str, held: Event) -> None:
    """Take the lock and keep it until the process is killed."""
    with source_lock(get_pool(url), source_id, wait_seconds=0):
        held.set()
        time.sleep(600)


def race_for_first_slots(
    store: RateLimitStore, services: list[str], limit: RateLimit, barrier: Barrier
) -> list[tuple[str, float | None]]:
    """Acquire one slot of each service in turn, every caller released at once by `barrier`:
    the first use of each service is a fresh race to create its row. Returns each service with
    the slot granted, or with None and the refusal logged."""
    outcomes: list[tuple[str, float | None]] = []
    for service in services:
        recording = RecordingStore(store)
        limiter = RateLimiter(service, limit, recording, source_id="racer")
        barrier.wait(60)
        try:
            limiter.acquire()
        except RateLimitWaitExceeded:
            outcomes.append((service, None))
        else:
            outcomes.append((service, recording.slots[-1]))
    return outcomes


def race_in_process(
    url: str, services: list[str], limit: RateLimit, barrier: Barrier, results: Queue
) -> None:
    store = PostgresRateLimitStore(get_pool(url))
    try:
        results.put(race_for_first_slots(store, services, limit, barrier))
    except BaseException as exc:
        results.put(exc)
        raise
    finally:
        close_all_pools()
