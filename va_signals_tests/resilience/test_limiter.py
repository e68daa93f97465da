"""The shared rate limiter on a real PostgreSQL: spacing across processes, bounded waits, and a
429 pause that holds every process."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.context import SpawnContext

import pytest
from psycopg_pool import ConnectionPool

from va_signals.catalog.models import RateLimit
from va_signals.db.rate_limits import PostgresRateLimitStore
from va_signals.resilience.errors import RateLimitWaitExceeded
from va_signals.resilience.limiter import SLOT_MARGIN, RateLimiter, slot_interval
from va_signals_tests.resilience import workers
from va_signals_tests.resilience.clocks import START, FakeClock

SERVICE = "lda.example.gov"
# One request every 10 s; waits of up to 25 s are acceptable.
SLOW = RateLimit(requests=1, per_seconds=10, max_wait_seconds=25)
# Its slots are 10 s apart plus the margin: 10.2 s.
GAP = 10 * (1 + SLOT_MARGIN)


def make_limiter(
    pool: ConnectionPool, clock: FakeClock, limit: RateLimit = SLOW, source_id: str = "src"
) -> RateLimiter:
    return RateLimiter(
        SERVICE, limit, PostgresRateLimitStore(pool), source_id=source_id, clock=clock
    )


def granted(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT granted FROM rate_limits WHERE service = %s", (SERVICE,)
        ).fetchone()[0]


def test_the_interval_uses_the_keyed_limit_only_when_a_key_is_set() -> None:
    lda = RateLimit(requests=15, per_seconds=60, requests_with_key=120)

    assert slot_interval(lda, has_key=False) == pytest.approx(4.0 * (1 + SLOT_MARGIN))
    assert slot_interval(lda, has_key=True) == pytest.approx(0.5 * (1 + SLOT_MARGIN))
    assert slot_interval(RateLimit(requests=5, per_seconds=1), has_key=True) == pytest.approx(
        0.2 * (1 + SLOT_MARGIN)
    )


def test_the_margin_costs_the_same_small_share_of_any_limit() -> None:
    # A fixed pad per slot would cost a fast limit far more than a slow one, and cap them all.
    for requests in (2, 50, 1000, 100_000):
        rate = 1 / slot_interval(RateLimit(requests=requests, per_seconds=1), has_key=False)
        assert rate / requests == pytest.approx(1 / (1 + SLOT_MARGIN))
        assert 0.98 <= rate / requests < 1


def test_a_request_over_the_limit_waits_for_its_slot_and_the_wait_is_logged(
    pool: ConnectionPool, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    limiter = make_limiter(pool, clock)

    first = limiter.acquire()
    second = limiter.acquire()

    assert first == 0.0
    assert second == pytest.approx(GAP)
    assert clock.slept == [pytest.approx(GAP)]
    assert granted(pool) == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"src: waited {GAP:.2f}s for a request slot of {SERVICE} (at its rate limit)"
    ]


def test_a_wait_beyond_max_wait_raises_and_takes_no_slot(
    pool: ConnectionPool, clock: FakeClock
) -> None:
    make_limiter(pool, clock).acquire()  # takes the slot at START; the next is 10.2 s away
    impatient = make_limiter(pool, clock, limit=SLOW.model_copy(update={"max_wait_seconds": 5}))

    with pytest.raises(RateLimitWaitExceeded) as refused:
        impatient.acquire()

    assert str(refused.value) == (
        f"source 'src': {SERVICE}: the next request slot is {GAP:.1f}s away (limit 1 per 10s), "
        "more than max_wait_seconds=5"
    )
    assert granted(pool) == 1
    # The refusal left the schedule alone: the next patient caller gets the 10.2 s slot.
    assert make_limiter(pool, clock).acquire() == pytest.approx(GAP)


def test_the_wait_is_bounded_by_max_wait_seconds(pool: ConnectionPool, clock: FakeClock) -> None:
    callers = [make_limiter(pool, FakeClock(START), source_id=f"s{i}") for i in range(4)]

    # Four callers at the same instant: slots at 0, 10.2, 20.4 s; the fourth would wait 30.6 s.
    waits = [caller.acquire() for caller in callers[:3]]
    with pytest.raises(RateLimitWaitExceeded, match=f"slot is {3 * GAP:.1f}s away"):
        callers[3].acquire()

    assert waits == pytest.approx([0.0, GAP, 2 * GAP])


def test_a_caller_that_will_not_wait_is_granted_an_idle_service_on_the_server_clock(
    pool: ConnectionPool,
) -> None:
    # max_wait_seconds=0: the free slot is "now", read again by every clock_timestamp() call,
    # and must never compare as later than itself.
    never_waits = RateLimit(requests=1000, per_seconds=1, max_wait_seconds=0)
    limiter = RateLimiter(SERVICE, never_waits, PostgresRateLimitStore(pool), source_id="src")

    for _ in range(20):
        assert limiter.acquire() == 0.0
        time.sleep(2 * limiter.interval)
    assert granted(pool) == 20


def test_a_caller_waking_late_moves_no_later_slot(pool: ConnectionPool) -> None:
    clocks = [FakeClock(START) for _ in range(3)]
    first, late, third = (make_limiter(pool, clock, source_id="s") for clock in clocks)
    first.acquire()
    # The second caller's slot is at +10.2 s, but it only wakes at +15 s and goes then...
    clocks[1].on_sleep = lambda seconds: clocks[1].advance(15 - seconds)
    late.acquire()
    assert clocks[1].now() == START + 15

    # ...which moves nothing: a caller asking at +15 s gets the next slot on the schedule,
    # +20.4 s, neither pulled toward the late caller's wake-up nor pushed after it.
    clocks[2].advance(15)
    assert third.acquire() == pytest.approx(2 * GAP - 15)
    assert granted(pool) == 3


@pytest.fixture
def grants_table(pool: ConnectionPool) -> Iterator[None]:
    with pool.connection() as conn:
        conn.execute(
            "CREATE TABLE limiter_grants (slot_at TIMESTAMPTZ NOT NULL, at TIMESTAMPTZ NOT NULL)"
        )
    yield
    with pool.connection() as conn:
        conn.execute("DROP TABLE limiter_grants")


def test_two_processes_together_never_exceed_the_limit_in_any_window(
    pool: ConnectionPool, db: str, spawn: SpawnContext, grants_table: None
) -> None:
    requests, per_seconds, per_process = 10, 1.0, 12
    start = spawn.Event()
    processes = [
        spawn.Process(
            target=workers.acquire_and_record,
            args=(db, SERVICE, requests, per_seconds, per_process, start),
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0]

    with pool.connection() as conn:
        grants = conn.execute("SELECT slot_at, at FROM limiter_grants ORDER BY slot_at").fetchall()
    slots = [slot_at.timestamp() for slot_at, _ in grants]

    assert len(slots) == 2 * per_process
    # The limit holds on the schedule: any window of per_seconds holds at most `requests`
    # slots, i.e. slot i and slot i+requests are always at least per_seconds apart...
    closest = min(slots[i + requests] - slots[i] for i in range(len(slots) - requests))
    assert closest >= per_seconds, f"{requests + 1} slots within {closest:.6f}s"
    # ...and no request goes before its slot. (How late each goes is up to the machine; the
    # slots' margin absorbs per_seconds * SLOT_MARGIN of it, see bench_resilience.)
    early = [(slot_at, at) for slot_at, at in grants if at < slot_at]
    assert early == []


def test_a_pause_set_by_one_process_holds_callers_in_another(
    pool: ConnectionPool, db: str, spawn: SpawnContext, clock: FakeClock
) -> None:
    with ProcessPoolExecutor(1, mp_context=spawn) as other:
        other.submit(workers.pause_service, db, SERVICE, 20.0, START).result(timeout=60)

    impatient = make_limiter(
        pool, FakeClock(START), limit=SLOW.model_copy(update={"max_wait_seconds": 5})
    )
    with pytest.raises(RateLimitWaitExceeded) as refused:
        impatient.acquire()
    assert "slot is 20.0s away (limit 1 per 10s, paused after a 429 for 20.0s more)" in str(
        refused.value
    )

    patient = make_limiter(pool, clock)
    waited = patient.acquire()

    assert waited == pytest.approx(20.0)
    assert clock.slept == [pytest.approx(20.0)]


def test_a_pause_arriving_while_a_caller_waits_sends_it_behind_the_pause(
    pool: ConnectionPool, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = make_limiter(pool, clock, limit=SLOW.model_copy(update={"max_wait_seconds": 60}))
    first.acquire()
    pauser = make_limiter(pool, clock, source_id="pauser")
    # While the next caller sleeps toward its slot at +10 s, a 429 pauses the service for 30 s.
    clock.on_sleep = lambda seconds: pauser.pause(30.0) if len(clock.slept) == 1 else None

    waited = first.acquire()

    # Slept to its old slot (10.2 s), found it inside the pause ending at 30 s, queued again
    # behind the pause: a new slot at 30 s, 19.8 s later.
    assert clock.slept == [pytest.approx(GAP), pytest.approx(30 - GAP)]
    assert waited == pytest.approx(30.0)
    assert any("was paused while waiting for a slot" in r.getMessage() for r in caplog.records)


def test_an_unreadable_rate_limit_state_fails_closed(
    db: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    closed = ConnectionPool(db, min_size=1, max_size=1)
    closed.close()
    limiter = make_limiter(closed, clock)

    with pytest.raises(RateLimitWaitExceeded, match="rate-limit state unreadable.*PoolClosed"):
        limiter.acquire()

    [logged] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.startswith(f"src: rate-limit state of {SERVICE} unreadable, not sending")


# Ten callers on a service nobody has used yet: its row is created by whichever is first while
# the others look for it. Several fresh services in a row make the race many times over.
RACE_THREADS, RACE_PROCESSES, RACE_ROUNDS = 8, 2, 6
RACERS = RACE_THREADS + RACE_PROCESSES
# Ten slots fit in 0.1 s, far inside max_wait: every caller must be granted its own slot.
RACE_LIMIT = RateLimit(requests=100, per_seconds=1, max_wait_seconds=10)


def test_callers_racing_to_first_use_a_service_are_all_granted_a_slot(
    db: str, spawn: SpawnContext, caplog: pytest.LogCaptureFixture
) -> None:
    services = [f"race-{round_}.example.gov" for round_ in range(RACE_ROUNDS)]
    barrier = spawn.Barrier(RACERS)
    results = spawn.Queue()
    processes = [
        spawn.Process(
            target=workers.race_in_process, args=(db, services, RACE_LIMIT, barrier, results)
        )
        for _ in range(RACE_PROCESSES)
    ]
    # A connection per thread, opened beforehand: none arrives late at the race to open one.
    threads_pool = ConnectionPool(db, min_size=RACE_THREADS, max_size=RACE_THREADS, open=False)
    threads_pool.open(wait=True)
    try:
        for process in processes:
            process.start()
        store = PostgresRateLimitStore(threads_pool)
        with ThreadPoolExecutor(RACE_THREADS) as threads:
            racing = [
                threads.submit(workers.race_for_first_slots, store, services, RACE_LIMIT, barrier)
                for _ in range(RACE_THREADS)
            ]
            outcomes = [outcome for thread in racing for outcome in thread.result(timeout=120)]
        for _ in processes:
            result = results.get(timeout=120)
            assert not isinstance(result, BaseException), f"a racing process failed: {result!r}"
            outcomes += result
        for process in processes:
            process.join(60)
        assert [process.exitcode for process in processes] == [0] * RACE_PROCESSES
        with threads_pool.connection() as conn:
            rows = conn.execute(
                "SELECT service, granted FROM rate_limits ORDER BY service"
            ).fetchall()
    finally:
        threads_pool.close()
        for process in processes:
            if process.is_alive():
                process.kill()

    refusals = [r.getMessage() for r in caplog.records if "max_wait_seconds" in r.getMessage()]
    assert refusals == []
    assert [service for service, slot_at in outcomes if slot_at is None] == []
    assert rows == [(service, RACERS) for service in services]
    # Each caller has its own slot, on one schedule: no two closer than the interval.
    interval = slot_interval(RACE_LIMIT, has_key=False)
    for service in services:
        slots = sorted(slot_at for name, slot_at in outcomes if name == service)
        assert len(slots) == RACERS
        closest = min(later - earlier for earlier, later in zip(slots, slots[1:], strict=False))
        assert closest >= interval - 1e-6, f"{service}: two slots {closest:.6f}s apart"
