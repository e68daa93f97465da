"""The `incidents` tables: load the correlator's inputs, store its decisions, answer history.

One correlator pass is one transaction under an advisory lock, so incident changes and the
alerts they cause (outbox rows) are committed together or not at all.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg import Connection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from va_signals.alerts.messages import (
    Action,
    AlertContent,
    Channel,
    alert_messages,
    incident_dedup_key,
)
from va_signals.db import alert_outbox
from va_signals.db.source_runs import latest_runs
from va_signals.resilience.correlation import (
    NOT_FAILURES,
    SOURCE_LEVEL_ERRORS,
    BreakerOpening,
    Correlation,
    CorrelationPolicy,
    DependencyGraph,
    LatestRun,
    NewIncident,
    OpenIncident,
    Severity,
    SourceFailure,
    Tier,
    correlate,
)

logger = logging.getLogger(__name__)

# One correlator at a time, across processes: an arbitrary constant key for the advisory lock.
CORRELATOR_LOCK_KEY = 7_305_240_003
# A failure of a run still in progress waits for the run to end (so all its failures are
# grouped together), but never longer than this: a run can hang or die without closing.
HOLD_BACK_LIMIT = timedelta(hours=6)
MAX_ROWS_PER_PASS = 10_000
BREAKER_OPEN_STATES = ("OPEN", "HALF_OPEN")

UnfinishedRuns = Callable[[Collection[str]], Collection[str]]


@dataclass(frozen=True)
class CorrelatorCursor:
    """Where the correlator stopped: the last `source_runs.id` decided, and since when breaker
    openings count (the moment the correlator first started)."""

    source_run_id: int
    breakers_since: datetime

    def to_json(self) -> str:
        return json.dumps(
            {"source_run_id": self.source_run_id, "breakers_since": self.breakers_since.isoformat()}
        )

    @classmethod
    def from_json(cls, text: str) -> CorrelatorCursor:
        raw = json.loads(text)
        return cls(int(raw["source_run_id"]), datetime.fromisoformat(raw["breakers_since"]))


@dataclass
class PassReport:
    """What one correlator pass did."""

    cursor: CorrelatorCursor
    opened: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    attached: int = 0
    alerts_queued: int = 0


def initial_cursor(conn: Connection, now: datetime) -> CorrelatorCursor:
    """A cursor after everything already recorded: past failures are history, not news."""
    latest = conn.execute("SELECT coalesce(max(id), 0) FROM source_runs").fetchone()[0]
    return CorrelatorCursor(int(latest), now)


def correlate_pass(
    conn: Connection,
    graph: DependencyGraph,
    policy: CorrelationPolicy,
    cursor: CorrelatorCursor,
    *,
    now: datetime,
    channels: Sequence[Channel],
    unfinished_runs: UnfinishedRuns = lambda run_ids: (),
) -> PassReport:
    """Read failures after `cursor`, correlate, store incidents and queue their alerts.

    `unfinished_runs` names which of the given Dagster run ids are still running; their
    failures wait so that one run's failures are grouped together.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (CORRELATOR_LOCK_KEY,))
    failures, next_run_id = _new_failures(conn, cursor.source_run_id, now, unfinished_runs)
    open_incidents = _open_incidents(conn)
    watched = {failure.source_id for failure in failures}
    for incident in open_incidents:
        watched |= incident.source_ids
    latest = {
        row["source_id"]: LatestRun(row["source_id"], row["id"], row["status"], row["ended_at"])
        for row in (latest_runs(conn, sorted(watched)) if watched else [])
    }
    since = max(now - policy.window, cursor.breakers_since)
    openings, open_breakers = _breaker_inputs(conn, since, now)

    correlation = correlate(
        graph,
        policy,
        failures=failures,
        latest=latest,
        open_incidents=open_incidents,
        breaker_openings=openings,
        open_breakers=open_breakers,
        now=now,
    )
    report = PassReport(CorrelatorCursor(next_run_id, cursor.breakers_since))
    _apply(conn, graph, correlation, channels, now, report)
    return report


def incidents_open_at(conn: Connection, at: datetime) -> list[dict]:
    """Incidents that were open at the moment `at` (opened at or before it, not yet resolved)."""
    return _select_incidents(conn, _OPEN_AT, {"at": at})


