"""PostgreSQL storage of circuit breakers: one `breaker_state` row per service, changed only
under its row lock in a short transaction, each change of state appended to `breaker_events`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime

import psycopg
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from va_signals.resilience.breaker import (
    BreakerState,
    BreakerStateError,
    CircuitState,
    Step,
    Transition,
)

# Times travel as Unix seconds (float8) so the state machine never handles time zones. Both
# queries are built from these constants only; no outside value becomes SQL text.
_COLUMNS = """
    EXTRACT(EPOCH FROM clock_timestamp())::float8 AS server_now,
    b.state,
    EXTRACT(EPOCH FROM b.opened_at)::float8 AS opened_at,
    EXTRACT(EPOCH FROM b.open_until)::float8 AS open_until,
    b.reopen_count,
    b.consecutive_failures,
    EXTRACT(EPOCH FROM b.window_started_at)::float8 AS window_started_at,
    b.window_successes,
    b.window_failures,
    EXTRACT(EPOCH FROM b.half_open_since)::float8 AS half_open_since,
    b.probe_leases,
    b.probe_successes,
    b.recovery_step,
    b.step_successes,
    b.step_admitted,
    b.step_refused,
    b.last_failure
"""
# Always one row: a service with no row yet reads as a fresh CLOSED breaker.
_SELECT = (
    "SELECT" + _COLUMNS + "FROM (SELECT 1) AS one "
    "LEFT JOIN breaker_state AS b ON b.service = %(service)s"
)
_SELECT_FOR_UPDATE = (
    "SELECT" + _COLUMNS + "FROM breaker_state AS b WHERE b.service = %(service)s FOR UPDATE"
)
_UPDATE = """
    UPDATE breaker_state SET
        state = %(state)s,
        opened_at = to_timestamp(%(opened_at)s::float8),
        open_until = to_timestamp(%(open_until)s::float8),
        reopen_count = %(reopen_count)s,
        consecutive_failures = %(consecutive_failures)s,
        window_started_at = to_timestamp(%(window_started_at)s::float8),
        window_successes = %(window_successes)s,
        window_failures = %(window_failures)s,
        half_open_since = to_timestamp(%(half_open_since)s::float8),
        probe_leases = %(probe_leases)s,
        probe_successes = %(probe_successes)s,
        recovery_step = %(recovery_step)s,
        step_successes = %(step_successes)s,
        step_admitted = %(step_admitted)s,
        step_refused = %(step_refused)s,
        last_failure = %(last_failure)s,
        updated_at = clock_timestamp()
    WHERE service = %(service)s
"""
_INSERT_EVENT = """
    INSERT INTO breaker_events (service, from_state, to_state, reason, source_id, at)
    VALUES (%s, %s, %s, %s, %s, to_timestamp(%s::float8))
"""


class PostgresBreakerStore:
    """The `BreakerStore` every process shares; safe to use from many threads at once."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def read(self, service: str) -> tuple[BreakerState, float]:
        try:
            with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(_SELECT, {"service": service}).fetchone()
        except psycopg.Error as exc:
            raise BreakerStateError(
                f"cannot read the breaker of {service}: {type(exc).__name__}: {exc}"
            ) from exc
        assert row is not None
        return _parsed(service, row), row["server_now"]

    def change(
        self,
        service: str,
        decide: Callable[[BreakerState, float], Step],
        source_id: str | None,
    ) -> Step:
        try:
            with self._pool.connection() as conn:
                return _change(conn, service, decide, source_id)
        except psycopg.Error as exc:
            raise BreakerStateError(
                f"cannot update the breaker of {service}: {type(exc).__name__}: {exc}"
            ) from exc
        except _CORRUPT_ROW as exc:
            raise _corrupt(service, exc) from exc


