"""What guards a source before its first request: the per-source advisory lock and the breaker
pre-check, alone and inside the Dagster ingest step against a real server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from multiprocessing.context import SpawnContext
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from va_signals.assets import build_pipeline
from va_signals.assets.pipeline import GRAPH_NAME
from va_signals.catalog import Catalog, RateLimit, RetryPolicy, default_catalog
from va_signals.db.breakers import PostgresBreakerStore
from va_signals.db.locks import SourceBusy, source_lock, source_lock_key
from va_signals.jobs import DAILY_SIGNALS_JOB, daily_signals_job
from va_signals.resilience.breaker import CircuitBreaker
from va_signals.resilience.errors import UpstreamUnavailable
from va_signals.resources import DatabaseResource, HttpResource
from va_signals_tests.resilience import workers
from va_signals_tests.resilience.server import Reply, ScriptedServer, scripted_server

SOURCE = "ecfr_title38"
TITLES_PATH = "/api/versioner/v1/titles.json"
TITLES = (
    Path(__file__).resolve().parents[2] / "examples" / "recordings" / "ecfr" / "titles.json"
).read_bytes()


def lock_is_free(db: str, source_id: str) -> bool:
    """Ask from a connection of our own, as another process would."""
    key = source_lock_key(source_id)
    with psycopg.connect(db, autocommit=True) as conn:
        free = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if free:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    return free


def test_the_lock_key_is_pinned_so_every_process_and_release_agrees() -> None:
    # Not Python's hash(), which differs per process; a key that changed between releases
    # would let an old and a new run of one source overlap.
    assert source_lock_key("federal_register_va") == -427876621586714751
    assert source_lock_key("ecfr_title38") != source_lock_key("ecfr_title37")
    assert -(2**63) <= source_lock_key("ecfr_title38") < 2**63


def test_a_second_holder_waits_a_bounded_time_then_gets_source_busy(
    pool: ConnectionPool,
) -> None:
    with source_lock(pool, SOURCE, wait_seconds=0):
        started = time.monotonic()
        with pytest.raises(SourceBusy) as busy:
            with source_lock(pool, SOURCE, wait_seconds=0.4, poll_seconds=0.1):
                pytest.fail("the body must not run while another holder has the lock")
        waited = time.monotonic() - started

    assert 0.4 <= waited < 2.0
    assert str(busy.value).startswith(
        f"source {SOURCE!r}: another run holds its lock (still held after waiting 0.4s)"
    )


def test_the_lock_is_released_when_the_body_fails(pool: ConnectionPool, db: str) -> None:
    with pytest.raises(RuntimeError, match="adapter exploded"):
        with source_lock(pool, SOURCE):
            assert not lock_is_free(db, SOURCE)
            raise RuntimeError("adapter exploded")

    assert lock_is_free(db, SOURCE)


def test_a_waiting_holder_gets_the_lock_once_the_first_finishes(pool: ConnectionPool) -> None:
    first_done = threading.Event()

    def first() -> None:
        with source_lock(pool, SOURCE):
            first_done.wait(5)
            time.sleep(0.3)

    holder = threading.Thread(target=first)
    holder.start()
    time.sleep(0.1)
    first_done.set()
    with source_lock(pool, SOURCE, wait_seconds=5, poll_seconds=0.05):
        entered = True
    holder.join(5)

    assert entered


def test_a_killed_holder_releases_its_lock(db: str, spawn: SpawnContext) -> None:
    held = spawn.Event()
    holder = spawn.Process(target=workers.hold_source_lock, args=(db, SOURCE, held))
    holder.start()
    try:
        assert held.wait(60), "the holder process never took the lock"
        assert not lock_is_free(db, SOURCE)
    finally:
        holder.kill()  # SIGKILL: no finally block runs, the session just ends
        holder.join(10)

    deadline = time.monotonic() + 5
    while not lock_is_free(db, SOURCE):
        assert time.monotonic() < deadline, "the server kept a dead session's lock"
        time.sleep(0.05)


# -- inside the Dagster ingest step ------------------------------------------------------------


@pytest.fixture
def server() -> ScriptedServer:
    with scripted_server() as running:
        running.answer(TITLES_PATH, Reply(200, TITLES))
        yield running


def local_catalog(server: ScriptedServer) -> Catalog:
    """The shipped eCFR source with its service pointed at the local server."""
    catalog = default_catalog()
    source = catalog.source(SOURCE)
    service = catalog.service(source.service).model_copy(
        update={
            "base_url": server.base_url,
            "rate_limit": RateLimit(requests=1000, per_seconds=1),
            "retry": RetryPolicy(max_attempts=1),
        }
    )
    return Catalog(services=(service,), sources=(source,))


def run_job(catalog: Catalog, instance: dg.DagsterInstance, lock_wait: float = 0.3) -> str:
    definitions = dg.Definitions(
        assets=[build_pipeline(catalog)],
        jobs=[daily_signals_job],
        resources={"database": DatabaseResource(), "http": HttpResource()},
    )
    config = {"source_lock_wait_seconds": lock_wait}
    result = definitions.resolve_job_def(DAILY_SIGNALS_JOB).execute_in_process(
        run_config={"ops": {GRAPH_NAME: {"ops": {"ingest_ecfr": {"config": config}}}}},
        instance=instance,
        raise_on_error=False,
    )
    return result.run_id


def source_runs(pool: ConnectionPool, run_id: str) -> list[dict]:
    with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM source_runs WHERE run_id = %s ORDER BY id", (run_id,))
        return list(cur.fetchall())


def test_a_healthy_run_goes_through_the_shared_breaker_limiter_and_lock(
    server: ScriptedServer, pool: ConnectionPool, db: str, dagster_instance: dg.DagsterInstance
) -> None:
    catalog = local_catalog(server)
    service = catalog.services[0].name

    run_id = run_job(catalog, dagster_instance)

    [run] = source_runs(pool, run_id)
    assert (run["status"], run["error_class"], run["requests"]) == ("SUCCESS", None, 1)
    assert run["latency_p50_ms"] is not None
    assert server.count(TITLES_PATH) == 1
    with pool.connection() as conn:
        assert conn.execute(
            "SELECT granted FROM rate_limits WHERE service = %s", (service,)
        ).fetchone() == (1,)
        assert conn.execute(
            "SELECT state, window_successes FROM breaker_state WHERE service = %s", (service,)
        ).fetchone() == ("CLOSED", 1)
    assert lock_is_free(db, SOURCE)


def test_a_source_whose_breaker_is_open_is_skipped_without_a_request(
    server: ScriptedServer, pool: ConnectionPool, dagster_instance: dg.DagsterInstance
) -> None:
    catalog = local_catalog(server)
    service = catalog.services[0]
    breaker = CircuitBreaker(service.name, service.breaker, PostgresBreakerStore(pool))
    failure = UpstreamUnavailable(SOURCE, service.name, "", "HTTP 503", 503)
    for _ in range(service.breaker.failure_threshold):
        breaker.record_failure(failure)

    run_id = run_job(catalog, dagster_instance)

    [run] = source_runs(pool, run_id)
    assert (run["status"], run["error_class"], run["requests"], run["pages"]) == (
        "ERROR",
        "BreakerOpen",
        0,
        0,
    )
    assert (run["latency_p50_ms"], run["latency_max_ms"]) == (None, None)
    assert run["ended_at"] is not None
    assert run["error_message"].startswith(
        f"source {SOURCE!r}: {service.name}: skipped: breaker is OPEN until "
    )
    assert "after: UpstreamUnavailable" in run["error_message"]
    assert server.count(TITLES_PATH) == 0
    with pool.connection() as conn:
        state, leases = conn.execute(
            "SELECT state, probe_leases FROM breaker_state WHERE service = %s", (service.name,)
        ).fetchone()
    assert (state, leases) == ("OPEN", {})


def test_a_source_held_by_another_run_is_recorded_as_busy(
    server: ScriptedServer, pool: ConnectionPool, dagster_instance: dg.DagsterInstance
) -> None:
    catalog = local_catalog(server)

    with source_lock(pool, SOURCE, wait_seconds=0):  # the other run, mid-ingest
        run_id = run_job(catalog, dagster_instance, lock_wait=0.3)

    [run] = source_runs(pool, run_id)
    assert (run["status"], run["error_class"], run["requests"]) == ("ERROR", "SourceBusy", 0)
    assert "another run holds its lock (still held after waiting 0.3s)" in run["error_message"]
    assert server.count(TITLES_PATH) == 0


def test_two_concurrent_runs_of_a_source_ingest_it_once(
    server: ScriptedServer,
    pool: ConnectionPool,
    db: str,
    dagster_instance: dg.DagsterInstance,
) -> None:
    # The first run's request hangs for a moment, so it is mid-ingest when the second starts.
    server.answer(TITLES_PATH, Reply(200, TITLES, delay=1.5))
    catalog = local_catalog(server)
    first_run: list[str] = []
    first = threading.Thread(
        target=lambda: first_run.append(run_job(catalog, dagster_instance, lock_wait=0))
    )
    first.start()
    deadline = time.monotonic() + 30
    while server.count(TITLES_PATH) == 0:
        assert time.monotonic() < deadline, "the first run never made its request"
        time.sleep(0.02)

    second_run = run_job(catalog, dagster_instance, lock_wait=0.2)
    first.join(60)

    [first_row] = source_runs(pool, first_run[0])
    [second_row] = source_runs(pool, second_run)
    assert (first_row["status"], first_row["requests"]) == ("SUCCESS", 1)
    assert (second_row["status"], second_row["error_class"], second_row["requests"]) == (
        "ERROR",
        "SourceBusy",
        0,
    )
    assert server.count(TITLES_PATH) == 1
    assert lock_is_free(db, SOURCE)
