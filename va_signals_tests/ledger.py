"""Writes `source_runs` rows and documents with chosen times, for tests of checks and health."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb


def insert_run(
    url: str,
    source_id: str,
    *,
    ended_at: datetime,
    status: str = "SUCCESS",
    new: int = 0,
    unchanged: int = 0,
    duplicates: int = 0,
    latency_ms: int | None = None,
    seconds: float = 5.0,
) -> int:
    """One finished run that started `seconds` before `ended_at`; returns its id."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """
            INSERT INTO source_runs (source_id, status, started_at, ended_at, duration_ms,
                records_new, records_unchanged, records_duplicate, latency_p50_ms,
                latency_max_ms, error_class)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING id
            """,
            (
                source_id,
                status,
                ended_at - timedelta(seconds=seconds),
                ended_at,
                int(seconds * 1000),
                new,
                unchanged,
                duplicates,
                latency_ms,
                latency_ms,
                "UpstreamUnavailable" if status == "ERROR" else None,
            ),
        ).fetchone()
    return int(row[0])


def insert_document(
    url: str,
    source_id: str,
    external_id: str,
    *,
    seen_at: datetime,
    first_seen_at: datetime | None = None,
    title: str = "A document",
    doc_url: str | None = None,
    payload: dict | None = None,
) -> int:
    """One stored document, first and last seen at the given times; returns its id."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """
            INSERT INTO documents (source_id, external_id, title, url, first_seen_at,
                last_seen_at, content_hash, dedup_key, payload)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING id
            """,
            (
                source_id,
                external_id,
                title,
                doc_url,
                first_seen_at or seen_at,
                seen_at,
                external_id,
                f"{doc_url}|{title.lower()}" if doc_url else None,
                Jsonb(payload or {}),
            ),
        ).fetchone()
    return int(row[0])