def _change(
    conn: Connection,
    service: str,
    decide: Callable[[BreakerState, float], Step],
    source_id: str | None,
) -> Step:
    # The row lock makes read-decide-write one step for every process; it is held for the
    # few statements below only, never across the guarded HTTP call.
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT_FOR_UPDATE, {"service": service}).fetchone()
        if row is None:
            cur.execute(
                "INSERT INTO breaker_state (service) VALUES (%s) ON CONFLICT (service) DO NOTHING",
                (service,),
            )
            row = cur.execute(_SELECT_FOR_UPDATE, {"service": service}).fetchone()
        assert row is not None
        state = _parsed(service, row)
        step = decide(state, row["server_now"])
        if step.state != state:
            cur.execute(_UPDATE, _params(service, step.state))
        _insert_events(cur, service, step.transitions, source_id)
    return step


def _insert_events(
    cur: psycopg.Cursor,
    service: str,
    transitions: Sequence[Transition],
    source_id: str | None,
) -> None:
    for transition in transitions:
        cur.execute(
            _INSERT_EVENT,
            (
                service,
                transition.from_state.value,
                transition.to_state.value,
                transition.reason,
                source_id or None,
                transition.at,
            ),
        )


# What a hand-edited or corrupted row raises while it is turned into a state.
_CORRUPT_ROW = (ValueError, TypeError, AttributeError, OverflowError)


def _parsed(service: str, row: dict) -> BreakerState:
    try:
        state = _state(row)
        times = (state.opened_at, state.open_until, state.half_open_since, state.window_started_at)
        if any(t is not None and not math.isfinite(t) for t in times):
            raise ValueError("a time in the row is not a finite instant")
        return state
    except _CORRUPT_ROW as exc:
        raise _corrupt(service, exc) from exc


def _corrupt(service: str, exc: Exception) -> BreakerStateError:
    # The breaker then fails closed for the call; fixing or deleting the row restores it.
    return BreakerStateError(
        f"the breaker_state row of {service} is unreadable ({type(exc).__name__}: {exc}); "
        "fix or delete that row"
    )


def _state(row: dict) -> BreakerState:
    if row["state"] is None:
        return BreakerState()
    leases = row["probe_leases"] or {}
    return BreakerState(
        state=CircuitState(row["state"]),
        opened_at=row["opened_at"],
        open_until=row["open_until"],
        reopen_count=row["reopen_count"],
        consecutive_failures=row["consecutive_failures"],
        window_started_at=row["window_started_at"],
        window_successes=row["window_successes"],
        window_failures=row["window_failures"],
        half_open_since=row["half_open_since"],
        probe_leases=tuple(sorted(((str(k), float(v)) for k, v in leases.items()), key=_expiry)),
        probe_successes=row["probe_successes"],
        recovery_step=row["recovery_step"],
        step_successes=row["step_successes"],
        step_admitted=row["step_admitted"],
        step_refused=row["step_refused"],
        last_failure=row["last_failure"],
    )


def _params(service: str, state: BreakerState) -> dict:
    return {
        "service": service,
        "state": state.state.value,
        "opened_at": state.opened_at,
        "open_until": state.open_until,
        "reopen_count": state.reopen_count,
        "consecutive_failures": state.consecutive_failures,
        "window_started_at": state.window_started_at,
        "window_successes": state.window_successes,
        "window_failures": state.window_failures,
        "half_open_since": state.half_open_since,
        # Token -> lease expiry in Unix seconds.
        "probe_leases": Jsonb(dict(state.probe_leases)),
        "probe_successes": state.probe_successes,
        "recovery_step": state.recovery_step,
        "step_successes": state.step_successes,
        "step_admitted": state.step_admitted,
        "step_refused": state.step_refused,
        "last_failure": state.last_failure,
    }


def _expiry(lease: tuple[str, float]) -> float:
    return lease[1]


def breaker_events(
    conn: Connection, *, service: str | None = None, since: datetime | None = None
) -> list[dict]:
    """Changes of breaker state, oldest first, optionally of one service or since a time."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT id, service, from_state, to_state, reason, source_id, at
            FROM breaker_events
            WHERE (%(service)s::text IS NULL OR service = %(service)s)
              AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
            ORDER BY at, id
            """,
            {"service": service, "since": since},
        )
        return list(cur.fetchall())


__all__ = ["PostgresBreakerStore", "breaker_events"]