def open_and_recent_incidents(conn: Connection, since: datetime) -> list[dict]:
    """Incidents open now, and those resolved at or after `since`."""
    return _select_incidents(conn, _OPEN_OR_RESOLVED_SINCE, {"since": since})


_OPEN_AT = sql.SQL("tstzrange(i.opened_at, i.resolved_at) @> %(at)s")
_OPEN_OR_RESOLVED_SINCE = sql.SQL("i.resolved_at IS NULL OR i.resolved_at >= %(since)s")
_INCIDENTS_WHERE = sql.SQL(
    """
    SELECT i.id, i.tier, i.root_cause, i.severity, i.summary, i.services, i.dedup_key,
           i.opened_at, i.last_seen_at, i.resolved_at, i.version, i.alert_state, i.details,
           coalesce(array_agg(s.source_id ORDER BY s.source_id)
                    FILTER (WHERE s.source_id IS NOT NULL), '{{}}') AS sources
    FROM incidents i
    LEFT JOIN incident_sources s ON s.incident_id = i.id
    WHERE {where}
    GROUP BY i.id
    ORDER BY i.opened_at, i.id
    """
)


def _select_incidents(conn: Connection, where: sql.SQL, params: dict) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_INCIDENTS_WHERE.format(where=where), params)
        return list(cur.fetchall())


