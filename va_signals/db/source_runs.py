"""The `source_runs` ledger: one row per source materialization, opened first and always closed."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from enum import StrEnum

from psycopg import Connection
from psycopg.rows import dict_row

from va_signals.db.locks import source_lock_key


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    NO_DATA = "NO_DATA"
    ERROR = "ERROR"


@dataclass(frozen=True)
class RunOutcome:
    """What a finished source run reports into its ledger row."""

    status: RunStatus
    pages: int = 0
    records_new: int = 0
    records_updated: int = 0
    records_unchanged: int = 0
    # Records repeated within the run (same natural key), dropped before the upsert.
    records_duplicate: int = 0
    truncated: bool = False
    error_class: str | None = None
    error_message: str | None = None
    latency_p50_ms: int | None = None
    latency_max_ms: int | None = None
    requests: int = 0


def open_run(conn: Connection, source_id: str, run_id: str | None) -> int:
    """Insert a RUNNING row before any work, so a crash leaves a trace to close later."""
    row = conn.execute(
        "INSERT INTO source_runs (source_id, run_id, status, pid, host) "
        "VALUES (%s, %s, 'RUNNING', %s, %s) RETURNING id",
        (source_id, run_id, os.getpid(), socket.gethostname()),
    ).fetchone()
    return int(row[0])


def close_run(conn: Connection, source_run_id: int, outcome: RunOutcome) -> None:
    """Close a row with its outcome; ended_at and duration come from the database clock."""
    if outcome.status is RunStatus.RUNNING:
        raise ValueError("a run cannot be closed as RUNNING")
    conn.execute(
        """
        UPDATE source_runs SET
            status = %(status)s,
            ended_at = clock_timestamp(),
            duration_ms = (EXTRACT(EPOCH FROM clock_timestamp() - started_at) * 1000)::int,
            pages = %(pages)s,
            records_new = %(records_new)s,
            records_updated = %(records_updated)s,
            records_unchanged = %(records_unchanged)s,
            records_duplicate = %(records_duplicate)s,
            truncated = %(truncated)s,
            error_class = %(error_class)s,
            error_message = %(error_message)s,
            latency_p50_ms = %(latency_p50_ms)s,
            latency_max_ms = %(latency_max_ms)s,
            requests = %(requests)s
        WHERE id = %(id)s
        """,
        {
            "id": source_run_id,
            "status": outcome.status.value,
            "pages": outcome.pages,
            "records_new": outcome.records_new,
            "records_updated": outcome.records_updated,
            "records_unchanged": outcome.records_unchanged,
            "records_duplicate": outcome.records_duplicate,
            "truncated": outcome.truncated,
            "error_class": outcome.error_class,
            # PostgreSQL text cannot hold NUL, and an upstream's error body may carry one.
            "error_message": (outcome.error_message or "").replace("\x00", "")[:4000] or None,
            "latency_p50_ms": outcome.latency_p50_ms,
            "latency_max_ms": outcome.latency_max_ms,
            "requests": outcome.requests,
        },
    )


def close_abandoned_runs(conn: Connection) -> int:
    """Close as ERROR the RUNNING rows whose run is gone (a process killed mid-ingest).

    On this host a row is alive while its process is. A row of another host (another pod) is
    alive while its source's advisory lock is held: a live run holds it for its whole ingest,
    and PostgreSQL releases it when the dead run's connection drops.
    """
    here = socket.gethostname()
    rows = conn.execute(
        "SELECT id, source_id, pid, host FROM source_runs WHERE status = 'RUNNING'"
    ).fetchall()
    abandoned = []
    for run_id, source_id, pid, host in rows:
        if host == here:
            gone = pid is None or not _process_alive(pid)
        else:
            gone = not _source_lock_held(conn, source_id)
        if gone:
            abandoned.append(run_id)
    if abandoned:
        conn.execute(
            """
            UPDATE source_runs SET status = 'ERROR', ended_at = clock_timestamp(),
                duration_ms = (EXTRACT(EPOCH FROM clock_timestamp() - started_at) * 1000)::int,
                error_class = 'AbandonedRun',
                error_message = 'the process running this source ended before closing its run'
            WHERE id = ANY(%s) AND status = 'RUNNING'
            """,
            (abandoned,),
        )
    return len(abandoned)


def _source_lock_held(conn: Connection, source_id: str) -> bool:
    # Taking the lock and giving it straight back tells whether anyone else holds it.
    key = source_lock_key(source_id)
    acquired = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
    if acquired:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    return not acquired


def latest_runs(conn: Connection, source_ids: list[str] | None = None) -> list[dict]:
    """The most recent finished run of each source (or of the given ones), by source id."""
    with conn.cursor(row_factory=dict_row) as cur:
        # One short read per source, newest first on (source_id, ended_at): the runs in flight,
        # whose end is NULL, come first there and are skipped. Not DISTINCT ON over the sources'
        # whole history, which read and sorted every run they ever had.
        cur.execute(
            """
            SELECT latest.*
            FROM (
                SELECT DISTINCT unnest(
                    coalesce(%(ids)s::text[], ARRAY(SELECT DISTINCT source_id FROM source_runs))
                )
            ) AS wanted(source_id)
            CROSS JOIN LATERAL (
                SELECT * FROM source_runs AS sr
                WHERE sr.source_id = wanted.source_id AND sr.status <> 'RUNNING'
                ORDER BY sr.ended_at DESC
                LIMIT 1
            ) AS latest
            ORDER BY latest.source_id
            """,
            {"ids": source_ids},
        )
        return list(cur.fetchall())


def runs_of(conn: Connection, run_id: str) -> list[dict]:
    """Every ledger row written by one Dagster run, in source order."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM source_runs WHERE run_id = %s ORDER BY source_id, id", (run_id,))
        return list(cur.fetchall())


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "RunOutcome",
    "RunStatus",
    "close_abandoned_runs",
    "close_run",
    "latest_runs",
    "open_run",
    "runs_of",
]
