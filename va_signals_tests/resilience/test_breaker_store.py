"""The shared breaker on a real PostgreSQL: persisted, shared by processes, never serializing
calls, and failing closed when its state cannot be read."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing.context import SpawnContext

import psycopg_pool
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from va_signals.catalog.models import BreakerPolicy
from va_signals.db.breakers import PostgresBreakerStore, breaker_events
from va_signals.resilience.breaker import CircuitBreaker, CircuitState
from va_signals.resilience.errors import BreakerOpen, BreakerRecovering, UpstreamUnavailable
from va_signals_tests.resilience import workers
from va_signals_tests.resilience.clocks import START, FakeClock

SERVICE = "api.example.gov"
POLICY = BreakerPolicy(
    failure_threshold=3,
    open_seconds=10,
    max_open_seconds=35,
    half_open_probes=1,
    half_open_timeout_seconds=30,
    recovery_steps=(0.5, 1.0),
    recovery_step_calls=2,
)
ERROR = UpstreamUnavailable("src", SERVICE, "http://127.0.0.1/x", "HTTP 503", 503)


def make_breaker(
    pool: ConnectionPool,
    clock: FakeClock | None = None,
    policy: BreakerPolicy = POLICY,
    source_id: str = "src",
) -> CircuitBreaker:
    if clock is None:
        return CircuitBreaker(SERVICE, policy, PostgresBreakerStore(pool), source_id=source_id)
    return CircuitBreaker(
        SERVICE, policy, PostgresBreakerStore(pool), source_id=source_id, clock=clock
    )


def row(pool: ConnectionPool) -> dict:
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute("SELECT * FROM breaker_state WHERE service = %s", (SERVICE,)).fetchone()
    assert found is not None
    return found


def events(pool: ConnectionPool) -> list[tuple[str, str]]:
    with pool.connection() as conn:
        return [(e["from_state"], e["to_state"]) for e in breaker_events(conn, service=SERVICE)]


def call(breaker: CircuitBreaker, ok: bool) -> None:
    breaker.before_call()
    if ok:
        breaker.record_success()
    else:
        breaker.record_failure(ERROR)


def test_every_transition_is_stored_in_the_row_and_recorded_as_an_event(
    pool: ConnectionPool, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make_breaker(pool, clock)
    caplog.set_level(logging.INFO)

    for _ in range(3):
        call(breaker, ok=False)
    stored = row(pool)
    assert (stored["state"], stored["reopen_count"], stored["consecutive_failures"]) == (
        "OPEN",
        0,
        0,
    )
    assert stored["opened_at"].timestamp() == START
    assert stored["open_until"].timestamp() == START + 10
    assert "UpstreamUnavailable" in stored["last_failure"]

    clock.advance(10)
    call(breaker, ok=False)  # the probe fails: open again, for twice as long
    assert (row(pool)["state"], row(pool)["reopen_count"]) == ("OPEN", 1)
    assert row(pool)["open_until"].timestamp() == START + 10 + 20

    clock.advance(20)
    call(breaker, ok=True)  # the probe succeeds: closed, ramping up at 50%
    stored = row(pool)
    assert (stored["state"], stored["recovery_step"], stored["probe_leases"]) == ("CLOSED", 0, {})

    call(breaker, ok=False)  # a failure while ramping re-opens
    assert (row(pool)["state"], row(pool)["reopen_count"]) == ("OPEN", 2)

    assert events(pool) == [
        ("CLOSED", "OPEN"),
        ("OPEN", "HALF_OPEN"),
        ("HALF_OPEN", "OPEN"),
        ("OPEN", "HALF_OPEN"),
        ("HALF_OPEN", "CLOSED"),
        ("CLOSED", "OPEN"),
    ]
    with pool.connection() as conn:
        first = breaker_events(conn, service=SERVICE)[0]
    assert (first["source_id"], first["at"].timestamp()) == ("src", START)
    assert first["reason"].startswith("3 consecutive failures, last: UpstreamUnavailable")
    # One log line per transition, naming the source and the service.
    transitions = [r.getMessage() for r in caplog.records if " -> " in r.getMessage()]
    assert len(transitions) == 6
    assert transitions[0].startswith(f"src: breaker of {SERVICE} CLOSED -> OPEN: 3 consecutive")


def test_a_new_breaker_object_finds_the_breaker_open(
    pool: ConnectionPool, clock: FakeClock
) -> None:
    opener = make_breaker(pool, clock)
    for _ in range(3):
        call(opener, ok=False)

    # A new process: new store, new breaker object, nothing shared but the database.
    newcomer = make_breaker(pool, clock, source_id="other_source")

    with pytest.raises(BreakerOpen, match="breaker is OPEN for 10s more"):
        newcomer.before_call()
    with pytest.raises(BreakerOpen, match="skipped: breaker is OPEN until 2027-01-15T08:00:10Z"):
        newcomer.check()
    assert row(pool)["state"] == "OPEN"  # looking did not reset it


def test_a_separate_process_finds_the_breaker_open(
    pool: ConnectionPool, db: str, spawn: SpawnContext
) -> None:
    breaker = make_breaker(pool)  # the server's clock, as in production
    for _ in range(3):
        call(breaker, ok=False)

    with ProcessPoolExecutor(1, mp_context=spawn) as other:
        verdict = other.submit(workers.breaker_verdict, db, SERVICE, POLICY.model_dump_json())

    assert verdict.result(timeout=60).startswith(f"OPEN: source '': {SERVICE}: breaker is OPEN")


def test_failures_recorded_by_two_processes_at_once_are_all_counted(
    pool: ConnectionPool, db: str, spawn: SpawnContext
) -> None:
    start = spawn.Event()
    per_process = 60
    processes = [
        spawn.Process(target=workers.record_failures, args=(db, SERVICE, per_process, start))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(60)

    assert [process.exitcode for process in processes] == [0, 0]
    stored = row(pool)
    assert stored["state"] == "CLOSED"
    assert stored["window_failures"] == 2 * per_process
    assert stored["consecutive_failures"] == 2 * per_process


def test_calls_through_one_closed_breaker_run_at_the_same_time(pool: ConnectionPool) -> None:
    breaker = make_breaker(pool, policy=POLICY.model_copy(update={"failure_threshold": 100}))
    running = 0
    most_at_once = 0
    lock = threading.Lock()

    def guarded_call(_: int) -> None:
        nonlocal running, most_at_once
        breaker.before_call()
        with lock:
            running += 1
            most_at_once = max(most_at_once, running)
        time.sleep(0.3)  # the HTTP call, during which no breaker lock may be held
        with lock:
            running -= 1
        breaker.record_success()

    with ThreadPoolExecutor(8) as threads:
        list(threads.map(guarded_call, range(8)))

    assert most_at_once > 1
    assert row(pool)["window_successes"] == 8


def test_two_breaker_objects_share_the_half_open_probe_limit(
    pool: ConnectionPool, clock: FakeClock
) -> None:
    first = make_breaker(pool, clock, source_id="first")
    for _ in range(3):
        call(first, ok=False)
    clock.advance(10)
    second = make_breaker(pool, clock, source_id="second")

    first.before_call()  # takes the only probe slot
    with pytest.raises(BreakerOpen, match="HALF_OPEN with 1 probe"):
        second.before_call()

    assert len(row(pool)["probe_leases"]) == 1
    first.record_success()
    assert row(pool)["state"] == "CLOSED"


def test_a_probe_lost_with_its_process_is_replaced_after_its_lease(
    pool: ConnectionPool, clock: FakeClock
) -> None:
    crashed = make_breaker(pool, clock, source_id="crashed")
    for _ in range(3):
        call(crashed, ok=False)
    clock.advance(10)
    crashed.before_call()  # ...and its process dies before reporting
    survivor = make_breaker(pool, clock, source_id="survivor")
    with pytest.raises(BreakerOpen):
        survivor.before_call()

    clock.advance(POLICY.half_open_timeout_seconds)
    survivor.before_call()
    survivor.record_success()

    assert row(pool)["state"] == "CLOSED"


def test_calls_beyond_the_recovery_share_are_refused_as_recovering(
    pool: ConnectionPool, clock: FakeClock
) -> None:
    breaker = make_breaker(pool, clock)
    for _ in range(3):
        call(breaker, ok=False)
    clock.advance(10)
    call(breaker, ok=True)

    breaker.before_call()  # 50%: the first is admitted...
    with pytest.raises(BreakerRecovering, match="recovering: admitting 50% of calls"):
        breaker.before_call()  # ...the second is not

    stored = row(pool)
    assert (stored["step_admitted"], stored["step_refused"]) == (1, 1)


@pytest.fixture
def closed_pool(db: str) -> Iterator[ConnectionPool]:
    pool = ConnectionPool(db, min_size=1, max_size=1, open=True)
    pool.close()
    yield pool


@pytest.mark.parametrize(
    ("attempt", "verb"),
    [
        (lambda breaker: breaker.before_call(), "read"),
        (lambda breaker: breaker.check(), "read"),
        (lambda breaker: breaker.record_success(), "update"),
        (lambda breaker: breaker.record_failure(ERROR), "update"),
    ],
    ids=["before_call", "check", "record_success", "record_failure"],
)
def test_an_unreadable_state_fails_closed_and_logs_its_cause(
    closed_pool: ConnectionPool, caplog: pytest.LogCaptureFixture, attempt, verb: str
) -> None:
    breaker = make_breaker(closed_pool)

    with pytest.raises(BreakerOpen) as refused:
        attempt(breaker)

    cause = f"cannot {verb} the breaker of {SERVICE}: PoolClosed: the pool 'pool-"
    assert str(refused.value).startswith(
        f"source 'src': {SERVICE}: breaker state unreadable, call refused to fail closed ({cause}"
    )
    assert isinstance(refused.value.__cause__.__cause__, psycopg_pool.PoolClosed)
    [logged] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.startswith(
        f"src: breaker state of {SERVICE} unreadable, refusing the call: {cause}"
    )


def test_a_missing_table_fails_closed_and_logs_its_cause(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    with ConnectionPool(empty_database, min_size=1, max_size=2) as bare:
        breaker = make_breaker(bare)

        with pytest.raises(BreakerOpen, match="breaker state unreadable.*UndefinedTable"):
            breaker.before_call()
        with pytest.raises(BreakerOpen, match="breaker state unreadable.*UndefinedTable"):
            breaker.record_success()

    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 2
    assert all('relation "breaker_state" does not exist' in line for line in logged)


def test_the_state_machine_enum_matches_the_table_check(pool: ConnectionPool) -> None:
    with pool.connection() as conn:
        definition = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'breaker_state_state_check'"
        ).fetchone()[0]
    assert all(f"'{state.value}'" in definition for state in CircuitState)


@pytest.mark.parametrize(
    "corruption",
    [
        "state = 'OPEN', opened_at = now(), open_until = 'infinity'",
        """probe_leases = '{"slot": "not a time"}'""",
    ],
)
def test_a_corrupt_row_fails_closed_then_recovers_when_fixed(
    pool: ConnectionPool, corruption: str
) -> None:
    breaker = make_breaker(pool)
    breaker.before_call()  # creates the row
    breaker.record_success()
    with pool.connection() as conn:
        conn.execute(f"UPDATE breaker_state SET {corruption} WHERE service = %s", (SERVICE,))

    with pytest.raises(BreakerOpen, match="breaker_state row of api.example.gov is unreadable"):
        breaker.before_call()

    with pool.connection() as conn:
        conn.execute("DELETE FROM breaker_state WHERE service = %s", (SERVICE,))
    breaker.before_call()
    breaker.record_success()