def _new_failures(
    conn: Connection, after_id: int, now: datetime, unfinished_runs: UnfinishedRuns
) -> tuple[list[SourceFailure], int]:
    upper = conn.execute("SELECT coalesce(max(id), 0) FROM source_runs").fetchone()[0]
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT id, source_id, run_id, status, started_at, ended_at, error_class,
                   error_message
            FROM source_runs
            WHERE id > %(after)s AND id <= %(upper)s AND status IN ('ERROR', 'RUNNING')
            ORDER BY id
            LIMIT %(limit)s
            """,
            {"after": after_id, "upper": upper, "limit": MAX_ROWS_PER_PASS},
        )
        rows = cur.fetchall()
    if len(rows) == MAX_ROWS_PER_PASS:
        upper = rows[-1]["id"]

    run_ids = {row["run_id"] for row in rows if row["status"] == "ERROR" and row["run_id"]}
    unfinished = set(unfinished_runs(run_ids)) if run_ids else set()
    # Ids are taken when a run opens, so a row still RUNNING may close as ERROR after rows
    # with higher ids: the cursor must not pass it.
    held: list[int] = []
    failures: list[SourceFailure] = []
    for row in rows:
        if row["status"] == "RUNNING":
            if now - row["started_at"] < HOLD_BACK_LIMIT:
                held.append(row["id"])
            continue
        if row["run_id"] in unfinished and now - row["ended_at"] < HOLD_BACK_LIMIT:
            held.append(row["id"])
            continue
        if row["error_class"] in NOT_FAILURES:
            continue
        failures.append(
            SourceFailure(
                source_id=row["source_id"],
                source_run_id=row["id"],
                failed_at=row["ended_at"],
                error_class=row["error_class"],
                error_message=row["error_message"],
            )
        )
    next_id = min(held) - 1 if held else upper
    return failures, max(next_id, after_id)


def _open_incidents(conn: Connection) -> list[OpenIncident]:
    rows = conn.execute(
        """
        SELECT i.id, i.tier, i.root_cause, i.services, i.opened_at, i.last_seen_at,
               coalesce(array_agg(s.source_id) FILTER (WHERE s.active), '{}'),
               coalesce(bool_or(s.error_class = ANY(%s)), false)
        FROM incidents i
        LEFT JOIN incident_sources s ON s.incident_id = i.id
        WHERE i.resolved_at IS NULL
        GROUP BY i.id
        ORDER BY i.id
        """,
        (sorted(SOURCE_LEVEL_ERRORS),),
    ).fetchall()
    return [
        OpenIncident(
            id=row[0],
            tier=Tier(row[1]),
            root_cause=row[2],
            services=frozenset(row[3]),
            source_ids=frozenset(row[6]),
            opened_at=row[4],
            last_seen_at=row[5],
            source_level=row[7],
        )
        for row in rows
    ]


def _breaker_inputs(
    conn: Connection, since: datetime, now: datetime
) -> tuple[list[BreakerOpening], frozenset[str]]:
    """Breaker openings since `since` not already part of an incident, and breakers open now.

    The breaker tables belong to another migration and may be absent or older than this code
    expects: then there is simply no breaker evidence.
    """
    if not _table_exists(conn, "breaker_events"):
        return [], frozenset()
    try:
        with conn.transaction():
            openings = [
                BreakerOpening(service, at)
                for service, at in conn.execute(
                    """
                    SELECT e.service, e.at FROM breaker_events e
                    WHERE e.to_state = 'OPEN' AND e.at > %(since)s AND e.at <= %(now)s
                      AND NOT EXISTS (
                          SELECT 1 FROM incidents i
                          WHERE e.service = ANY (i.services)
                            AND tstzrange(i.opened_at, i.resolved_at, '[]') @> e.at
                      )
                    ORDER BY e.at
                    """,
                    {"since": since, "now": now},
                ).fetchall()
            ]
            open_breakers = frozenset(_open_breakers(conn, now))
    except psycopg.errors.UndefinedColumn as exc:
        logger.warning("breaker tables have an unexpected shape, ignoring them: %s", exc)
        return [], frozenset()
    return openings, open_breakers


def _open_breakers(conn: Connection, now: datetime) -> list[str]:
    # `breaker_state` holds each service's current state; the event log is the fallback. An
    # OPEN row whose open time has passed is stored as OPEN until the next call probes it; for
    # incidents it no longer counts, or a service nobody calls would keep its incident open.
    if _table_exists(conn, "breaker_state"):
        rows = conn.execute(
            "SELECT service FROM breaker_state WHERE state = 'HALF_OPEN' "
            "OR (state = 'OPEN' AND (open_until IS NULL OR open_until > %s))",
            (now,),
        ).fetchall()
    else:
        rows = conn.execute(
            """
            SELECT service FROM (
                SELECT DISTINCT ON (service) service, to_state
                FROM breaker_events ORDER BY service, at DESC
            ) latest
            WHERE to_state = ANY(%s)
            """,
            (list(BREAKER_OPEN_STATES),),
        ).fetchall()
    return [row[0] for row in rows]


def _table_exists(conn: Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _apply(
    conn: Connection,
    graph: DependencyGraph,
    correlation: Correlation,
    channels: Sequence[Channel],
    now: datetime,
    report: PassReport,
) -> None:
    # Recoveries and resolutions first: they free sources that a new incident may then claim.
    for recovery in correlation.recovered:
        conn.execute(
            "UPDATE incident_sources SET active = false, recovered_at = %s "
            "WHERE incident_id = %s AND source_id = %s AND active",
            (recovery.recovered_at, recovery.incident_id, recovery.source_id),
        )
    for resolution in correlation.resolved:
        report.alerts_queued += _resolve(conn, resolution.incident_id, resolution.resolved_at, now)
        report.resolved.append(resolution.incident_id)
        logger.info("incident %d resolved", resolution.incident_id)
    for attachment in correlation.attached:
        _link(conn, graph, attachment.incident_id, attachment.failure)
        conn.execute(
            "UPDATE incidents SET last_seen_at = GREATEST(last_seen_at, %s), updated_at = now() "
            "WHERE id = %s",
            (attachment.failure.failed_at, attachment.incident_id),
        )
        report.attached += 1
    for promotion in correlation.promoted:
        conn.execute(
            "UPDATE incidents SET tier = 'service', root_cause = %s, services = %s, "
            "severity = %s, summary = %s, updated_at = now() WHERE id = %s",
            (
                promotion.root_cause,
                list(promotion.services),
                promotion.severity.value,
                promotion.summary,
                promotion.incident_id,
            ),
        )
        logger.info("incident %d widened: %s", promotion.incident_id, promotion.summary)
    for incident in correlation.opened:
        incident_id, queued = _open(conn, graph, incident, channels, now)
        report.opened.append(incident_id)
        report.alerts_queued += queued
        logger.info(
            "incident %d opened: %s %s (%s)",
            incident_id,
            incident.tier.value,
            incident.root_cause,
            ", ".join(incident.source_ids) or "no source failed yet",
        )


def _open(
    conn: Connection,
    graph: DependencyGraph,
    incident: NewIncident,
    channels: Sequence[Channel],
    now: datetime,
) -> tuple[int, int]:
    # The dedup key embeds the id, so take the id first.
    incident_id = conn.execute(
        "SELECT nextval(pg_get_serial_sequence('incidents', 'id'))"
    ).fetchone()[0]
    dedup_key = incident_dedup_key(incident_id)
    conn.execute(
        """
        INSERT INTO incidents (id, tier, root_cause, severity, summary, services, dedup_key,
                               opened_at, last_seen_at, alert_state, details)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            incident_id,
            incident.tier.value,
            incident.root_cause,
            incident.severity.value,
            incident.summary,
            list(incident.services),
            dedup_key,
            incident.opened_at,
            incident.last_seen_at,
            "trigger_pending" if channels else "unrouted",
            Jsonb(incident.details),
        ),
    )
    for failure in incident.failures:
        _link(conn, graph, incident_id, failure)
    content = _content(
        dedup_key,
        incident.tier,
        incident.root_cause,
        incident.severity,
        incident.summary,
        {**incident.details, "incident_id": incident_id, "sources": list(incident.source_ids)},
    )
    messages = alert_messages(content, Action.TRIGGER, "1", channels, incident_id=incident_id)
    return incident_id, alert_outbox.enqueue(conn, messages, now)


