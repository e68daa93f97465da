"""An ingest process killed with SIGKILL mid-run, then the pipeline run again: nothing lost,
nothing duplicated, and the dead run's ledger row closed as AbandonedRun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import dagster as dg
from psycopg_pool import ConnectionPool

from va_signals.assets import build_pipeline
from va_signals.catalog import Catalog
from va_signals.jobs import daily_signals_job
from va_signals.launch import run_daily_signals
from va_signals.resources import DatabaseResource, HttpResource
from va_signals_tests.faults import upstream as up
from va_signals_tests.faults.harness import (
    LDA_KEPT,
    duplicated_keys,
    ledger,
    stored,
    summary,
)
from va_signals_tests.faults.upstream import LDA_PATH, FakeUpstream
from va_signals_tests.recordings import PROJECT_ROOT

LDA = "lda_filings"


def _advisory_locks(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = current_database()"
        ).fetchone()[0]


def _wait_until(condition: Callable[[], bool], *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_killed_ingest_is_closed_as_abandoned_and_the_rerun_loses_nothing(
    upstream: FakeUpstream, catalog: Catalog, pool: ConnectionPool, db: str, dagster_instance
) -> None:
    # Page 3 never answers; the process waits on it until it is killed.
    upstream.fail(LDA_PATH, up.hang(60), page=3, times=1)
    process = subprocess.Popen(
        [sys.executable, "-m", "va_signals_tests.faults.ingest_entry", upstream.base_url, db, LDA],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert upstream.wait_for(LDA_PATH, 3, timeout=30), process.communicate(timeout=5)
        # Pages 1 and 2 were committed before page 3 was asked for.
        assert stored(pool, LDA) == LDA_KEPT[0] + LDA_KEPT[1]
        running = ledger(pool, LDA)
        assert [(row["status"], row["pid"]) for row in running] == [("RUNNING", process.pid)]
        assert _advisory_locks(pool) == 1
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert ledger(pool, LDA)[0]["status"] == "RUNNING"
    # The dead session's source lock goes with it; the rerun must not wait for it.
    assert _wait_until(lambda: _advisory_locks(pool) == 0, seconds=10)

    definitions = dg.Definitions(
        assets=[build_pipeline(catalog)],
        jobs=[daily_signals_job],
        resources={"database": DatabaseResource(url=db), "http": HttpResource()},
    )
    outcome = run_daily_signals(
        select=[LDA], instance=dagster_instance, definitions=definitions, catalog=catalog
    )

    assert outcome.success, outcome.step_failures
    abandoned, rerun = ledger(pool, LDA)
    assert summary(abandoned) == ("ERROR", "AbandonedRun", 0, 0, 0, 0)
    assert abandoned["ended_at"] is not None
    # The rerun starts over (no watermark yet) and finds pages 1 and 2 already stored.
    assert summary(rerun) == ("SUCCESS", None, 3, LDA_KEPT[2], 0, LDA_KEPT[0] + LDA_KEPT[1])
    assert [row["status"] for row in outcome.source_runs] == ["SUCCESS"]
    assert upstream.pages_requested(LDA_PATH) == [1, 2, 3, 1, 2, 3]
    assert stored(pool, LDA) == sum(LDA_KEPT) and duplicated_keys(pool) == 0
