"""The SQL behind the asset checks: one query per kind of check for all the sources it covers.

Each query takes the `source_runs` ids being checked; the documents a run touched are those of
its source whose `last_seen_at` falls inside the run (every upsert sets it), and the documents
it added are those whose `first_seen_at` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from psycopg import Connection

from va_signals.db.source_runs import latest_runs

# The runs under check, with an end for one still open (a check evaluated mid-run).
_RUNS = """
runs AS (
    SELECT id, source_id, status, started_at, coalesce(ended_at, clock_timestamp()) AS ended_at,
           records_new + records_updated + records_unchanged AS fetched, records_duplicate
    FROM source_runs
    WHERE id = ANY(%(run_ids)s)
)"""

_TOUCHED = """
touched AS (
    SELECT d.id, d.source_id, d.external_id, d.dedup_key, d.duplicate_of, d.first_seen_at,
           d.published_on, d.published_at, r.started_at
    FROM runs AS r
    JOIN documents AS d
      ON d.source_id = r.source_id AND d.last_seen_at BETWEEN r.started_at AND r.ended_at
)"""


@dataclass(frozen=True)
class RunRow:
    """The ledger facts about one run that the checks read."""

    id: int
    source_id: str
    status: str
    started_at: datetime
    fetched: int
    records_duplicate: int


def latest_run_ids(conn: Connection, source_ids: Sequence[str]) -> dict[str, int]:
    """The id of each source's most recent finished run (for checks run outside ingest)."""
    return {row["source_id"]: row["id"] for row in latest_runs(conn, list(source_ids))}


def run_rows(conn: Connection, run_ids: Sequence[int]) -> dict[str, RunRow]:
    """The ledger rows of `run_ids`, by source."""
    rows = conn.execute(
        f"WITH {_RUNS} SELECT id, source_id, status, started_at, fetched, records_duplicate "
        "FROM runs",
        {"run_ids": list(run_ids)},
    ).fetchall()
    return {row[1]: RunRow(*row) for row in rows}


@dataclass(frozen=True)
class DuplicateFindings:
    """Repeats of a natural key in one run and in the stored rows it touched."""

    within_run: int
    key_collisions: int
    unlinked_copies: int
    examples: tuple[str, ...]


def duplicate_findings(conn: Connection, run_ids: Sequence[int]) -> dict[str, DuplicateFindings]:
    """Per source: repeats dropped in the run, stored rows sharing a touched row's natural key,
    and touched copies of another source's document that were stored before the run yet are
    still not linked to its canonical row."""
    rows = conn.execute(
        f"""
        WITH {_RUNS}, {_TOUCHED},
        collisions AS (
            SELECT t.source_id, t.external_id
            FROM touched AS t
            JOIN documents AS other
              ON other.source_id = t.source_id AND other.external_id = t.external_id
             AND other.id <> t.id
        ),
        canonical AS (
            SELECT DISTINCT ON (d.dedup_key) d.dedup_key, d.id, d.source_id, d.first_seen_at
            FROM documents AS d
            WHERE d.dedup_key IN (SELECT dedup_key FROM touched WHERE dedup_key IS NOT NULL)
            ORDER BY d.dedup_key, d.id
        ),
        unlinked AS (
            SELECT t.source_id, t.external_id
            FROM touched AS t
            JOIN canonical AS c ON c.dedup_key = t.dedup_key
            WHERE t.id <> c.id AND t.source_id <> c.source_id
              AND t.duplicate_of IS DISTINCT FROM c.id
              -- Copies stored by this very run are linked by the documents step after it.
              AND t.first_seen_at < t.started_at AND c.first_seen_at < t.started_at
        )
        SELECT r.source_id, r.records_duplicate,
               (SELECT count(*) FROM collisions AS c WHERE c.source_id = r.source_id),
               (SELECT count(*) FROM unlinked AS u WHERE u.source_id = r.source_id),
               ARRAY(
                   SELECT external_id FROM (
                       SELECT * FROM collisions UNION ALL SELECT * FROM unlinked
                   ) AS found
                   WHERE found.source_id = r.source_id ORDER BY external_id LIMIT 5
               )
        FROM runs AS r
        """,
        {"run_ids": list(run_ids)},
    ).fetchall()
    return {
        source_id: DuplicateFindings(within, collisions, unlinked, tuple(examples))
        for source_id, within, collisions, unlinked, examples in rows
    }