def _resolve(conn: Connection, incident_id: int, resolved_at: datetime, now: datetime) -> int:
    row = conn.execute(
        """
        UPDATE incidents SET resolved_at = %s, version = version + 1, updated_at = now()
        WHERE id = %s AND resolved_at IS NULL
        RETURNING dedup_key, tier, root_cause, severity, summary, version, alert_state
        """,
        (resolved_at, incident_id),
    ).fetchone()
    conn.execute(
        "UPDATE incident_sources SET active = false, "
        "recovered_at = coalesce(recovered_at, %s) WHERE incident_id = %s AND active",
        (resolved_at, incident_id),
    )
    dedup_key, tier, root, severity, summary, version, alert_state = row
    # Only channels that were told about the incident hear that it is over.
    channels = alert_outbox.channels_triggered(conn, dedup_key)
    content = _content(dedup_key, Tier(tier), root, Severity(severity), summary, {})
    messages = alert_messages(
        content, Action.RESOLVE, str(version), channels, incident_id=incident_id
    )
    queued = alert_outbox.enqueue(conn, messages, now)
    if queued:
        state = "resolve_pending"
    else:
        state = "unrouted" if alert_state == "unrouted" else "resolved"
    conn.execute("UPDATE incidents SET alert_state = %s WHERE id = %s", (state, incident_id))
    return queued


def _link(
    conn: Connection, graph: DependencyGraph, incident_id: int, failure: SourceFailure
) -> None:
    conn.execute(
        """
        INSERT INTO incident_sources (incident_id, source_id, service, first_failed_at,
                                      last_failed_at, last_source_run_id, error_class)
        VALUES (%(incident)s, %(source)s, %(service)s, %(at)s, %(at)s, %(run)s, %(error)s)
        ON CONFLICT (incident_id, source_id) DO UPDATE SET
            active = true,
            recovered_at = NULL,
            last_failed_at = GREATEST(incident_sources.last_failed_at, EXCLUDED.last_failed_at),
            last_source_run_id = GREATEST(
                incident_sources.last_source_run_id, EXCLUDED.last_source_run_id
            ),
            error_class = EXCLUDED.error_class
        """,
        {
            "incident": incident_id,
            "source": failure.source_id,
            "service": graph.service_of(failure.source_id) or "",
            "at": failure.failed_at,
            "run": failure.source_run_id,
            "error": failure.error_class,
        },
    )


def _content(
    dedup_key: str,
    tier: Tier,
    root_cause: str,
    severity: Severity,
    summary: str,
    details: dict,
) -> AlertContent:
    return AlertContent(
        dedup_key=dedup_key,
        summary=summary,
        severity=severity,
        component=root_cause,
        group=tier.value,
        event_class="source_failures",
        custom_details=details,
    )


__all__ = [
    "CorrelatorCursor",
    "PassReport",
    "correlate_pass",
    "incidents_open_at",
    "initial_cursor",
    "open_and_recent_incidents",
]
