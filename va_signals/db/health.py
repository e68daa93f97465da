"""Reads the inputs of the health score: the runs ledger, stored documents and breaker states.

Read defensively: a missing table is a reason the score cannot be computed, never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg import Connection, sql

from va_signals.catalog.models import Catalog
from va_signals.resilience.health import (
    RECENT_RUNS,
    HealthInputs,
    ServiceLatency,
    SourceActivity,
)

# The breaker store's table (migration 0002), and the name an earlier draft of it used.
BREAKER_TABLES = ("breaker_state",)
# A service's latest day of runs is compared with the month of runs before it.
_RECENT_WINDOW = "1 day"
_BASELINE_WINDOW = "30 days"


def load_health_inputs(conn: Connection, catalog: Catalog, now: datetime) -> HealthInputs:
    """Everything `compute_health` needs, in a few queries for all enabled sources."""
    sources = sorted(catalog.enabled_sources, key=lambda source: source.id)
    breakers, breakers_reason = breaker_states(conn)
    if not _table_exists(conn, "source_runs"):
        return HealthInputs(
            now=now,
            sources=tuple(SourceActivity(s, None, None, (), False, False) for s in sources),
            runs_on_record=0,
            runs_reason="no source_runs table: the schema is not migrated",
            breakers=breakers,
            breakers_reason=breakers_reason,
        )
    ids = [source.id for source in sources]
    activity = _activity(conn, ids)
    services = {source.id: source.service for source in sources}
    return HealthInputs(
        now=now,
        sources=tuple(
            SourceActivity(source, *activity.get(source.id, (None, None, (), False, False)))
            for source in sources
        ),
        runs_on_record=_any_finished_run(conn),
        breakers=breakers,
        breakers_reason=breakers_reason,
        latencies=_latencies(conn, services),
    )


def breaker_states(conn: Connection) -> tuple[dict[str, str] | None, str]:
    """Service -> breaker state, or None with the reason the table cannot be read."""
    for table in BREAKER_TABLES:
        columns = {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s",
                (table,),
            ).fetchall()
        }
        if not columns:
            continue
        if not {"service", "state"} <= columns:
            return None, f"table {table} has no service and state columns"
        query = sql.SQL("SELECT service, state FROM {}").format(sql.Identifier(table))
        return {service: state for service, state in conn.execute(query).fetchall()}, ""
    return None, f"no breaker table ({' or '.join(BREAKER_TABLES)}) in the database"


def _table_exists(conn: Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def _any_finished_run(conn: Connection) -> int:
    # The score only tells no runs from some; counting a ledger of millions of rows to compare
    # the count with 0 was a scan of the whole table on every evaluation.
    return int(
        conn.execute(
            "SELECT EXISTS (SELECT 1 FROM source_runs WHERE status <> 'RUNNING')"
        ).fetchone()[0]
    )


def _activity(conn: Connection, source_ids: Sequence[str]) -> dict[str, tuple]:
    rows = conn.execute(
        """
        SELECT s.source_id,
               (SELECT max(ended_at) FROM source_runs
                WHERE source_id = s.source_id AND status IN ('SUCCESS', 'NO_DATA')),
               (SELECT max(ended_at) FROM source_runs
                WHERE source_id = s.source_id AND status <> 'RUNNING' AND records_new > 0),
               ARRAY(SELECT status FROM source_runs
                     WHERE source_id = s.source_id AND status <> 'RUNNING'
                     ORDER BY ended_at DESC LIMIT %(recent)s),
               coalesce((SELECT truncated FROM source_runs
                         WHERE source_id = s.source_id AND status <> 'RUNNING'
                         ORDER BY ended_at DESC LIMIT 1), false),
               EXISTS (SELECT 1 FROM documents WHERE source_id = s.source_id)
        FROM unnest(%(ids)s::text[]) AS s(source_id)
        """,
        {"ids": list(source_ids), "recent": RECENT_RUNS},
    ).fetchall()
    return {
        source_id: (good, new, tuple(statuses), truncated, has_documents)
        for source_id, good, new, statuses, truncated, has_documents in rows
    }


def _latencies(conn: Connection, services: dict[str, str]) -> tuple[ServiceLatency, ...]:
    """Per service: run latencies of its latest day of runs, and of the month before that.

    Two reads per source on `source_runs_latency_idx`: its newest run start, then the runs
    from a month before its service's newest start on; never the whole bounded window.
    """
    # Binary results: tens of thousands of latencies travel as float8s, not as their text.
    with conn.cursor(binary=True) as cursor:
        rows = cursor.execute(
            """
            WITH horizon AS (
                -- Bounded reading; a service idle for longer has no baseline worth comparing.
                -- Computed once here: as a condition on a column outside the index key it would be
                -- evaluated again for every row read.
                SELECT now() - 2 * (%(recent)s::interval + %(baseline)s::interval) AS since
            ),
            svc AS (
                SELECT source_id, service
                FROM unnest(%(sources)s::text[], %(services)s::text[]) AS svc(source_id, service)
            ),
            latest AS (
                SELECT service,
                       last_at - %(recent)s::interval AS recent_after,
                       last_at - %(recent)s::interval - %(baseline)s::interval AS baseline_after
                FROM (
                    SELECT svc.service, max(newest.started_at) AS last_at
                    FROM svc
                    CROSS JOIN horizon AS h
                    CROSS JOIN LATERAL (
                        SELECT max(sr.started_at) AS started_at
                        FROM source_runs AS sr
                        WHERE sr.source_id = svc.source_id
                          AND sr.status <> 'RUNNING' AND sr.latency_p50_ms IS NOT NULL
                          AND sr.ended_at > h.since
                    ) AS newest
                    GROUP BY svc.service
                ) AS by_service
                WHERE last_at IS NOT NULL
            )
            SELECT l.service,
                   array_agg(r.latency_p50_ms::float8) FILTER (WHERE r.started_at > l.recent_after),
                   array_agg(r.latency_p50_ms::float8) FILTER (WHERE r.started_at <= l.recent_after)
            FROM latest AS l
            JOIN svc USING (service)
            CROSS JOIN horizon AS h
            CROSS JOIN LATERAL (
                SELECT sr.started_at, sr.latency_p50_ms
                FROM source_runs AS sr
                WHERE sr.source_id = svc.source_id
                  AND sr.status <> 'RUNNING' AND sr.latency_p50_ms IS NOT NULL
                  AND sr.ended_at > h.since
                  AND sr.started_at > l.baseline_after
                -- The index's own order. It also keeps this a range read per source: PostgreSQL
                -- would flatten an unordered subquery into a join over the whole bounded window.
                ORDER BY sr.started_at
            ) AS r
            GROUP BY l.service
            ORDER BY l.service
            """,
            {
                "sources": list(services),
                "services": list(services.values()),
                "recent": _RECENT_WINDOW,
                "baseline": _BASELINE_WINDOW,
            },
        ).fetchall()
    return tuple(
        ServiceLatency(service, tuple(recent or ()), tuple(baseline or ()))
        for service, recent, baseline in rows
    )