@dataclass(frozen=True)
class TimestampBounds:
    """What a source's dates may be: not before `earliest`, not past today plus `days_ahead`."""

    earliest: date
    days_ahead: int


@dataclass(frozen=True)
class TimestampFindings:
    """Dates of the documents one run touched that break the source's bounds."""

    checked: int
    undated: int
    in_future: int
    too_early: int
    oldest: date | None
    newest: date | None
    examples: tuple[str, ...]


def timestamp_findings(
    conn: Connection, run_ids: Mapping[str, int], bounds: Mapping[str, TimestampBounds]
) -> dict[str, TimestampFindings]:
    """Per source: touched documents dated in the future or before the source's earliest date.

    Dates are compared as Eastern calendar days, the days the publishers print.
    """
    sources = list(run_ids)
    rows = conn.execute(
        f"""
        WITH {_RUNS}, {_TOUCHED},
        bounds AS (
            SELECT * FROM unnest(%(sources)s::text[], %(earliest)s::date[], %(ahead)s::int[])
                AS b(source_id, earliest, days_ahead)
        ),
        dated AS (
            SELECT t.source_id, t.external_id, t.published_on, t.published_at,
                   coalesce(t.published_on,
                            (t.published_at AT TIME ZONE 'America/New_York')::date) AS day,
                   b.earliest,
                   (now() AT TIME ZONE 'America/New_York')::date + b.days_ahead AS latest
            FROM touched AS t JOIN bounds AS b USING (source_id)
        )
        SELECT r.source_id,
               count(d.source_id),
               count(*) FILTER (WHERE d.source_id IS NOT NULL AND d.day IS NULL),
               count(*) FILTER (WHERE d.day > d.latest),
               count(*) FILTER (WHERE d.day < d.earliest),
               min(d.day), max(d.day),
               (array_agg(d.external_id ORDER BY d.external_id)
                    FILTER (WHERE d.day > d.latest OR d.day < d.earliest))[1:5]
        FROM runs AS r LEFT JOIN dated AS d USING (source_id)
        GROUP BY r.source_id
        """,
        {
            "run_ids": [run_ids[source] for source in sources],
            "sources": sources,
            "earliest": [bounds[source].earliest for source in sources],
            "ahead": [bounds[source].days_ahead for source in sources],
        },
    ).fetchall()
    return {row[0]: TimestampFindings(*row[1:7], examples=tuple(row[7] or ())) for row in rows}


def order_values(
    conn: Connection, run_ids: Mapping[str, int], fields: Mapping[str, str]
) -> dict[str, list[str | None]]:
    """Per source, the payload field its API sorts by, for the documents the run added, in the
    order they were stored (ids follow arrival order within a run)."""
    sources = [source for source in run_ids if source in fields]
    values: dict[str, list[str | None]] = {source: [] for source in sources}
    if not sources:
        return values
    rows = conn.execute(
        f"""
        WITH {_RUNS},
        fields AS (
            SELECT * FROM unnest(%(sources)s::text[], %(fields)s::text[]) AS f(source_id, field)
        )
        SELECT d.source_id, d.payload ->> f.field
        FROM runs AS r
        JOIN fields AS f USING (source_id)
        JOIN documents AS d
          ON d.source_id = r.source_id AND d.first_seen_at BETWEEN r.started_at AND r.ended_at
        ORDER BY d.source_id, d.id
        """,
        {
            "run_ids": [run_ids[source] for source in sources],
            "sources": sources,
            "fields": [fields[source] for source in sources],
        },
    ).fetchall()
    for source_id, value in rows:
        values[source_id].append(value)
    return values


