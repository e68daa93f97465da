"""PostgreSQL storage of rate limits: per service, the next free request slot and any pause, each
taken or set by one atomic statement so that every process draws from the same schedule."""

from __future__ import annotations

import psycopg
from psycopg_pool import ConnectionPool

from va_signals.resilience.limiter import RateLimitStateError, Reservation

# The caller's clock when it passes one (tests), else the server's: one clock for all hosts.
# clock_timestamp() is read when the expression runs, so after any wait for the row lock.
_NOW = "COALESCE(to_timestamp(%(now)s::float8), clock_timestamp())"
# The earliest moment a request may go: after the previous slot and after any pause.
_EARLIEST = "GREATEST(next_slot_at, paused_until, " + _NOW + ")"
_INTERVAL = "make_interval(secs => %(interval)s::float8)"

# One statement both checks the wait and takes the slot, creating the service's row on its first
# use. Concurrent callers queue on the row lock and each sees the slot the previous one left: a
# GCRA schedule with no burst. A caller meeting another's uncommitted insert of the row waits for
# it, then takes the next slot of that row; with the row looked up and created in separate
# statements instead, each in its own READ COMMITTED snapshot, a caller could miss the row in
# one and find it in the next, and be refused as if its slot were too far away.
# The wait is checked against the stored times alone, not against a second reading of
# clock_timestamp(), so a caller that will not wait is still admitted by an idle schedule. The
# wait returned is counted from a reading taken before the answer leaves the server: a caller
# sleeping it after receiving the answer wakes at or after its slot, never before.
_RESERVE = (
    "INSERT INTO rate_limits AS r (service, next_slot_at, granted, updated_at) "
    "VALUES (%(service)s, " + _NOW + " + " + _INTERVAL + ", 1, clock_timestamp()) "
    "ON CONFLICT (service) DO UPDATE SET "
    "next_slot_at = GREATEST(r.next_slot_at, r.paused_until, " + _NOW + ") + " + _INTERVAL + ", "
    "granted = r.granted + 1, updated_at = clock_timestamp() "
    "WHERE GREATEST(r.next_slot_at, r.paused_until) IS NULL "
    "OR GREATEST(r.next_slot_at, r.paused_until) <= "
    + _NOW
    + " + make_interval(secs => %(max_wait)s::float8) "
    "RETURNING EXTRACT(EPOCH FROM r.next_slot_at - " + _INTERVAL + ")::float8 AS slot_at, "
    "EXTRACT(EPOCH FROM " + _NOW + ")::float8 AS now, "
    "COALESCE(EXTRACT(EPOCH FROM r.paused_until - " + _NOW + ")::float8, 0) AS paused_for"
)
# Read after a refused _RESERVE, in its transaction: the row exists and _RESERVE still holds
# its lock, so this is the schedule that refused the caller.
_PEEK = (
    "SELECT EXTRACT(EPOCH FROM " + _EARLIEST + " - " + _NOW + ")::float8 AS wait, "
    "COALESCE(EXTRACT(EPOCH FROM paused_until - " + _NOW + ")::float8, 0) AS paused_for "
    "FROM rate_limits WHERE service = %(service)s"
)
_PAUSE = (
    "INSERT INTO rate_limits (service, paused_until) VALUES (%(service)s, "
    + _NOW
    + " + make_interval(secs => %(seconds)s::float8)) "
    "ON CONFLICT (service) DO UPDATE SET "
    "paused_until = GREATEST(rate_limits.paused_until, EXCLUDED.paused_until), "
    "updated_at = clock_timestamp() "
    "RETURNING EXTRACT(EPOCH FROM paused_until)::float8"
)
_PAUSED_AFTER = (
    "SELECT COALESCE(paused_until > to_timestamp(%(slot_at)s::float8), false) "
    "FROM rate_limits WHERE service = %(service)s"
)


class PostgresRateLimitStore:
    """The `RateLimitStore` every process shares; safe to use from many threads at once."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def reserve(
        self, service: str, interval: float, max_wait: float, now: float | None
    ) -> Reservation:
        params = {"service": service, "interval": interval, "max_wait": max_wait, "now": now}
        try:
            with self._pool.connection() as conn:
                return _reserve(conn, params)
        except psycopg.Error as exc:
            raise RateLimitStateError(
                f"cannot take a request slot of {service}: {type(exc).__name__}: {exc}"
            ) from exc

    def pause(self, service: str, seconds: float, now: float | None) -> float:
        params = {"service": service, "seconds": seconds, "now": now}
        try:
            with self._pool.connection() as conn:
                row = conn.execute(_PAUSE, params).fetchone()
        except psycopg.Error as exc:
            raise RateLimitStateError(
                f"cannot pause {service}: {type(exc).__name__}: {exc}"
            ) from exc
        assert row is not None
        return float(row[0])

    def paused_after(self, service: str, slot_at: float) -> bool:
        try:
            with self._pool.connection() as conn:
                row = conn.execute(
                    _PAUSED_AFTER, {"service": service, "slot_at": slot_at}
                ).fetchone()
        except psycopg.Error as exc:
            raise RateLimitStateError(
                f"cannot read the pause of {service}: {type(exc).__name__}: {exc}"
            ) from exc
        return bool(row and row[0])


def _reserve(conn: psycopg.Connection, params: dict) -> Reservation:
    row = conn.execute(_RESERVE, params).fetchone()
    if row is None:
        # Too far away: refuse without taking the slot, saying how long the wait would be.
        peek = conn.execute(_PEEK, params).fetchone()
        if peek is None:  # the row is locked since _RESERVE: not expected, but fail closed
            raise RateLimitStateError(
                f"cannot take a request slot of {params['service']}: its row vanished"
            )
        wait, paused_for = peek
        return Reservation(False, max(0.0, wait), None, max(0.0, paused_for))
    slot_at, server_now, paused_for = row
    return Reservation(True, max(0.0, slot_at - server_now), slot_at, max(0.0, paused_for))


__all__ = ["PostgresRateLimitStore"]
