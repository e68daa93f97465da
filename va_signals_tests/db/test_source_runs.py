"""Closing runs left RUNNING: dead local processes, and dead runs of other hosts by their lock."""

from __future__ import annotations

import socket

import psycopg

from va_signals.db.locks import source_lock_key
from va_signals.db.source_runs import close_abandoned_runs

DEAD_PID = 4_000_000  # above Linux's pid_max, so no process has it


def _running(conn: psycopg.Connection, source_id: str, pid: int, host: str) -> int:
    return conn.execute(
        "INSERT INTO source_runs (source_id, status, pid, host) VALUES (%s, 'RUNNING', %s, %s) "
        "RETURNING id",
        (source_id, pid, host),
    ).fetchone()[0]


def test_runs_are_closed_only_when_their_run_is_gone(db: str) -> None:
    here = socket.gethostname()
    import os

    with psycopg.connect(db, autocommit=True) as holder, psycopg.connect(db) as conn:
        # A live run in another pod holds its source's lock for the whole ingest.
        holder.execute("SELECT pg_advisory_lock(%s)", (source_lock_key("remote_alive"),))
        ids = {
            "local_dead": _running(conn, "local_dead", DEAD_PID, here),
            "local_alive": _running(conn, "local_alive", os.getpid(), here),
            "remote_dead": _running(conn, "remote_dead", 1, "another-pod"),
            "remote_alive": _running(conn, "remote_alive", 1, "another-pod"),
        }
        conn.commit()

        closed = close_abandoned_runs(conn)
        conn.commit()
        statuses = dict(
            conn.execute(
                "SELECT source_id, status FROM source_runs WHERE id = ANY(%s)",
                (list(ids.values()),),
            ).fetchall()
        )
        lock_still_held = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0]

    assert closed == 2
    assert statuses == {
        "local_dead": "ERROR",
        "local_alive": "RUNNING",
        "remote_dead": "ERROR",
        "remote_alive": "RUNNING",
    }
    # The probe gave back every lock it took; only the live run's remains.
    assert lock_still_held == 1