def count_history(
    conn: Connection, run_ids: Sequence[int], ceilings: Mapping[str, int], limit: int = 30
) -> dict[str, list[int]]:
    """Per source, the records fetched by its last `limit` good runs before the one checked.

    Runs above the source's catalog ceiling were rejected as floods when they happened; they
    stay out of the history so one flood does not shift what counts as normal.
    """
    rows = conn.execute(
        f"""
        WITH {_RUNS}
        SELECT r.source_id, coalesce(array_agg(h.fetched ORDER BY h.ended_at DESC)
                                     FILTER (WHERE h.fetched IS NOT NULL), '{{}}')
        FROM runs AS r
        JOIN unnest(%(ceiling_ids)s::text[], %(ceilings)s::int[]) AS c(source_id, ceiling)
          ON c.source_id = r.source_id
        LEFT JOIN LATERAL (
            SELECT sr.records_new + sr.records_updated + sr.records_unchanged AS fetched,
                   sr.ended_at
            FROM source_runs AS sr
            WHERE sr.source_id = r.source_id AND sr.status IN ('SUCCESS', 'NO_DATA')
              AND sr.id <> r.id AND sr.ended_at <= r.started_at
              AND sr.records_new + sr.records_updated + sr.records_unchanged <= c.ceiling
            ORDER BY sr.ended_at DESC
            LIMIT %(limit)s
        ) AS h ON true
        GROUP BY r.source_id
        """,
        {
            "run_ids": list(run_ids),
            "limit": limit,
            "ceiling_ids": list(ceilings),
            "ceilings": list(ceilings.values()),
        },
    ).fetchall()
    return {source_id: list(history) for source_id, history in rows}


def payload_signatures(
    conn: Connection, run_ids: Sequence[int]
) -> dict[str, list[tuple[dict[str, str] | None, int]]]:
    """Per source, each distinct {field: JSON type} shape of the payloads a run touched, with
    how many documents have it; None stands for a payload that is not a JSON object.

    Grouping by shape keeps the result small however many documents a run stored.
    """
    rows = conn.execute(
        f"""
        WITH {_RUNS}
        SELECT source_id, shape, count(*)
        FROM (
            SELECT d.source_id,
                   CASE WHEN jsonb_typeof(d.payload) = 'object' THEN
                       coalesce((SELECT jsonb_object_agg(e.key, jsonb_typeof(e.value))
                                 FROM jsonb_each(d.payload) AS e), '{{}}'::jsonb)
                   END AS shape
            FROM runs AS r
            JOIN documents AS d
              ON d.source_id = r.source_id AND d.last_seen_at BETWEEN r.started_at AND r.ended_at
        ) AS shapes
        GROUP BY source_id, shape
        ORDER BY source_id, count(*) DESC
        """,
        {"run_ids": list(run_ids)},
    ).fetchall()
    signatures: dict[str, list[tuple[dict[str, str] | None, int]]] = {}
    for source_id, shape, count in rows:
        signatures.setdefault(source_id, []).append((shape, count))
    return signatures


@dataclass(frozen=True)
class FreshnessMarks:
    """When a source last ran well, and when a run last stored new documents for it."""

    last_good_run_at: datetime | None
    last_new_documents_at: datetime | None


def freshness_marks(conn: Connection, source_ids: Sequence[str]) -> dict[str, FreshnessMarks]:
    """Per source, the end of its last SUCCESS/NO_DATA run and of its last run with new rows."""
    rows = conn.execute(
        """
        SELECT s.source_id,
               (SELECT max(ended_at) FROM source_runs
                WHERE source_id = s.source_id AND status IN ('SUCCESS', 'NO_DATA')),
               (SELECT max(ended_at) FROM source_runs
                WHERE source_id = s.source_id AND status <> 'RUNNING' AND records_new > 0)
        FROM unnest(%(ids)s::text[]) AS s(source_id)
        """,
        {"ids": list(source_ids)},
    ).fetchall()
    return {source_id: FreshnessMarks(good, new) for source_id, good, new in rows}
