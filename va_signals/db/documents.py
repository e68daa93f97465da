"""Idempotent writes of normalized records into `documents`, counted as new/updated/unchanged."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from psycopg import Connection
from psycopg.types.json import Jsonb

from va_signals.sources.base import SourceRecord


@dataclass(frozen=True)
class UpsertCounts:
    """How one batch of records changed the table."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.new + other.new,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.duplicates + other.duplicates,
        )


def dedup_key(record: SourceRecord) -> str | None:
    """The key under which two sources' copies of one document meet: canonical URL and title.

    The title is part of the key because some sources point many records (a bill's actions)
    at one URL; only the same page under the same title is the same document.
    """
    if not record.url:
        return None
    parts = urlsplit(record.url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    title = " ".join(record.title.lower().split())
    return f"{host}{parts.path.rstrip('/')}|{title}"


def content_hash(record: SourceRecord) -> str:
    """A stable digest of everything stored for a record, so a change upstream is detected."""
    canonical = json.dumps(
        record.model_dump(mode="json", exclude={"external_id"}),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# One round trip per batch. `existing` is read before the upsert so each row can be counted as
# new, updated or unchanged; a per-source advisory lock keeps concurrent writers of one source
# from racing between the read and the write.
_UPSERT_SQL = """
WITH incoming AS (
    SELECT * FROM unnest(
        %(external_id)s::text[], %(title)s::text[], %(summary)s::text[], %(url)s::text[],
        %(published_at)s::timestamptz[], %(published_on)s::date[], %(content_hash)s::text[],
        %(dedup_key)s::text[], %(payload)s::jsonb[]
    ) AS t(external_id, title, summary, url, published_at, published_on, content_hash,
           dedup_key, payload)
),
existing AS (
    SELECT d.external_id, d.content_hash
    FROM documents AS d
    JOIN incoming AS i ON d.source_id = %(source_id)s AND d.external_id = i.external_id
),
written AS (
    INSERT INTO documents AS d (
        source_id, external_id, title, summary, url, published_at, published_on,
        content_hash, dedup_key, payload
    )
    SELECT %(source_id)s, external_id, title, summary, url, published_at, published_on,
           content_hash, dedup_key, payload
    FROM incoming
    ON CONFLICT (source_id, external_id) DO UPDATE SET
        last_seen_at = now(),
        title = EXCLUDED.title,
        summary = EXCLUDED.summary,
        url = EXCLUDED.url,
        published_at = EXCLUDED.published_at,
        published_on = EXCLUDED.published_on,
        payload = EXCLUDED.payload,
        dedup_key = EXCLUDED.dedup_key,
        content_hash = EXCLUDED.content_hash,
        updated_at = CASE WHEN d.content_hash = EXCLUDED.content_hash
                          THEN d.updated_at ELSE now() END
    RETURNING d.external_id
)
SELECT
    count(*) FILTER (WHERE e.external_id IS NULL),
    count(*) FILTER (WHERE e.content_hash <> i.content_hash),
    count(*) FILTER (WHERE e.content_hash = i.content_hash),
    (SELECT count(*) FROM written)
FROM incoming AS i
LEFT JOIN existing AS e ON e.external_id = i.external_id
"""


def upsert_documents(
    conn: Connection, source_id: str, records: Sequence[SourceRecord]
) -> UpsertCounts:
    """Insert new records, update changed ones, and count unchanged ones; never duplicates."""
    unique: dict[str, SourceRecord] = {}
    for record in records:
        unique[record.external_id] = record
    duplicates = len(records) - len(unique)
    if not unique:
        return UpsertCounts(duplicates=duplicates)

    rows = list(unique.values())
    params = {
        "source_id": source_id,
        "external_id": [r.external_id for r in rows],
        "title": [r.title for r in rows],
        "summary": [r.summary for r in rows],
        "url": [r.url for r in rows],
        "published_at": [r.published_at for r in rows],
        "published_on": [r.published_on for r in rows],
        "content_hash": [content_hash(r) for r in rows],
        "dedup_key": [dedup_key(r) for r in rows],
        "payload": [Jsonb(r.payload) for r in rows],
    }
    new, updated, unchanged, written = conn.execute(_UPSERT_SQL, params).fetchone()
    if written != len(rows):
        raise RuntimeError(
            f"source {source_id!r}: upsert wrote {written} of {len(rows)} rows; refusing to guess"
        )
    return UpsertCounts(new=new, updated=updated, unchanged=unchanged, duplicates=duplicates)
