"""The `alert_outbox` table: alerts written in the transaction that decided them, sent later.

A row is unique per (channel, dedup_key, action, version), so deciding the same alert twice
writes it once. Senders claim due rows with `FOR UPDATE SKIP LOCKED`, one at a time, and never
send a row while an older row of the same channel and dedup key is still pending.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from va_signals.alerts.messages import Action, AlertContent, AlertMessage, Channel, alert_messages


@dataclass(frozen=True)
class OutboxRow:
    """A claimed row, locked by the claiming transaction until it commits."""

    id: int
    channel: Channel
    dedup_key: str
    action: Action
    version: str
    summary: str
    body: dict[str, Any]
    attempts: int
    incident_id: int | None
    tracks_incident: bool


def enqueue(conn: Connection, messages: Iterable[AlertMessage], now: datetime) -> int:
    """Write messages as PENDING, due at `now`; an already written one is left alone.

    Returns how many rows were new.
    """
    written = 0
    for message in messages:
        cursor = conn.execute(
            """
            INSERT INTO alert_outbox (channel, dedup_key, action, version, incident_id,
                                      tracks_incident, summary, body, next_attempt_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT ON CONSTRAINT alert_outbox_event_key DO NOTHING
            """,
            (
                message.channel.value,
                message.dedup_key,
                message.action.value,
                message.version,
                message.incident_id,
                message.tracks_incident,
                message.summary,
                Jsonb(message.body),
                now,
            ),
        )
        written += cursor.rowcount
    return written


def claim_due(conn: Connection, now: datetime) -> OutboxRow | None:
    """Lock the next due row no other sender holds; None when nothing is due.

    The row stays locked until the caller's transaction ends, so the caller sends it and
    records the outcome inside that transaction.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT o.id, o.channel, o.dedup_key, o.action, o.version, o.summary, o.body,
                   o.attempts, o.incident_id, o.tracks_incident
            FROM alert_outbox o
            WHERE o.status = 'PENDING' AND o.next_attempt_at <= %(now)s
              AND NOT EXISTS (
                  SELECT 1 FROM alert_outbox earlier
                  WHERE earlier.channel = o.channel AND earlier.dedup_key = o.dedup_key
                    AND earlier.status = 'PENDING' AND earlier.id < o.id
              )
            ORDER BY o.next_attempt_at, o.id
            LIMIT 1
            FOR UPDATE OF o SKIP LOCKED
            """,
            {"now": now},
        )
        row = cur.fetchone()
    if row is None:
        return None
    return OutboxRow(
        id=row["id"],
        channel=Channel(row["channel"]),
        dedup_key=row["dedup_key"],
        action=Action(row["action"]),
        version=row["version"],
        summary=row["summary"],
        body=row["body"],
        attempts=row["attempts"],
        incident_id=row["incident_id"],
        tracks_incident=row["tracks_incident"],
    )


def mark_sent(conn: Connection, row: OutboxRow, status_code: int, now: datetime) -> None:
    conn.execute(
        "UPDATE alert_outbox SET status = 'SENT', attempts = attempts + 1, sent_at = %s, "
        "last_status_code = %s, last_error = NULL WHERE id = %s",
        (now, status_code, row.id),
    )
    if not row.tracks_incident or row.incident_id is None:
        return
    if row.action is Action.RESOLVE:
        conn.execute(
            "UPDATE incidents SET alert_state = 'resolved', updated_at = now() WHERE id = %s",
            (row.incident_id,),
        )
    else:
        # A trigger confirmed after the resolve was queued must not hide that resolve.
        conn.execute(
            "UPDATE incidents SET alert_state = 'triggered', updated_at = now() "
            "WHERE id = %s AND alert_state = 'trigger_pending'",
            (row.incident_id,),
        )


def mark_retry(
    conn: Connection,
    row: OutboxRow,
    status_code: int | None,
    error: str,
    next_attempt_at: datetime,
) -> None:
    conn.execute(
        "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = %s, "
        "last_status_code = %s, last_error = %s WHERE id = %s",
        (next_attempt_at, status_code, error[:2000], row.id),
    )


def mark_failed(conn: Connection, row: OutboxRow, status_code: int | None, error: str) -> None:
    conn.execute(
        "UPDATE alert_outbox SET status = 'FAILED', attempts = attempts + 1, "
        "last_status_code = %s, last_error = %s WHERE id = %s",
        (status_code, error[:2000], row.id),
    )
    if row.tracks_incident and row.incident_id is not None:
        conn.execute(
            "UPDATE incidents SET alert_state = 'failed', updated_at = now() WHERE id = %s",
            (row.incident_id,),
        )


def channels_triggered(conn: Connection, dedup_key: str) -> list[Channel]:
    """Channels that have a trigger row for `dedup_key`, in the order they were written."""
    rows = conn.execute(
        "SELECT channel FROM alert_outbox WHERE dedup_key = %s AND action = 'trigger' "
        "GROUP BY channel ORDER BY min(id)",
        (dedup_key,),
    ).fetchall()
    return [Channel(row[0]) for row in rows]


def raise_alert(
    conn: Connection,
    content: AlertContent,
    version: str,
    channels: Sequence[Channel],
    now: datetime,
) -> bool:
    """Queue a trigger unless this dedup key is already firing; True when one was queued."""
    if not channels:
        return False
    _lock(conn, content.dedup_key)
    if _is_firing(conn, content.dedup_key):
        return False
    messages = alert_messages(content, Action.TRIGGER, version, channels)
    return enqueue(conn, messages, now) > 0


def clear_alert(conn: Connection, content: AlertContent, version: str, now: datetime) -> bool:
    """Queue a resolve on every channel that was triggered, if the key is firing."""
    _lock(conn, content.dedup_key)
    if not _is_firing(conn, content.dedup_key):
        return False
    channels = channels_triggered(conn, content.dedup_key)
    summary = conn.execute(
        "SELECT summary FROM alert_outbox WHERE dedup_key = %s AND action = 'trigger' "
        "ORDER BY id DESC LIMIT 1",
        (content.dedup_key,),
    ).fetchone()[0]
    resolved = AlertContent(
        dedup_key=content.dedup_key,
        summary=summary,
        severity=content.severity,
        component=content.component,
        group=content.group,
        event_class=content.event_class,
    )
    messages = alert_messages(resolved, Action.RESOLVE, version, channels)
    return enqueue(conn, messages, now) > 0


def pending_count(conn: Connection) -> int:
    return conn.execute("SELECT count(*) FROM alert_outbox WHERE status = 'PENDING'").fetchone()[0]


def _is_firing(conn: Connection, dedup_key: str) -> bool:
    row = conn.execute(
        "SELECT action FROM alert_outbox WHERE dedup_key = %s ORDER BY id DESC LIMIT 1",
        (dedup_key,),
    ).fetchone()
    return row is not None and row[0] == Action.TRIGGER.value


def _lock(conn: Connection, dedup_key: str) -> None:
    # Two evaluations deciding about one key at once would both see it quiet and both trigger.
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (dedup_key,))
